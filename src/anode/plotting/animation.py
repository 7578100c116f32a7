"""Animated GIFs (matplotlib.animation.PillowWriter) of trajectories or of features during training."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.animation import PillowWriter
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .flows import (
    axis_limits,
    check_snapshot,
    check_trajectories,
    draw_features,
    draw_paths_2d,
)
from .style import ArrayLike, add_label_legend, label_colors, point_labels

__all__ = ["feature_evolution_gif", "save_gif", "trajectory_gif"]


def save_gif(
    frames_fn: Callable[[Axes, int], Any],
    num_frames: int,
    path: str | os.PathLike[str],
    *,
    fps: float = 10,
    figsize: tuple[float, float] = (5.0, 5.0),
    dpi: int = 80,
    projection: str | None = None,
) -> Path:
    """Write an animated GIF whose frame i is drawn by `frames_fn(ax, i)` on a freshly cleared axes.

    Note that Pillow merges consecutive identical frames, so a GIF of static content can end up
    with fewer than `num_frames` frames.

    Arguments:
        frames_fn: called as `frames_fn(ax, i)` for i = 0 .. num_frames-1; draws frame i on `ax`
            (which is cleared before every call, so set axis limits inside it).
        num_frames: number of frames (>= 1).
        path: destination; must end in ".gif". Missing parent directories are created.
        fps: frames per second.
        figsize: figure size in inches.
        dpi: resolution.
        projection: axes projection, e.g. "3d".

    Returns:
        The Path written.

    Raises:
        TypeError: if `frames_fn` is not callable.
        ValueError: if `num_frames` < 1, `fps` <= 0 or the suffix is not ".gif".
    """
    if not callable(frames_fn):
        raise TypeError(f"frames_fn must be callable as frames_fn(ax, i), got {type(frames_fn).__name__}")
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    out = Path(path)
    if out.suffix.lower() != ".gif":
        raise ValueError(f"path must end in .gif, got {str(out)!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=figsize)
    ax = fig.add_subplot(projection=projection)
    writer = PillowWriter(fps=fps)
    with writer.saving(fig, str(out), dpi):
        for i in range(int(num_frames)):
            ax.cla()
            frames_fn(ax, i)
            writer.grab_frame()
    return out


def trajectory_gif(
    trajectories: ArrayLike,
    path: str | os.PathLike[str],
    *,
    labels: ArrayLike | None = None,
    fps: float = 10,
    stride: int = 1,
    title: str | None = None,
) -> Path:
    """GIF of 2-D trajectories growing over time: frame k shows the paths up to time index k.

    Arguments:
        trajectories: states, shape [T, N, 2].
        path: destination ".gif".
        labels: optional per-trajectory labels, shape [N].
        fps: frames per second.
        stride: use every `stride`-th time index (the last one is always included).
        title: optional title (the frame's time index is appended).

    Returns:
        The Path written.

    Raises:
        ValueError: on wrong shapes, `stride` < 1, or a bad path/fps (see `save_gif`).
    """
    traj = check_trajectories(trajectories, 2)
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    n = traj.shape[1]
    colors, legend = label_colors(point_labels(labels, n), n)
    idx = list(range(0, traj.shape[0], stride))
    if idx[-1] != traj.shape[0] - 1:
        idx.append(traj.shape[0] - 1)
    xlim, ylim = axis_limits(traj[..., 0]), axis_limits(traj[..., 1])

    def draw(ax: Axes, i: int) -> None:
        draw_paths_2d(ax, traj, colors, alpha=0.7, upto=idx[i] + 1)
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_title(f"{title + ': ' if title else ''}step {idx[i]}")
        add_label_legend(ax, legend, loc="upper right")

    return save_gif(draw, len(idx), path, fps=fps)


def feature_evolution_gif(
    snapshots: Sequence[ArrayLike],
    path: str | os.PathLike[str],
    *,
    labels: ArrayLike | None = None,
    titles: Sequence[str] | None = None,
    fps: float = 4,
) -> Path:
    """GIF of features h(T) across training: one frame per snapshot, with fixed axis limits.

    Arguments:
        snapshots: K arrays of features, all [N, d] with the same d in {1, 2, 3}.
        path: destination ".gif".
        labels: optional per-point labels, shape [N].
        titles: optional K frame titles.
        fps: frames per second.

    Returns:
        The Path written.

    Raises:
        ValueError: if `snapshots` is empty, shapes differ or are wrong, or `titles` has the wrong length.
    """
    if isinstance(snapshots, np.ndarray) or hasattr(snapshots, "detach"):
        snapshots = list(snapshots)
    if len(snapshots) == 0:
        raise ValueError("snapshots must be a non-empty sequence of [N, d] arrays")
    feats = [check_snapshot(s, i) for i, s in enumerate(snapshots)]
    d = feats[0].shape[1]
    for i, f in enumerate(feats):
        if f.shape[1] != d:
            raise ValueError(f"snapshots[{i}] must have {d} columns like snapshots[0], got shape {tuple(f.shape)}")
    if titles is not None and len(titles) != len(feats):
        raise ValueError(f"titles must have one entry per snapshot ({len(feats)}), got {len(titles)}")
    allf = np.concatenate(feats)
    limits = [axis_limits(allf[:, k]) for k in range(d)]
    per_frame = [label_colors(point_labels(labels, f.shape[0]), f.shape[0]) for f in feats]

    def draw(ax: Axes, i: int) -> None:
        colors, legend = per_frame[i]
        title = str(titles[i]) if titles is not None else f"snapshot {i}"
        draw_features(ax, feats[i], colors, title=title, limits=limits)
        add_label_legend(ax, legend, loc="upper right")

    return save_gif(draw, len(feats), path, fps=fps, projection="3d" if d == 3 else None)
