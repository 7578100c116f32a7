"""Figures of an experiment, drawn from its saved results (no retraining)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from anode import plotting
from anode.history import read_json
from anode.lab.experiments.aggregate import load_histories
from anode.lab.experiments.config import ExperimentConfig, parse_config
from anode.lab.experiments.paths import repeat_dirs, slug

__all__ = ["experiment_figures", "experiment_styles", "load_experiment", "read_artifacts", "save_experiment_figures"]


def load_experiment(exp_dir: str | os.PathLike[str]) -> ExperimentConfig:
    """The resolved config saved by `run_experiment` in `exp_dir/experiment.json`.

    Raises:
        FileNotFoundError: `exp_dir` holds no experiment.
    """
    path = Path(exp_dir) / "experiment.json"
    if not path.exists():
        raise FileNotFoundError(f"{exp_dir} is not an experiment directory (no experiment.json); run `anode experiment` first")
    return parse_config(read_json(path), where=str(path))


def read_artifacts(exp_dir: str | os.PathLike[str], dataset: str, model: str) -> dict[str, Any] | None:
    """The artifacts (trajectories, maps, snapshots) of the first repeat, or None."""
    cfg = load_experiment(exp_dir)
    for run in repeat_dirs(exp_dir, dataset, model, seed=cfg.seed, repeats=cfg.repeats):
        if (run / "artifacts.json").exists():
            return read_json(run / "artifacts.json")
    return None


def _title(dataset: str, model: str | None = None) -> str:
    return f"{model} on {dataset}" if model else dataset


def experiment_figures(exp_dir: str | os.PathLike[str]) -> dict[str, Figure]:
    """Every figure the saved results support, keyed "kind/dataset[/model]".

    Every model keeps one colour, line style and marker in all of them (`experiment_styles`).
    Kinds: loss, nfe (mean +- std across repeats per iteration, smoothed by a centred moving
    average of about 1/40 of the iterations over the faint raw mean), nfe_vs_loss, eval_loss (per
    epoch, when evaluated), flow (trajectories), features (snapshots during training), map
    (input-space map), field (1-D vector field).
    """
    cfg = load_experiment(exp_dir)
    styles = experiment_styles(cfg)
    figures: dict[str, Figure] = {}
    for d in cfg.datasets:
        hist = {m.name: load_histories(exp_dir, d.name, m.name, config=cfg) for m in cfg.models}
        hist = {name: hs for name, hs in hist.items() if hs and all(h.iterations for h in hs)}
        if not hist:
            continue
        key = slug(d.name)
        figures[f"loss/{key}"] = plotting.plot_histories(
            {n: [h.array("loss") for h in hs] for n, hs in hist.items()}, ylabel=f"{cfg.train.loss} loss", title=_title(d.name),
            styles=styles, smooth="auto")
        ode = {n: hs for n, hs in hist.items() if cfg.model(n).kind not in ("resnet", "convresnet")}
        if ode:
            figures[f"nfe/{key}"] = plotting.plot_histories(
                {n: [h.array("nfe_forward") for h in hs] for n, hs in ode.items()}, ylabel="forward NFE", title=_title(d.name),
                styles=styles, smooth="auto")
            points = {n: (np.concatenate([h.array("nfe_forward") for h in hs]), np.concatenate([h.array("loss") for h in hs]))
                      for n, hs in ode.items()}
            # NFE per iteration are integers: the models' strips side by side within +-0.3 of each value
            whole = all(np.all(np.mod(x, 1) == 0) for x, _ in points.values()) and len(points) > 1
            figures[f"nfe_vs_loss/{key}"] = plotting.plot_nfe_vs_loss(
                points, xlabel="forward NFE" + (" (models side by side within ± 0.3)" if whole else ""),
                ylabel=f"{cfg.train.loss} loss", title=_title(d.name), log_y=True, styles=styles, dodge=0.6 if whole else 0.0)
        evals = {n: [h.epoch_array("eval_loss") for h in hs] for n, hs in hist.items()}
        evals = {n: [c[np.isfinite(c)] for c in cs] for n, cs in evals.items()}
        evals = {n: cs for n, cs in evals.items() if all(len(c) for c in cs)}
        if evals:
            figures[f"eval_loss/{key}"] = plotting.plot_histories(
                evals, ylabel="evaluation loss", xlabel="Epoch", title=_title(d.name), styles=styles)
        for m in cfg.models:
            arts = read_artifacts(exp_dir, d.name, m.name)
            if arts:
                figures.update(_artifact_figures(arts, key, d.name, m.name))
    return figures


def experiment_styles(cfg: ExperimentConfig) -> dict[str, plotting.CurveStyle]:
    """The colour, line style and marker of each model of `cfg`, from its role and settings
    (`anode.plotting.model_styles`): the same in every figure, and the same for equal settings in
    every experiment of a report."""
    return plotting.model_styles(cfg.models, weight_decay=cfg.train.weight_decay,
                                 kinetic_energy=cfg.train.kinetic_energy, jacobian_norm=cfg.train.jacobian_norm)


def _artifact_figures(arts: dict[str, Any], key: str, dataset: str, model: str) -> dict[str, Figure]:
    out: dict[str, Figure] = {}
    mkey = slug(model)
    traj = arts.get("trajectories")
    if traj is not None:
        states = np.asarray(traj["states"])
        if states.shape[-1] <= 3:
            out[f"flow/{key}/{mkey}"] = plotting.plot_trajectories(
                traj["times"], states, labels=traj["labels"], title=f"Flow of {_title(dataset, model)}")
    snaps = arts.get("feature_snapshots")
    if snaps and len(snaps[0]["features"][0]) <= 3:
        out[f"features/{key}/{mkey}"] = plotting.plot_feature_evolution(
            [s["features"] for s in snaps], labels=arts.get("feature_labels"),
            titles=[f"iteration {s['iteration']}" for s in snaps])
    imap = arts.get("input_map")
    if imap is not None and "ys" in imap:
        fig = plotting.plot_input_space_map(
            imap["xs"], imap["ys"], imap["values"], points=imap.get("points"), point_labels=imap.get("point_labels"),
            title=_title(dataset, model))
        if imap.get("heldout_points"):
            held = np.asarray(imap["heldout_points"])
            fig.axes[0].scatter(held[:, 0], held[:, 1], s=8, facecolors="none", edgecolors="k", linewidths=0.6,
                                label="held-out slice")
            fig.axes[0].legend(loc="upper right", fontsize=8)
        out[f"map/{key}/{mkey}"] = fig
    field = arts.get("vector_field")
    if field is not None:
        kwargs: dict[str, Any] = {}
        if traj is not None and np.asarray(traj["states"]).shape[-1] == 1:
            kwargs = {"trajectories": np.asarray(traj["states"])[..., 0], "traj_times": traj["times"], "labels": traj["labels"]}
        out[f"field/{key}/{mkey}"] = plotting.plot_vector_field_1d(
            field["times"], field["states"], field["velocities"], title=f"Vector field of {_title(dataset, model)}", **kwargs)
    return out


def save_experiment_figures(exp_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None,
                            *, gifs: bool = False) -> list[Path]:
    """Draw every figure of an experiment and save them as PNG files (and optional GIFs).

    Returns:
        The paths written (in `out_dir`, default `exp_dir/figures`).
    """
    out = Path(out_dir) if out_dir is not None else Path(exp_dir) / "figures"
    paths = []
    for name, fig in experiment_figures(exp_dir).items():
        paths.append(plotting.save_figure(fig, out / (name.replace("/", "__") + ".png")))
    if gifs:
        cfg = load_experiment(exp_dir)
        for d in cfg.datasets:
            for m in cfg.models:
                arts = read_artifacts(exp_dir, d.name, m.name) or {}
                traj, snaps = arts.get("trajectories"), arts.get("feature_snapshots")
                stem = f"{slug(d.name)}__{slug(m.name)}"
                if traj is not None and np.asarray(traj["states"]).shape[-1] == 2:
                    paths.append(plotting.trajectory_gif(np.asarray(traj["states"]), out / f"flow__{stem}.gif", labels=traj["labels"]))
                if snaps and len(snaps[0]["features"][0]) in (2, 3):
                    paths.append(plotting.feature_evolution_gif([s["features"] for s in snaps], out / f"features__{stem}.gif",
                                                                labels=arts.get("feature_labels")))
    return paths
