"""Training curves: mean +- std histories (loss, NFE) and per-run scatter plots (NFE vs loss/accuracy)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .style import ArrayLike, get_axes, method_colors, to_numpy

__all__ = ["plot_accuracy_vs_nfe", "plot_histories", "plot_nfe_vs_loss"]


def _is_scalar(v: Any) -> bool:
    if hasattr(v, "detach"):
        return v.dim() == 0
    return isinstance(v, (int, float, np.number)) or (isinstance(v, np.ndarray) and v.ndim == 0)


def _repeats(value: Any, label: str) -> list[np.ndarray]:
    """Curves of one label as a list of 1-D arrays (a 1-D array is one repeat, a 2-D array one per row)."""
    name = f"histories[{label!r}]"
    if hasattr(value, "detach") or isinstance(value, np.ndarray):
        arr = to_numpy(value, name)
        if arr.ndim == 1:
            curves = [arr]
        elif arr.ndim == 2:
            curves = list(arr)
        else:
            raise ValueError(f"{name} must be a list of 1-D curves or a 2-D array [repeats, T], got shape {tuple(arr.shape)}")
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if len(value) == 0:
            raise ValueError(f"{name} must contain at least one curve, got an empty sequence")
        if all(_is_scalar(v) for v in value):
            curves = [to_numpy(value, name)]  # a single curve given as a list of numbers
        else:
            curves = [to_numpy(v, f"{name}[{i}]") for i, v in enumerate(value)]
    else:
        raise ValueError(f"{name} must be a sequence of 1-D curves, got {type(value).__name__}")
    for i, c in enumerate(curves):
        if c.ndim != 1 or c.shape[0] == 0:
            raise ValueError(f"{name}[{i}] must be a non-empty 1-D curve, got shape {tuple(c.shape)}")
    return curves


def history_stats(curves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) std across curves, after truncating all to the shortest length.

    Arguments:
        curves: 1-D arrays, one per repeat.

    Returns:
        (mean, std), both 1-D of the shortest curve's length.
    """
    length = min(len(c) for c in curves)
    stack = np.stack([np.asarray(c, dtype=float)[:length] for c in curves])
    return stack.mean(axis=0), stack.std(axis=0)


def plot_histories(
    histories: Mapping[str, Sequence[ArrayLike]],
    *,
    ylabel: str = "Loss",
    xlabel: str = "Iteration",
    title: str | None = None,
    log_y: bool = False,
    ax: Axes | None = None,
) -> Figure:
    """Plot the mean across repeats of each labelled history, with a shaded band of +- one std.

    Used for the loss and NFE histories of the paper. Repeats of different lengths are truncated to
    the shortest. The x values are 0, 1, ..., T-1. A band is drawn only for labels with >= 2 repeats.

    Arguments:
        histories: label -> per-repeat curves: a sequence of 1-D array-likes (or tensors), a 2-D array
            [repeats, T], or a single 1-D curve.
        ylabel, xlabel, title: axis labels and optional title.
        log_y: use a logarithmic y axis.
        ax: draw into this axes (its figure is returned) instead of a new figure.

    Returns:
        The matplotlib Figure: one mean line per label (in mapping order) and one band per
        multi-repeat label, with a legend of the labels.

    Raises:
        ValueError: if `histories` is empty or a curve is not a non-empty 1-D array.
    """
    if not isinstance(histories, Mapping) or len(histories) == 0:
        raise ValueError("histories must be a non-empty mapping label -> list of 1-D curves")
    data = {label: _repeats(value, label) for label, value in histories.items()}
    fig, ax = get_axes(ax)
    colors = method_colors(list(data))
    for label, curves in data.items():
        mean, std = history_stats(curves)
        x = np.arange(len(mean))
        (line,) = ax.plot(x, mean, color=colors[label], label=f"{label}", lw=1.8)
        if len(curves) > 1:
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.25, lw=0)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _scatter_pairs(points: Mapping[str, Any], *, xlabel: str, ylabel: str, title: str | None,
                   log_x: bool, log_y: bool, ax: Axes | None) -> Figure:
    if not isinstance(points, Mapping) or len(points) == 0:
        raise ValueError("points must be a non-empty mapping label -> (x values, y values)")
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for label, value in points.items():
        name = f"points[{label!r}]"
        if isinstance(value, np.ndarray) and value.ndim == 2 and value.shape[0] == 2:
            value = (value[0], value[1])
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise ValueError(f"{name} must be a pair (x values, y values)")
        x = np.atleast_1d(to_numpy(value[0], f"{name}[0]"))
        y = np.atleast_1d(to_numpy(value[1], f"{name}[1]"))
        if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
            raise ValueError(f"{name} must hold two 1-D arrays of equal length, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
        pairs[label] = (x, y)
    fig, ax = get_axes(ax)
    colors = method_colors(list(pairs))
    for label, (x, y) in pairs.items():
        ax.scatter(x, y, color=colors[label], label=str(label), s=28, alpha=0.8, edgecolors="none")
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_nfe_vs_loss(
    points: Mapping[str, tuple[ArrayLike, ArrayLike]],
    *,
    xlabel: str = "NFE",
    ylabel: str = "Loss",
    title: str | None = None,
    log_x: bool = False,
    log_y: bool = False,
    ax: Axes | None = None,
) -> Figure:
    """Scatter loss against number of function evaluations, one colour per label (paper's NFE vs loss).

    Arguments:
        points: label -> (nfe values, loss values), two 1-D array-likes of equal length.
        xlabel, ylabel, title: axis labels and optional title.
        log_x, log_y: logarithmic axes.
        ax: draw into this axes (its figure is returned) instead of a new figure.

    Returns:
        The Figure: one scatter collection per label, in mapping order, with a legend.

    Raises:
        ValueError: if `points` is empty or a value is not a pair of equal-length 1-D arrays.
    """
    return _scatter_pairs(points, xlabel=xlabel, ylabel=ylabel, title=title, log_x=log_x, log_y=log_y, ax=ax)


def plot_accuracy_vs_nfe(
    points: Mapping[str, tuple[ArrayLike, ArrayLike]],
    *,
    xlabel: str = "NFE",
    ylabel: str = "Accuracy",
    title: str | None = None,
    log_x: bool = False,
    ax: Axes | None = None,
) -> Figure:
    """Scatter accuracy against number of function evaluations, one colour per label (Fig. 12 style).

    Arguments:
        points: label -> (nfe values, accuracy values), two 1-D array-likes of equal length.
        xlabel, ylabel, title: axis labels and optional title.
        log_x: logarithmic NFE axis.
        ax: draw into this axes (its figure is returned) instead of a new figure.

    Returns:
        The Figure: one scatter collection per label, in mapping order, with a legend.

    Raises:
        ValueError: if `points` is empty or a value is not a pair of equal-length 1-D arrays.
    """
    return _scatter_pairs(points, xlabel=xlabel, ylabel=ylabel, title=title, log_x=log_x, log_y=False, ax=ax)
