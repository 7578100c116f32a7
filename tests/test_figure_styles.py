"""Readable report figures: one look per model, smoothed noisy curves, labelled axes, flow legends.

The toy report's figures are drawn by `experiment_figures` from an experiment folder. Here each
built-in toy experiment gets a folder of synthetic results in the layout the runner writes
(experiment.json, runs/<dataset>/<model>/seed-<s>/{result.json, history.jsonl, epochs.json,
artifacts.json}), so every figure kind of the report is drawn without training anything.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from anode.history import History, write_json
from anode.lab.experiments.config import G1DSpec, SinesSpec, SpheresSpec, load_config
from anode.lab.experiments.figures import experiment_figures, experiment_styles
from anode.lab.experiments.paths import repeat_dirs
from anode.lab.reproduce.toy import builtin_config
from anode.plotting import METHOD_COLORS, CurveStyle, model_styles, plot_histories
from anode.plotting.histories import auto_window, moving_average

TOY = ["flow_g1d", "spheres", "generalisation", "weight_decay", "augmentation", "beyond_g1d", "beyond_spheres"]
ITERATIONS = 160
REPEATS = 2
ODE_KINDS = ("odenet", "flow", "convodenet")


def _dim(dataset) -> int:
    if isinstance(dataset, G1DSpec):
        return 1
    assert isinstance(dataset, (SpheresSpec, SinesSpec))
    return dataset.dim


def _artifacts(cfg, dataset, model, rng) -> dict:
    d = _dim(dataset)
    width = d + (model.augment_dim if model.kind in ODE_KINDS else 0)
    n = 12
    labels = [-1.0, 1.0] * (n // 2)
    spec = cfg.artifacts
    arts: dict = {}
    if spec.trajectories:
        arts["trajectories"] = {"times": np.linspace(0, 1, spec.timesteps).tolist(),
                                "states": rng.normal(size=(spec.timesteps, n, width)).cumsum(0).tolist(),
                                "labels": labels}
    if spec.feature_snapshots:
        arts["feature_snapshots"] = [{"iteration": i * 20, "features": rng.normal(size=(n, width)).tolist()}
                                     for i in range(spec.feature_snapshots)]
        arts["feature_labels"] = labels
    if spec.input_map and d <= 2:
        axis = np.linspace(-2, 2, 7)
        if d == 1:
            arts["input_map"] = {"xs": axis.tolist(), "values": np.tanh(axis).tolist()}
        else:
            arts["input_map"] = {"xs": axis.tolist(), "ys": axis.tolist(),
                                 "values": np.tanh(np.add.outer(axis, axis)).tolist(),
                                 "points": rng.normal(size=(n, 2)).tolist(), "point_labels": labels}
            if getattr(dataset, "holdout_angle", None) is not None:
                arts["input_map"]["heldout_points"] = rng.normal(size=(5, 2)).tolist()
    if spec.vector_field and width == 1:
        arts["vector_field"] = {"times": np.linspace(0, 1, 4).tolist(), "states": np.linspace(-1, 1, 5).tolist(),
                                "velocities": rng.normal(size=(4, 5)).tolist()}
    return arts


def fake_experiment(name: str, out: Path) -> Path:
    """A folder with synthetic finished runs of the built-in toy experiment `name` (no training)."""
    cfg = load_config(builtin_config(f"toy/{name}")).with_budget(repeats=REPEATS)
    exp = out / name
    exp.mkdir(parents=True)
    write_json(exp / "experiment.json", cfg.to_dict())
    rng = np.random.default_rng(0)
    for d in cfg.datasets:
        held_out = getattr(d, "holdout_angle", None) is not None
        for m in cfg.models:
            for r, run in enumerate(repeat_dirs(exp, d.name, m.name, seed=cfg.seed, repeats=cfg.repeats)):
                run.mkdir(parents=True)
                nfe = 20 + np.arange(ITERATIONS) / 20 + rng.integers(0, 8, ITERATIONS)  # noisy, like the real ones
                iterations = [{"iteration": i, "epoch": i // 40, "loss": float(np.exp(-i / 50) + rng.uniform(0, 0.2)),
                               "accuracy": 0.5, "nfe_forward": float(nfe[i]), "nfe_backward": float(nfe[i]),
                               "time": 0.01} for i in range(ITERATIONS)]
                epochs = [{"epoch": e, "loss": 0.5, **({"eval_loss": 1.0 / (e + 1)} if held_out else {})}
                          for e in range(ITERATIONS // 40)]
                History(iterations=iterations, epochs=epochs).save(run)
                write_json(run / "result.json", {"status": "completed"})
                if r == 0:
                    write_json(run / "artifacts.json", _artifacts(cfg, d, m, rng))
    return exp


@pytest.fixture(scope="module")
def toy_figures(tmp_path_factory) -> dict[str, dict[str, Figure]]:
    out = tmp_path_factory.mktemp("toy")
    figures = {name: experiment_figures(fake_experiment(name, out)) for name in TOY}
    yield figures
    for figs in figures.values():
        for fig in figs.values():
            fig.clear()


def _line_key(line: Line2D) -> tuple:
    dashes = getattr(line, "_unscaled_dash_pattern", None)  # tells custom dash tuples apart
    return (to_hex(line.get_color()), line.get_linestyle(), repr(dashes), str(line.get_marker()))


def _labelled_lines(ax) -> list[Line2D]:
    return [ln for ln in ax.get_lines() if not str(ln.get_label()).startswith("_")]


def _scatter_key(coll: PathCollection) -> tuple:
    face, edge = coll.get_facecolor(), coll.get_edgecolor()
    filled = len(face) > 0 and face[0][3] > 0
    color = to_hex(face[0] if filled else edge[0])
    return (color, filled, coll.get_paths()[0].vertices.round(3).tobytes())


def test_every_figure_kind_of_the_report_is_drawn(toy_figures):
    kinds = {key.split("/")[0] for figs in toy_figures.values() for key in figs}
    assert {"loss", "nfe", "nfe_vs_loss", "eval_loss", "flow", "features", "map", "field"} <= kinds
    assert "nfe/spheres-2d" in toy_figures["weight_decay"] and "loss/spheres-2d" in toy_figures["augmentation"]


def test_no_two_models_in_one_axes_look_alike(toy_figures):
    checked = 0
    for exp, figs in toy_figures.items():
        for key, fig in figs.items():
            for ax in fig.axes:
                lines = _labelled_lines(ax)
                keys = [_line_key(ln) for ln in lines]
                assert len(set(keys)) == len(keys), (exp, key, [(ln.get_label(), k) for ln, k in zip(lines, keys)])
                scatters = [c for c in ax.collections if isinstance(c, PathCollection) and not str(c.get_label()).startswith("_")]
                if key.startswith("nfe_vs_loss"):
                    skeys = [_scatter_key(c) for c in scatters]
                    assert len(set(skeys)) == len(skeys) == len(scatters) >= 1, (exp, key)
                checked += len(lines)
    assert checked > 40


def test_every_axes_is_labelled(toy_figures):
    for exp, figs in toy_figures.items():
        for key, fig in figs.items():
            for ax in fig.axes:
                where = (exp, key, ax.get_title())
                cbar = getattr(ax, "_colorbar", None)
                if cbar is not None:  # a colour bar: its long axis says what the colours mean
                    assert (ax.get_ylabel() if cbar.orientation == "vertical" else ax.get_xlabel()).strip(), where
                    continue
                assert ax.get_xlabel().strip() and ax.get_ylabel().strip(), where
                if ax.name == "3d":
                    assert ax.get_zlabel().strip(), where


def test_3d_feature_panels_have_few_small_ticks(toy_figures):
    fig = toy_figures["spheres"]["features/spheres-2d/anode-p-1"]
    panels = [ax for ax in fig.axes if ax.name == "3d"]
    assert panels
    fig.canvas.draw()
    for ax in panels:
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
            lo, hi = sorted(axis.get_view_interval())
            assert len([t for t in axis.get_majorticklocs() if lo <= t <= hi]) <= 4
            assert axis.get_majorticklabels()[0].get_fontsize() <= 8


def test_flow_figures_say_hollow_is_t0_and_filled_is_t1(toy_figures):
    flows = [(exp, key, fig) for exp, figs in toy_figures.items() for key, fig in figs.items() if key.startswith("flow/")]
    two_or_three_d = [f for f in flows if any(c for c in f[2].axes[0].collections if isinstance(c, PathCollection))]
    assert two_or_three_d
    for exp, key, fig in two_or_three_d:
        legend = fig.axes[0].get_legend()
        assert legend is not None, (exp, key)
        handles = {t.get_text(): h for t, h in zip(legend.get_texts(), legend.legend_handles)}
        hollow, filled = handles["t = 0 (hollow)"], handles["t = 1 (filled)"]
        assert hollow.get_markerfacecolor() == "none" and filled.get_markerfacecolor() != "none", (exp, key)


def test_a_model_keeps_its_look_across_the_report(toy_figures):
    seen: dict[str, set] = {}
    for figs in toy_figures.values():
        for key, fig in figs.items():
            for ax in fig.axes:
                for ln in _labelled_lines(ax):
                    if key.split("/")[0] in ("loss", "nfe", "eval_loss"):
                        seen.setdefault(ln.get_label(), set()).add(_line_key(ln))
    assert {"NODE", "ANODE (p=1)", "ResNet"} <= set(seen)
    assert all(len(keys) == 1 for keys in seen.values()), {k: v for k, v in seen.items() if len(v) > 1}


def _luminance(color: str) -> float:
    r, g, b = to_rgb(color)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _styles(name: str) -> dict[str, CurveStyle]:
    return experiment_styles(load_config(builtin_config(f"toy/{name}")))


def test_style_rules_from_roles_and_settings():
    aug = _styles("augmentation")
    assert aug["NODE"] == CurveStyle(METHOD_COLORS["NODE"], "-", None)
    blues = [aug[f"ANODE (p={p})"] for p in (1, 2, 5)]
    assert all(s.linestyle == "-" and s.marker is None for s in blues)
    lum = [_luminance(s.color) for s in blues]
    assert lum[0] > lum[1] > lum[2]  # sequential: darker with more augmented dimensions

    wd = _styles("weight_decay")
    assert wd["NODE"].color == wd["NODE + weight decay"].color == METHOD_COLORS["NODE"]
    assert (wd["NODE"].linestyle, wd["NODE + weight decay"].linestyle) == ("-", "--")
    assert wd["ANODE (p=1)"].color == wd["ANODE (p=1) + weight decay"].color == aug["ANODE (p=1)"].color
    assert wd["ANODE (p=1) + weight decay"].linestyle == "--"

    beyond = _styles("beyond_spheres")
    zeros, learned, sonode, ke = (beyond[n] for n in ("ANODE zeros (p=2)", "ANODE learned (p=2)", "SONODE (p=2)",
                                                      "ANODE zeros (p=2) + kinetic energy"))
    assert zeros.color == aug["ANODE (p=2)"].color and zeros.marker is None
    assert len({zeros.color, learned.color, sonode.color}) == 3 and len({learned.marker, sonode.marker, None}) == 3
    assert ke.color == zeros.color and ke.linestyle == ":"
    assert _styles("spheres")["ResNet"].color == METHOD_COLORS["ResNet"]


def test_model_styles_never_repeat_a_look():
    models = [{"name": "NODE a", "augment_dim": 0}, {"name": "NODE b", "augment_dim": 0, "hidden_dim": 64},
              {"name": "ANODE", "augment_dim": 1, "weight_decay": 0.0}, {"name": "ANODE wd", "augment_dim": 1},
              {"name": "ResNet", "kind": "resnet"}]
    styles = model_styles(models, weight_decay=0.0)
    assert len({s.key() for s in styles.values()}) == len(models)
    assert styles["NODE b"].color == styles["NODE a"].color and styles["NODE b"].marker is not None
    # the experiment's weight decay applies where a model does not set its own
    assert model_styles(models[2:4], weight_decay=1e-3)["ANODE wd"].linestyle == "--"
    assert model_styles(models[2:4], weight_decay=1e-3)["ANODE"].linestyle == "-"


def test_moving_average_and_smoothed_histories():
    y = np.arange(10.0)
    np.testing.assert_allclose(moving_average(y, 3), [0.5, 1, 2, 3, 4, 5, 6, 7, 8, 8.5])
    np.testing.assert_allclose(moving_average(y, 1), y)
    np.testing.assert_allclose(moving_average(np.ones(4), 25), np.ones(4))
    assert auto_window(30) == 1 and auto_window(1000) == 25 and auto_window(1000) % 2 == 1

    rng = np.random.default_rng(0)
    curves = [rng.normal(size=200) for _ in range(3)]
    fig = plot_histories({"NODE": curves, "ANODE (p=1)": curves}, smooth=9)
    ax = fig.axes[0]
    labelled = _labelled_lines(ax)
    raw = [ln for ln in ax.get_lines() if ln not in labelled]
    assert [ln.get_label() for ln in labelled] == ["NODE", "ANODE (p=1)"] and len(raw) == 2
    mean = np.mean(curves, axis=0)
    np.testing.assert_allclose(raw[0].get_ydata(), mean)
    np.testing.assert_allclose(labelled[0].get_ydata(), moving_average(mean, 9))
    assert raw[0].get_alpha() < 0.5 and to_hex(raw[0].get_color()) == to_hex(labelled[0].get_color())
    assert "9" in ax.get_legend().get_title().get_text()
    with pytest.raises(ValueError, match="smooth"):
        plot_histories({"NODE": curves}, smooth=0)
    fig.clear()
