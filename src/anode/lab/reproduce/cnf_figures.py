"""Figures of `anode reproduce cnf`, drawn from the saved runs (histories, results, artifacts): no retraining."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from anode import plotting
from anode.data.densities import make_density
from anode.history import History, read_json
from anode.lab.experiments.paths import repeat_dirs, slug

__all__ = ["EXTENT", "cnf_styles", "save_cnf_figures"]

#: Half-width of the square [-L, L]^2 on which densities are drawn (the densities lie roughly in [-4, 4]^2).
EXTENT = 4.0
# The experiment (`anode.lab.reproduce.cnf.CNFExperiment`) and its models are read by attribute here; this
# module does not import that one, which imports it (no import cycle).
CNFExperiment = Any
CNFModelSpec = Any

#: The CNF's q(a | x) drawn as the ODE models' augmentation of the same spirit: N(0, I) as the paper's
#: fixed augmentation (blues), the learned Gaussian as learned augmentation (purples, circles).
_STYLE_AS = {"standard_normal": "zeros", "gaussian": "learned"}


def cnf_styles(experiment: CNFExperiment) -> dict[str, plotting.CurveStyle]:
    """One colour, line style and marker per model (`anode.plotting.model_styles`): the CNF red, the regularised CNF
    red with its regularisers' dash pattern, augmented CNFs shaded by p in blue (q = N(0, I)) or purple (learned q)."""
    proxies = [{"name": m.name, "role": m.role, "kind": "flow", "augment_dim": m.augment_dim,
                "augmentation": _STYLE_AS.get(m.augmentation or "", "zeros"),
                **{k: experiment.weight(m, k) for k in ("kinetic_energy", "jacobian_norm", "weight_decay")}}
               for m in experiment.models]
    return plotting.model_styles(proxies)


def _runs(experiment: CNFExperiment, out: Path, dataset: str, model: CNFModelSpec) -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for run in repeat_dirs(out, dataset, model.name, seed=experiment.seed, repeats=experiment.repeats):
        if (run / "result.json").exists():
            result = read_json(run / "result.json")
            if result.get("status") == "completed":
                found.append((run, result))
    return found


def _panels(n: int, title: str) -> tuple[Figure, list[Any]]:
    cols = 4
    rows = -(-n // cols)
    fig = Figure(figsize=(3.2 * cols, 3.3 * rows))
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(rows * cols)]
    for ax in axes[n:]:
        ax.set_axis_off()
    fig.suptitle(title)
    fig.subplots_adjust(wspace=0.45, hspace=0.5)
    return fig, axes[:n]


def _square(ax: Any, title: str) -> None:
    ax.set_xlim(-EXTENT, EXTENT)
    ax.set_ylim(-EXTENT, EXTENT)
    ax.set_aspect("equal")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(title, fontsize="medium")


def _density_figure(experiment: CNFExperiment, out: Path, dataset: Any) -> Figure | None:
    arts = {}
    for m in experiment.models:
        runs = _runs(experiment, out, dataset.name, m)
        if runs and (runs[0][0] / "artifacts.json").exists():
            arts[m.name] = read_json(runs[0][0] / "artifacts.json")
    if not arts:
        return None
    n = next(iter(arts.values()))["grid"]
    edges = np.linspace(-EXTENT, EXTENT, n + 1)
    true = make_density(dataset.density, 200_000, seed=12345).numpy()
    hist, _, _ = np.histogram2d(true[:, 1], true[:, 0], bins=[edges, edges], density=True)
    vmax = float(hist.max())
    fig, axes = _panels(len(arts) + 1, f"{dataset.name}: density p(x) (colour scale shared, clipped at the true maximum)")
    extent = (-EXTENT, EXTENT, -EXTENT, EXTENT)
    image = axes[0].imshow(hist, origin="lower", extent=extent, cmap="viridis", vmin=0, vmax=vmax)
    _square(axes[0], "true density (histogram)")
    for ax, (name, art) in zip(axes[1:], arts.items(), strict=True):
        model = experiment.model(name)
        density = np.exp(np.clip(np.array(art["log_density"], dtype=float), -50, 50))
        ax.imshow(density, origin="lower", extent=extent, cmap="viridis", vmin=0, vmax=vmax)
        how = f"IW marginal, K = {art['grid_iw_samples']}" if model.augment_dim else "exact"
        _square(ax, f"{name}\n({how})")
    fig.colorbar(image, ax=axes, shrink=0.6, label="density")
    return fig


