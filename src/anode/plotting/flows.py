"""Flows of ODE models: trajectories h(t) in 1, 2 or 3 dimensions, feature snapshots, 1-D vector fields."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from mpl_toolkits.mplot3d import Axes3D  # noqa: F401  (registers the "3d" projection)
from mpl_toolkits.mplot3d.art3d import Line3DCollection

from .style import (
    ArrayLike,
    add_label_legend,
    check_ndim,
    get_axes,
    label_colors,
    point_labels,
    to_numpy,
)

__all__ = [
    "plot_feature_evolution",
    "plot_trajectories",
    "plot_trajectories_1d",
    "plot_trajectories_2d",
    "plot_trajectories_3d",
    "plot_vector_field_1d",
]


def check_trajectories(trajectories: Any, dim: int, name: str = "trajectories") -> np.ndarray:
    """Validate trajectories as [T, N, dim] (for dim 1 also [T, N]); returns [T, N, dim]."""
    arr = to_numpy(trajectories, name)
    if dim == 1 and arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] != dim or arr.shape[0] < 1 or arr.shape[1] < 1:
        expected = "[T, N] or [T, N, 1]" if dim == 1 else f"[T, N, {dim}]"
        raise ValueError(f"{name} must have shape {expected}, got shape {tuple(arr.shape)}")
    return arr


def axis_limits(values: np.ndarray, margin: float = 0.05) -> tuple[float, float]:
    """(low, high) axis limits around the finite range of `values`, padded by `margin` of it (0.5 when flat)."""
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    pad = (hi - lo) * margin if hi > lo else 0.5
    return lo - pad, hi + pad


_MARKER_GREY = "#404040"


def _time_text(times: Any, which: int, default: str) -> str:
    if times is None:
        return default
    t = np.asarray(to_numpy(times, "times")).ravel()
    return f"t = {float(t[which]):g}" if t.size else default


def add_flow_legend(ax: Axes, legend: list[tuple[str, str]], *, start: str = "t = 0", end: str = "t = 1",
                    loc: str = "best") -> None:
    """Legend of a flow figure: one line per class (text, colour) and two marker proxies, a hollow
    circle for the start points (`start`, e.g. "t = 0") and a filled one for the end points (`end`).
    The proxies are not added to the axes."""
    handles = [Line2D([], [], color=c, lw=2, label=t) for t, c in legend]
    handles += [
        Line2D([], [], ls="none", marker="o", markersize=6, markerfacecolor="none", markeredgecolor=_MARKER_GREY,
               label=f"{start} (hollow)"),
        Line2D([], [], ls="none", marker="o", markersize=6, markerfacecolor=_MARKER_GREY, markeredgecolor="white",
               label=f"{end} (filled)"),
    ]
    ax.legend(handles=handles, loc=loc, fontsize="small")


def style_3d_axes(ax: Axes, labels: Sequence[str] = ("h1", "h2", "h3"), *, nbins: int = 3,
                  fontsize: float = 7.0) -> None:
    """Make a small 3-D axes readable: at most `nbins` + 1 ticks per axis, small tick labels close to
    the axis, and the axis labels `labels` (x, y, z) set a little further out."""
    for axis, text in zip((ax.xaxis, ax.yaxis, ax.zaxis), labels):
        axis.set_major_locator(MaxNLocator(nbins))
        axis.set_tick_params(labelsize=fontsize, pad=0)
        axis.set_label_text(text, fontsize=fontsize + 1)
        axis.labelpad = 1


def plot_trajectories_1d(
    times: ArrayLike,
    trajectories: ArrayLike,
    *,
    labels: ArrayLike | None = None,
    title: str | None = None,
    xlabel: str = "t",
    ylabel: str = "h(t)",
    alpha: float = 0.8,
    ax: Axes | None = None,
) -> Figure:
    """Plot 1-D trajectories h(t) against t, coloured by label (paper's Figs. 3 and 7).

    Arguments:
        times: the T evaluation times, shape [T].
        trajectories: states at those times, shape [T, N] or [T, N, 1].
        labels: optional per-trajectory labels, shape [N] (two classes, e.g. -1/+1, get blue/red).
        title, xlabel, ylabel: text.
        alpha: line opacity.
        ax: draw into this axes (its figure is returned) instead of a new figure.

    Returns:
        The Figure; its axes holds one LineCollection with N segments (t, h_n(t)).

    Raises:
        ValueError: on a wrong shape of `times`, `trajectories` or `labels`.
    """
    t = to_numpy(times, "times")
    traj = check_trajectories(trajectories, 1)
    if t.ndim != 1 or t.shape[0] != traj.shape[0]:
        raise ValueError(f"times must have shape [{traj.shape[0]}] (T of trajectories), got shape {tuple(t.shape)}")
    n = traj.shape[1]
    lab = point_labels(labels, n)
    colors, legend = label_colors(lab, n)
    segments = np.stack([np.broadcast_to(t[None, :], (n, t.shape[0])), traj[:, :, 0].T], axis=-1)
    fig, ax = get_axes(ax)
    ax.add_collection(LineCollection(list(segments), colors=colors, linewidths=1.2, alpha=alpha))
    ax.set_xlim(*axis_limits(t, 0.0))
    ax.set_ylim(*axis_limits(traj))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    add_label_legend(ax, legend)
    return fig


def draw_paths_2d(ax: Axes, traj: np.ndarray, colors: list[str], *, alpha: float, upto: int | None = None) -> None:
    """Paths traj[:upto] as one LineCollection, start points (hollow) and current points (filled)."""
    end = traj.shape[0] if upto is None else upto
    ax.add_collection(LineCollection(list(traj[:end].transpose(1, 0, 2)), colors=colors, linewidths=1.0, alpha=alpha))
    ax.scatter(traj[0, :, 0], traj[0, :, 1], facecolors="none", edgecolors=colors, s=18, linewidths=0.8, zorder=3)
    ax.scatter(traj[end - 1, :, 0], traj[end - 1, :, 1], c=colors, s=18, edgecolors="white", linewidths=0.4, zorder=4)


def plot_trajectories_2d(
    trajectories: ArrayLike,
    *,
    labels: ArrayLike | None = None,
    title: str | None = None,
    alpha: float = 0.7,
    times: ArrayLike | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Plot 2-D trajectories as paths in the plane: hollow markers at t0, filled markers at T.

    Arguments:
        trajectories: states, shape [T, N, 2].
        labels: optional per-trajectory labels, shape [N].
        title: optional title.
        times: optional times [T]; the legend then says "t = times[0] (hollow)" and
            "t = times[-1] (filled)" (default "t = 0" and "t = 1").
        alpha: line opacity.
        ax: draw into this axes (its figure is returned) instead of a new figure.

    Returns:
        The Figure; its axes holds one LineCollection with N paths and two scatter collections
        (start points, end points).

    Raises:
        ValueError: on a wrong shape of `trajectories` or `labels`.
    """
    traj = check_trajectories(trajectories, 2)
    lab = point_labels(labels, traj.shape[1])
    colors, legend = label_colors(lab, traj.shape[1])
    fig, ax = get_axes(ax, figsize=(5.0, 5.0))
    draw_paths_2d(ax, traj, colors, alpha=alpha)
    ax.set_xlim(*axis_limits(traj[..., 0]))
    ax.set_ylim(*axis_limits(traj[..., 1]))
    ax.set_xlabel("h1")
    ax.set_ylabel("h2")
    if title is not None:
        ax.set_title(title)
    add_flow_legend(ax, legend, start=_time_text(times, 0, "t = 0"), end=_time_text(times, -1, "t = 1"))
    return fig


def plot_trajectories_3d(
    trajectories: ArrayLike,
    *,
    labels: ArrayLike | None = None,
    title: str | None = None,
    alpha: float = 0.7,
    elev: float | None = None,
    azim: float | None = None,
    times: ArrayLike | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Plot 3-D trajectories (e.g. d + p = 3 for an augmented 2-D problem) on 3-D axes.

    Arguments:
        trajectories: states, shape [T, N, 3].
        labels: optional per-trajectory labels, shape [N].
        title: optional title.
        times: optional times [T] for the legend of the start (hollow) and end (filled) markers.
        alpha: line opacity.
        elev, azim: optional camera angles (degrees).
        ax: a 3-D axes (projection="3d") to draw into instead of a new figure.

    Returns:
        The Figure; its 3-D axes holds one Line3DCollection with N paths and two scatter
        collections (start points, end points).

    Raises:
        ValueError: on a wrong shape of `trajectories` or `labels`, or a non-3-D `ax`.
    """
    traj = check_trajectories(trajectories, 3)
    lab = point_labels(labels, traj.shape[1])
    colors, legend = label_colors(lab, traj.shape[1])
    fig, ax = get_axes(ax, figsize=(6.0, 5.5), projection="3d")
    ax.add_collection3d(Line3DCollection(list(traj.transpose(1, 0, 2)), colors=colors, linewidths=1.0, alpha=alpha))
    ax.scatter(traj[0, :, 0], traj[0, :, 1], traj[0, :, 2], facecolors="none", edgecolors=colors, s=14)
    ax.scatter(traj[-1, :, 0], traj[-1, :, 1], traj[-1, :, 2], c=colors, s=14)
    ax.set_xlim(*axis_limits(traj[..., 0]))
    ax.set_ylim(*axis_limits(traj[..., 1]))
    ax.set_zlim(*axis_limits(traj[..., 2]))
    style_3d_axes(ax, fontsize=8.0, nbins=4)
    if elev is not None or azim is not None:
        ax.view_init(elev=elev, azim=azim)
    if title is not None:
        ax.set_title(title)
    add_flow_legend(ax, legend, start=_time_text(times, 0, "t = 0"), end=_time_text(times, -1, "t = 1"), loc="upper left")
    return fig


def plot_trajectories(
    times: ArrayLike | None,
    trajectories: ArrayLike,
    *,
    labels: ArrayLike | None = None,
    title: str | None = None,
) -> Figure:
    """Plot trajectories with the function fitting their last dimension (1, 2 or 3).

    Arguments:
        times: times [T] (used only for 1-D trajectories; may be None otherwise, in which case
            1-D trajectories are drawn against 0..T-1).
        trajectories: [T, N] or [T, N, d] with d in {1, 2, 3}.
        labels: optional per-trajectory labels, shape [N].
        title: optional title.

    Returns:
        The Figure of `plot_trajectories_1d`, `_2d` or `_3d`.

    Raises:
        ValueError: if d > 3 (project the states to 3 or fewer dimensions first, e.g. with PCA),
            or on any shape error of the chosen function.
    """
    arr = to_numpy(trajectories, "trajectories")
    check_ndim(arr, "trajectories", (2, 3), "[T, N] or [T, N, d]")
    dim = 1 if arr.ndim == 2 else arr.shape[2]
    if dim == 1:
        t = np.arange(arr.shape[0], dtype=float) if times is None else times
        return plot_trajectories_1d(t, arr, labels=labels, title=title)
    if dim == 2:
        return plot_trajectories_2d(arr, labels=labels, title=title, times=times)
    if dim == 3:
        return plot_trajectories_3d(arr, labels=labels, title=title, times=times)
    raise ValueError(
        f"trajectories have {dim} dimensions (shape {tuple(arr.shape)}); only 1, 2 or 3 can be plotted: "
        "project them to 3 or fewer dimensions first (e.g. PCA)"
    )


def check_snapshot(s: Any, i: int) -> np.ndarray:
    """Validate feature snapshot `i` as [N, 1|2|3] (also [N]); returns [N, d]."""
    arr = to_numpy(s, f"snapshots[{i}]")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] not in (1, 2, 3):
        raise ValueError(f"snapshots[{i}] must have shape [N, 1], [N, 2] or [N, 3], got shape {tuple(arr.shape)}")
    return arr


def draw_features(ax: Axes, feats: np.ndarray, colors: list[str], *, title: str | None = None,
                  limits: Sequence[tuple[float, float]] | None = None) -> None:
    """Scatter features [N, 1|2|3] on `ax` (a 3-D axes for 3 dims); 1-D features lie on the line y = 0."""
    d = feats.shape[1]
    if d == 1:
        ax.scatter(feats[:, 0], np.zeros(len(feats)), c=colors, s=12, alpha=0.8)
        ax.set_yticks([])
        ax.set_xlabel("h1")
        ax.set_ylabel("(1-D: all at 0)", fontsize="small")
    elif d == 2:
        ax.scatter(feats[:, 0], feats[:, 1], c=colors, s=12, alpha=0.8)
        ax.set_xlabel("h1")
        ax.set_ylabel("h2")
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.yaxis.set_major_locator(MaxNLocator(4))
    else:
        ax.scatter(feats[:, 0], feats[:, 1], feats[:, 2], c=colors, s=10, alpha=0.8)
        style_3d_axes(ax)
    if limits is not None:
        ax.set_xlim(*limits[0])
        if d >= 2:
            ax.set_ylim(*limits[1])
        if d == 3:
            ax.set_zlim(*limits[2])
    if title is not None:
        ax.set_title(title, fontsize="medium")


def plot_feature_evolution(
    snapshots: Sequence[ArrayLike],
    *,
    labels: ArrayLike | None = None,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    panel_size: float = 3.0,
) -> Figure:
    """Grid of scatter plots of the features h(T) at several training iterations (Fig. 8 bottom).

    Arguments:
        snapshots: K arrays of features, each [N, 2] or [N, 3] (3-D axes), or [N, 1] / [N]
            (drawn on the line y = 0).
        labels: optional per-point labels, shape [N] (all snapshots must then have N points).
        titles: optional K panel titles (e.g. "iteration 100").
        ncols: maximum number of panels per row.
        panel_size: width and height of one panel in inches.

    Returns:
        The Figure with exactly K axes, one scatter collection each, every axis labelled (h1, h2,
        h3); 3-D panels have at most four ticks per axis. The class legend is the figure's.

    Raises:
        ValueError: if `snapshots` is empty, a snapshot or `labels` has a wrong shape, `titles`
            has the wrong length, or `ncols` < 1.
    """
    if isinstance(snapshots, np.ndarray) or hasattr(snapshots, "detach"):
        snapshots = list(snapshots)
    if not isinstance(snapshots, Sequence) or len(snapshots) == 0:
        raise ValueError("snapshots must be a non-empty sequence of [N, d] arrays")
    if not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    feats = [check_snapshot(s, i) for i, s in enumerate(snapshots)]
    if titles is not None and len(titles) != len(feats):
        raise ValueError(f"titles must have one entry per snapshot ({len(feats)}), got {len(titles)}")
    k = len(feats)
    cols = min(ncols, k)
    rows = math.ceil(k / cols)
    fig = Figure(figsize=(panel_size * cols, panel_size * rows), layout="constrained")
    legend: list[tuple[str, str]] = []
    for i, f in enumerate(feats):
        lab = point_labels(labels, f.shape[0], "labels")
        colors, legend = label_colors(lab, f.shape[0])
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d" if f.shape[1] == 3 else None)
        draw_features(ax, f, colors, title=None if titles is None else str(titles[i]))
    if legend:
        handles = [Line2D([], [], ls="none", marker="o", color=c, label=t) for t, c in legend]
        fig.legend(handles=handles, loc="outside upper right", fontsize="small", ncols=len(handles))
    return fig


def plot_vector_field_1d(
    times: ArrayLike,
    states: ArrayLike,
    velocities: ArrayLike,
    *,
    trajectories: ArrayLike | None = None,
    traj_times: ArrayLike | None = None,
    labels: ArrayLike | None = None,
    title: str | None = None,
    cmap: str = "viridis",
    ax: Axes | None = None,
) -> Figure:
    """Quiver plot of a time-dependent 1-D vector field f(h, t) in the (t, h) plane.

    Each arrow at (times[i], states[j]) points along (1, velocities[i, j]), i.e. along the slope
    dh/dt of a solution through that point; arrows have equal on-screen length (for the default
    axes) and are coloured by |velocity|.

    Arguments:
        times: grid times, shape [nt].
        states: grid states h, shape [nx].
        velocities: f(h, t) on the grid, shape [nt, nx] (velocities[i, j] at times[i], states[j]).
        trajectories: optional solutions to overlay, shape [T, N] or [T, N, 1].
        traj_times: times of the trajectories, shape [T]; defaults to T points evenly spaced
            from times[0] to times[-1].
        labels: optional per-trajectory labels, shape [N].
        title: optional title.
        cmap: colormap of the arrow speed.
        ax: draw into this axes (its figure is returned) instead of a new figure.

    Returns:
        The Figure: a Quiver with nt * nx arrows, plus one LineCollection when trajectories are given.

    Raises:
        ValueError: on inconsistent shapes.
    """
    t = to_numpy(times, "times")
    h = to_numpy(states, "states")
    v = to_numpy(velocities, "velocities")
    check_ndim(t, "times", (1,), "[nt]")
    check_ndim(h, "states", (1,), "[nx]")
    if v.shape != (t.shape[0], h.shape[0]):
        raise ValueError(f"velocities must have shape [nt, nx] = [{t.shape[0]}, {h.shape[0]}], got shape {tuple(v.shape)}")
    traj = tt = None
    if trajectories is not None:
        traj = check_trajectories(trajectories, 1)[:, :, 0]
        if traj_times is None:
            tt = np.linspace(float(t[0]), float(t[-1]), traj.shape[0])
        else:
            tt = to_numpy(traj_times, "traj_times")
            if tt.ndim != 1 or tt.shape[0] != traj.shape[0]:
                raise ValueError(f"traj_times must have shape [{traj.shape[0]}] (T of trajectories), got shape {tuple(tt.shape)}")
    elif traj_times is not None or labels is not None:
        raise ValueError("traj_times and labels need trajectories")

    tlo, thi = axis_limits(t if tt is None else np.concatenate([t, tt]))
    hlo, hhi = axis_limits(h if traj is None else np.concatenate([h, traj.ravel()]))
    tspan, hspan = thi - tlo, hhi - hlo
    # direction (1, v) in axes-fraction units, normalised, then scaled to ~0.8 of the grid spacing
    du = np.full_like(v, 1.0 / tspan)
    dv = v / hspan
    norm = np.hypot(du, dv)
    step = 0.8 * min(1.0 / max(len(t), 2), 1.0 / max(len(h), 2))
    U = du / norm * step * tspan
    V = dv / norm * step * hspan
    T, H = np.meshgrid(t, h, indexing="ij")
    fig, ax = get_axes(ax, figsize=(6.5, 4.0))
    q = ax.quiver(T, H, U, V, np.abs(v), cmap=cmap, angles="xy", scale_units="xy", scale=1.0,
                  pivot="middle", width=0.004)
    fig.colorbar(q, ax=ax, label="|f(h, t)|")
    if traj is not None:
        n = traj.shape[1]
        colors, legend = label_colors(point_labels(labels, n), n)
        segs = np.stack([np.broadcast_to(tt[None, :], (n, tt.shape[0])), traj.T], axis=-1)
        ax.add_collection(LineCollection(list(segs), colors=colors, linewidths=1.5))
        add_label_legend(ax, legend)
    ax.set_xlim(tlo, thi)
    ax.set_ylim(hlo, hhi)
    ax.set_xlabel("t")
    ax.set_ylabel("h")
    if title is not None:
        ax.set_title(title)
    return fig
