"""Training curves: mean +- std histories (loss, NFE) and per-run scatter plots (NFE vs loss/accuracy)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .style import ArrayLike, CurveStyle, get_axes, resolve_styles, to_numpy

__all__ = ["auto_window", "moving_average", "plot_accuracy_vs_nfe", "plot_histories", "plot_nfe_vs_loss", "scatter_marker"]


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


def moving_average(y: ArrayLike, window: int) -> np.ndarray:
    """Centred moving average of a 1-D curve over `window` points (an odd window is centred exactly;
    near the ends the window shrinks to the points that exist, so the result has the input's length
    and no edge bias towards zero). `window` <= 1 returns the curve unchanged."""
    arr = np.asarray(y, dtype=float)
    w = int(window)
    if w <= 1 or arr.size <= 1:
        return arr.copy()
    half_lo, half_hi = (w - 1) // 2, w // 2
    padded = np.concatenate([np.zeros(half_lo + 1), arr, np.zeros(half_hi)])
    ones = np.concatenate([np.zeros(half_lo + 1), np.ones_like(arr), np.zeros(half_hi)])
    csum, ccount = np.cumsum(padded), np.cumsum(ones)
    total = csum[w:] - csum[:-w]
    count = ccount[w:] - ccount[:-w]
    return total / count


def auto_window(length: int) -> int:
    """The default smoothing window for a curve of `length` points: about 1/40 of it, odd, at least 1
    (e.g. 25 iterations for a 1000-iteration history; 1, i.e. no smoothing, below 60 points)."""
    if length < 60:
        return 1
    return round(length / 40) | 1


def plot_histories(
    histories: Mapping[str, Sequence[ArrayLike]],
    *,
    ylabel: str = "Loss",
    xlabel: str = "Iteration",
    title: str | None = None,
    log_y: bool = False,
    styles: Mapping[str, CurveStyle | Mapping[str, Any] | str] | None = None,
    smooth: int | str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Plot the mean across repeats of each labelled history, with a shaded band of +- one std.

    Used for the loss and NFE histories of the paper. Repeats of different lengths are truncated to
    the shortest. The x values are 0, 1, ..., T-1. A band is drawn only for labels with >= 2 repeats.

    With `smooth`, noisy per-iteration curves stay readable: the labelled line and the band are the
    centred moving average (`moving_average`) of the mean and of the std over `smooth` points
    ("auto": `auto_window`), drawn over the raw mean as a faint unlabelled line of the same colour;
    the legend's title names the window.

    Arguments:
        histories: label -> per-repeat curves: a sequence of 1-D array-likes (or tensors), a 2-D array
            [repeats, T], or a single 1-D curve.
        ylabel, xlabel, title: axis labels and optional title.
        log_y: use a logarithmic y axis.
        styles: label -> `CurveStyle` (or a dict of its fields, or a colour): colour, line style and
            marker of each label (see `model_styles`); labels without one get their family colour
            (`method_colors`), solid. Labels that would look alike get spare markers.
        smooth: smoothing window in points (None or 1: no smoothing; "auto": `auto_window(T)`).
        ax: draw into this axes (its figure is returned) instead of a new figure.

    Returns:
        The matplotlib Figure: one labelled mean line per label (in mapping order), one band per
        multi-repeat label and, when smoothing, one faint raw line per label, with a legend of the labels.

    Raises:
        ValueError: if `histories` is empty, a curve is not a non-empty 1-D array, or `smooth` is
            neither None, "auto" nor a positive integer.
    """
    if not isinstance(histories, Mapping) or len(histories) == 0:
        raise ValueError("histories must be a non-empty mapping label -> list of 1-D curves")
    if not (smooth is None or smooth == "auto" or (isinstance(smooth, (int, np.integer)) and smooth >= 1)):
        raise ValueError(f"smooth must be None, 'auto' or a positive integer, got {smooth!r}")
    data = {label: _repeats(value, label) for label, value in histories.items()}
    fig, ax = get_axes(ax)
    looks = resolve_styles(list(data), styles)
    windows = []
    for i, (label, curves) in enumerate(data.items()):
        mean, std = history_stats(curves)
        x = np.arange(len(mean))
        look = looks[label]
        w = 1 if smooth is None else (auto_window(len(mean)) if smooth == "auto" else int(smooth))
        w = min(w, len(mean))
        windows.append(w)
        if w > 1:
            ax.plot(x, mean, color=look.color, lw=0.6, alpha=0.3, label=f"_{label} (raw)")
            mean, std = moving_average(mean, w), moving_average(std, w)
        extra: dict[str, Any] = {}
        if look.marker is not None:
            step = max(len(x) // 8, 1)
            extra = {"marker": look.marker, "markevery": ((i * step) // max(len(data), 1) % step, step),
                     "markersize": 5, "markeredgecolor": "white", "markeredgewidth": 0.6}
        (line,) = ax.plot(x, mean, color=look.color, linestyle=look.linestyle, label=f"{label}", lw=1.8, **extra)
        if len(curves) > 1:
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15 if w > 1 else 0.25, lw=0)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    legend_title = None
    if max(windows) > 1:
        unit = xlabel.lower() + ("s" if not xlabel.lower().endswith("s") else "")
        legend_title = f"mean of repeats, smoothed over {max(windows)} {unit}; faint: raw"
    ax.legend(fontsize="small", title=legend_title, title_fontsize="x-small")
    return fig


_LINE_MARKERS = ("x", "+", "1", "2", "3", "4")
_LINESTYLE_MARKERS = {"--": "x", ":": "+", "-.": "1"}


def scatter_marker(style: CurveStyle) -> tuple[str, bool]:
    """The (marker, filled) that stands for a curve style in a scatter plot, where lines have no
    style: a solid curve's marker (default "o") filled; a model whose curves are dashed, dotted
    or dash-dotted (a training modifier is on) gets its own marker hollow, or without one
    "x", "+" and "1" (other dash patterns: a hollow star)."""
    if style.linestyle == "-":
        return style.marker or "o", True
    if style.marker is not None:
        return style.marker, False
    return _LINESTYLE_MARKERS.get(style.linestyle, "*") if isinstance(style.linestyle, str) else "*", False


def _scatter_pairs(points: Mapping[str, Any], *, xlabel: str, ylabel: str, title: str | None,
                   log_x: bool, log_y: bool, ax: Axes | None, styles: Mapping[str, Any] | None = None,
                   dodge: float = 0.0) -> Figure:
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
    looks = resolve_styles(list(pairs), styles)
    used: set[tuple[str, str, bool]] = set()
    offsets = np.linspace(-dodge / 2, dodge / 2, len(pairs)) if len(pairs) > 1 else np.zeros(1)
    for k, (label, (x, y)) in enumerate(pairs.items()):
        x = x + offsets[k]
        look = looks[label]
        marker, filled = scatter_marker(look)
        spare = iter(("v", "^", "P", "X", "<", ">", "*", "h", "p", "d"))
        while (look.color.lower(), marker, filled) in used and (nxt := next(spare, None)) is not None:
            marker = nxt
        used.add((look.color.lower(), marker, filled))
        # many points per label (one per iteration and repeat): small and translucent, so that
        # labels drawn later do not hide the earlier ones where they overlap; a few (one per run): large and solid
        few = len(x) <= 50
        common = {"marker": marker, "label": str(label), "s": 40 if few else 14, "alpha": 0.9 if few else 0.35}
        if filled:
            ax.scatter(x, y, color=look.color, edgecolors="none", **common)
        elif marker in _LINE_MARKERS:
            ax.scatter(x, y, color=look.color, linewidths=0.9, **common)
        else:
            ax.scatter(x, y, facecolors="none", edgecolors=look.color, linewidths=0.9, **common)
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    legend = ax.legend(fontsize="small")
    for handle in legend.legend_handles:  # the legend's markers opaque and of full size
        handle.set_alpha(1.0)
        if hasattr(handle, "set_sizes"):
            handle.set_sizes([36])
    return fig


def plot_nfe_vs_loss(
    points: Mapping[str, tuple[ArrayLike, ArrayLike]],
    *,
    xlabel: str = "NFE",
    ylabel: str = "Loss",
    title: str | None = None,
    log_x: bool = False,
    log_y: bool = False,
    styles: Mapping[str, CurveStyle | Mapping[str, Any] | str] | None = None,
    dodge: float = 0.0,
    ax: Axes | None = None,
) -> Figure:
    """Scatter loss against number of function evaluations, one colour per label (paper's NFE vs loss).

    Arguments:
        points: label -> (nfe values, loss values), two 1-D array-likes of equal length.
        xlabel, ylabel, title: axis labels and optional title.
        log_x, log_y: logarithmic axes.
        styles: label -> `CurveStyle` (colour and marker; see `plot_histories`).
        dodge: spread the labels side by side over this width of the x axis (label k of n is shifted
            by -dodge/2 + k * dodge/(n - 1)), so that strips of equal integer NFE do not hide each
            other; 0 draws every point at its value.
        ax: draw into this axes (its figure is returned) instead of a new figure.

    Returns:
        The Figure: one scatter collection per label, in mapping order, with a legend.

    Raises:
        ValueError: if `points` is empty or a value is not a pair of equal-length 1-D arrays.
    """
    return _scatter_pairs(points, xlabel=xlabel, ylabel=ylabel, title=title, log_x=log_x, log_y=log_y, ax=ax,
                          styles=styles, dodge=dodge)


def plot_accuracy_vs_nfe(
    points: Mapping[str, tuple[ArrayLike, ArrayLike]],
    *,
    xlabel: str = "NFE",
    ylabel: str = "Accuracy",
    title: str | None = None,
    log_x: bool = False,
    styles: Mapping[str, CurveStyle | Mapping[str, Any] | str] | None = None,
    dodge: float = 0.0,
    ax: Axes | None = None,
) -> Figure:
    """Scatter accuracy against number of function evaluations, one colour per label (Fig. 12 style).

    Arguments:
        points: label -> (nfe values, accuracy values), two 1-D array-likes of equal length.
        xlabel, ylabel, title: axis labels and optional title.
        log_x: logarithmic NFE axis.
        styles: label -> `CurveStyle` (colour and marker; see `plot_histories`).
        dodge: spread the labels side by side over this width of the NFE axis (as in
            `plot_nfe_vs_loss`), so that runs at the same integer NFE do not hide each other.
        ax: draw into this axes (its figure is returned) instead of a new figure.

    Returns:
        The Figure: one scatter collection per label, in mapping order, with a legend.

    Raises:
        ValueError: if `points` is empty or a value is not a pair of equal-length 1-D arrays.
    """
    return _scatter_pairs(points, xlabel=xlabel, ylabel=ylabel, title=title, log_x=log_x, log_y=False, ax=ax, styles=styles,
                          dodge=dodge)