def _samples_figure(experiment: CNFExperiment, out: Path, dataset: Any, styles: dict[str, plotting.CurveStyle]) -> Figure | None:
    arts = {}
    for m in experiment.models:
        runs = _runs(experiment, out, dataset.name, m)
        if runs and (runs[0][0] / "artifacts.json").exists():
            arts[m.name] = np.array(read_json(runs[0][0] / "artifacts.json")["samples"], dtype=float)
    if not arts:
        return None
    size = len(next(iter(arts.values())))
    fig, axes = _panels(len(arts) + 1, f"{dataset.name}: {size} samples per model (first repeat)")
    data = make_density(dataset.density, size, seed=2 * experiment.seed).numpy()
    axes[0].scatter(data[:, 0], data[:, 1], s=2, color="black", alpha=0.5, edgecolors="none")
    _square(axes[0], "training data")
    for ax, (name, pts) in zip(axes[1:], arts.items(), strict=True):
        ax.scatter(pts[:, 0], pts[:, 1], s=2, color=styles[name].color, alpha=0.5, edgecolors="none")
        _square(ax, name)
    return fig


def save_cnf_figures(experiment: CNFExperiment, out: str | Path) -> list[tuple[str, str, list[tuple[str, Path]]]]:
    """Draw every figure of the report into `out/figures/` from the runs in `out/runs/`.

    Arguments:
        experiment: the experiment (models, datasets, repeats).
        out: the results folder.

    Returns:
        Report sections: (title, text, [(caption, png path)]), figures that could not be drawn (no finished runs) left out.
    """
    out = Path(out)
    fig_dir = out / "figures"
    styles = cnf_styles(experiment)
    sections: list[tuple[str, str, list[tuple[str, Path]]]] = []
    densities, nfe, scatter = [], [], []
    for d in experiment.datasets:
        key = slug(d.name)
        for fig, name, caption, bucket in (
                (_density_figure(experiment, out, d), f"density__{key}", f"{d.name}: true and learned densities", densities),
                (_samples_figure(experiment, out, d, styles), f"samples__{key}", f"{d.name}: samples", densities)):
            if fig is not None:
                bucket.append((caption, plotting.save_figure(fig, fig_dir / f"{name}.png")))
        histories: dict[str, dict[str, list[np.ndarray]]] = {"nfe_forward": {}, "nfe_backward": {}, "loss": {}}
        points: dict[str, tuple[list[float], list[float]]] = {}
        for m in experiment.models:
            runs = _runs(experiment, out, d.name, m)
            if not runs:
                continue
            hists = [History.load(run) for run, _ in runs]
            for field in histories:
                histories[field][m.name] = [h.array(field) for h in hists]
            points[m.name] = ([float(h.array("nfe_forward").mean()) for h in hists],
                              [float(r["test_log_likelihood"]) for _, r in runs])
        if not points:
            continue
        label = {"nfe_forward": "forward NFE per iteration", "nfe_backward": "backward NFE per iteration (adjoint)",
                 "loss": "training loss (nats; -ELBO for augmented CNFs)"}
        for field in ("nfe_forward", "nfe_backward", "loss"):
            if field == "nfe_backward" and not any(c.any() for cs in histories[field].values() for c in cs):
                continue  # backpropagation through the solver: no backward solve to count
            fig = plotting.plot_histories(histories[field], ylabel=label[field], xlabel="iteration", smooth="auto",
                                          styles=styles, title=f"{d.name}: {label[field]}\n(mean ± std over repeats)")
            nfe.append((f"{d.name}: {label[field]}", plotting.save_figure(fig, fig_dir / f"{field}__{key}.png")))
        fig = plotting.plot_nfe_vs_loss(points, xlabel="forward NFE averaged over training", ylabel="test log-likelihood (nats)",
                                        styles=styles, title=f"{d.name}: one point per run (augmented CNFs: IW bound, "
                                                             f"K = {experiment.train.iw_samples})")
        ax = fig.axes[0]
        for collection in ax.collections:  # a few points per model: opaque and large enough to tell apart
            collection.set_alpha(0.9)
            collection.set_sizes([45])
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
        fig.set_size_inches(8.5, 4.2)
        scatter.append((f"{d.name}: NFE against test log-likelihood (up and left is better)",
                        plotting.save_figure(fig, fig_dir / f"nfe_vs_loglik__{key}.png")))
    sections.append(("Densities and samples",
                     "The true density (a histogram of 200,000 points) and each model's learned density on a grid over "
                     "[-4, 4]^2 (first repeat): the exact log-density for CNFs, the importance-weighted estimate of the "
                     "marginal p(x) for augmented CNFs; then samples of each model (augmented coordinates dropped).", densities))
    sections.append(("NFE and loss during training",
                     "Per-iteration forward NFE (and backward NFE when the adjoint is used) and training loss, the mean over "
                     "repeats with a band of ± one std, smoothed with a centred moving average (the faint line is the raw mean).",
                     nfe))
    sections.append(("NFE against test log-likelihood", "One point per run: forward NFE averaged over training against the "
                     "test log-likelihood (exact for CNFs, the IW bound for augmented CNFs).", scatter))
    return sections
