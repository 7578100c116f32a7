"""Shared helpers for `anode.plotting`: array conversion, validation, palette, figure creation.

Nothing here touches `matplotlib.pyplot`: figures are built with `matplotlib.figure.Figure`, so no
global pyplot state is created and no GUI backend is ever needed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib import colormaps, rcParams
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.typing import ArrayLike

__all__ = [
    "AUGMENTATION_STYLES",
    "LABEL_COLORS",
    "METHOD_COLORS",
    "MODIFIER_LINESTYLES",
    "ArrayLike",
    "CurveStyle",
    "augment_shade",
    "method_color",
    "method_colors",
    "model_style",
    "model_styles",
]

#: Fixed colours for the three model families of the paper, matched on the start of a label.
METHOD_COLORS: dict[str, str] = {
    "ANODE": "#1f77b4",  # blue
    "NODE": "#d62728",  # red
    "ResNet": "#2ca02c",  # green
}

#: Colours of the two classes of a binary (-1/+1 or 0/1) labelling: smaller label first.
LABEL_COLORS: tuple[str, str] = ("#2166ac", "#b2182b")

_NEUTRAL = "#404040"


def to_numpy(x: Any, name: str, *, dtype: Any = float) -> np.ndarray:
    """Convert `x` (array, sequence, torch tensor, or sequence of tensors) to a numpy array.

    Arguments:
        x: the data. Torch tensors (anything with `.detach`) go through `.detach().cpu().numpy()`.
        name: the argument name, used in error messages.
        dtype: target dtype (None keeps numpy's inference, e.g. for string labels).

    Returns:
        A numpy array.

    Raises:
        ValueError: if `x` is None, ragged, or cannot be converted to `dtype`.
    """
    if x is None:
        raise ValueError(f"{name} must be array-like, got None")
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    elif isinstance(x, (list, tuple)) and any(hasattr(e, "detach") for e in x):
        x = [e.detach().cpu().numpy() if hasattr(e, "detach") else e for e in x]
    try:
        arr = np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} could not be converted to a numeric array ({exc})") from exc
    if arr.dtype == object:
        raise ValueError(f"{name} is ragged or not numeric (got an object array of shape {arr.shape})")
    return arr


def check_ndim(arr: np.ndarray, name: str, ndims: Sequence[int], expected: str) -> None:
    """Raise ValueError unless `arr.ndim` is one of `ndims`, naming `name`, `expected` and the shape."""
    if arr.ndim not in ndims:
        raise ValueError(f"{name} must have shape {expected}, got shape {tuple(arr.shape)}")


def _default_cycle() -> list[str]:
    colors = rcParams["axes.prop_cycle"].by_key().get("color", [_NEUTRAL])
    reserved = {c.lower() for c in METHOD_COLORS.values()}
    rest = [to_hex(c) for c in colors if to_hex(c).lower() not in reserved]
    return rest or [to_hex(c) for c in colors]


def _method_key(label: str) -> str | None:
    for key in METHOD_COLORS:  # "ANODE" is tried before "NODE"
        if re.match(rf"{re.escape(key)}(?![A-Za-z0-9_])", label.strip(), flags=re.IGNORECASE):
            return key
    return None


def method_color(label: str, index: int = 0) -> str:
    """The colour for a curve labelled `label`.

    Labels starting with the word "NODE", "ANODE" or "ResNet" (case-insensitive, e.g. "ANODE (p=1)")
    get that family's fixed colour from `METHOD_COLORS`; any other label gets entry `index` of the
    default colour cycle (without the reserved colours).

    Arguments:
        label: the curve label.
        index: position in the default cycle for labels of no known family.

    Returns:
        A hex colour string.
    """
    key = _method_key(str(label))
    if key is not None:
        return METHOD_COLORS[key]
    cycle = _default_cycle()
    return cycle[index % len(cycle)]


def method_colors(labels: Sequence[str]) -> dict[str, str]:
    """Colours for several labels: known families fixed, the others taking the default cycle in order.

    Arguments:
        labels: the curve labels, in plotting order.

    Returns:
        A mapping label -> hex colour.
    """
    out: dict[str, str] = {}
    k = 0
    for label in labels:
        if _method_key(str(label)) is not None:
            out[label] = method_color(label)
        else:
            out[label] = method_color(label, k)
            k += 1
    return out


LineStyle = str | tuple[float, tuple[float, ...]]


@dataclass(frozen=True)
class CurveStyle:
    """How one model is drawn in every figure of a report: colour, line style and marker (None: no marker)."""

    color: str
    linestyle: LineStyle = "-"
    marker: str | None = None

    def key(self) -> tuple[str, str, str | None]:
        """A hashable identity: two models must never share it within one figure."""
        return (self.color.lower(), repr(self.linestyle), self.marker)


#: Augmented models by how h(0) is built (`ModelSpec.augmentation`): a sequential colormap (the
#: shade grows with the number of augmented dimensions p, see `augment_shade`) and a marker.
AUGMENTATION_STYLES: dict[str, tuple[str, str | None]] = {
    "zeros": ("Blues", None),  # the paper's ANODE
    "learned": ("Purples", "o"),
    "second_order": ("Oranges", "s"),
    "second_order_learned": ("YlOrBr", "D"),
}

#: Line styles of the training modifiers a model adds (weight decay, regularisers); any
#: combination of two or more gets its own dash pattern.
MODIFIER_LINESTYLES: dict[frozenset[str], LineStyle] = {
    frozenset(): "-",
    frozenset({"weight_decay"}): "--",
    frozenset({"kinetic_energy"}): ":",
    frozenset({"jacobian_norm"}): "-.",
    frozenset({"weight_decay", "kinetic_energy"}): (0, (7, 2, 1, 2, 1, 2)),
    frozenset({"weight_decay", "jacobian_norm"}): (0, (7, 2, 3, 2)),
    frozenset({"kinetic_energy", "jacobian_norm"}): (0, (1, 2, 1, 2, 4, 2)),
    frozenset({"weight_decay", "kinetic_energy", "jacobian_norm"}): (0, (7, 2, 1, 2, 3, 2)),
}

#: Extra markers that tell apart models whose settings give the same colour and line style.
_SPARE_MARKERS = ("v", "^", "P", "X", "<", ">", "*", "h", "p", "d")

_REFERENCE_KINDS = ("resnet", "convresnet")


def augment_shade(p: int) -> float:
    """Position in a sequential colormap for p augmented dimensions: 0.5 for p = 1, 0.75 for 2,
    0.9 for 5, 0.95 for 10, at most 0.98 for large p (darker = more augmentation). Absolute, not
    ranked, so a model keeps its shade in every experiment of a report."""
    return min(1.0 - 0.5 / max(int(p), 1), 0.98)


def _setting(model: Any, name: str, default: float) -> float:
    value = getattr(model, name, None) if not isinstance(model, Mapping) else model.get(name)
    return float(default if value is None else value)


def _attr(model: Any, name: str, default: Any = None) -> Any:
    if isinstance(model, Mapping):
        return model.get(name, default)
    return getattr(model, name, default)


def model_style(model: Any, *, weight_decay: float = 0.0, kinetic_energy: float = 0.0,
                jacobian_norm: float = 0.0) -> CurveStyle:
    """The style of one model, from its declared settings (never its display name).

    Rules: a non-ODE reference (role "reference" or kind resnet/convresnet) is green; an ODE model
    with p = `augment_dim` = 0 (a NODE) is red; an augmented ODE model (ANODE) takes the colormap
    and marker of its `augmentation` in `AUGMENTATION_STYLES` (zeros: Blues, no marker; learned:
    Purples, circles; second_order: Oranges, squares), shaded by p (`augment_shade`). The line
    style says which training modifiers are on (`MODIFIER_LINESTYLES`: weight decay dashed,
    kinetic energy dotted, Jacobian norm dash-dot; solid: none).

    Arguments:
        model: anything with the attributes (or keys) of `anode.lab.experiments.config.ModelSpec`:
            role, kind, augment_dim, augmentation, weight_decay, kinetic_energy, jacobian_norm
            (missing ones take neutral defaults).
        weight_decay, kinetic_energy, jacobian_norm: the experiment's training values, used where
            the model does not override them (None).

    Returns:
        A `CurveStyle`.
    """
    kind = str(_attr(model, "kind", "odenet") or "odenet")
    role = _attr(model, "role")
    p = int(_attr(model, "augment_dim", 0) or 0)
    if role == "reference" or kind in _REFERENCE_KINDS:
        color, marker = METHOD_COLORS["ResNet"], None
    elif p == 0:
        color, marker = METHOD_COLORS["NODE"], None
    else:
        cmap, marker = AUGMENTATION_STYLES.get(str(_attr(model, "augmentation", "zeros") or "zeros"), ("Greys", "o"))
        color = to_hex(colormaps[cmap](augment_shade(p)))
    on = frozenset(name for name, default in (("weight_decay", weight_decay), ("kinetic_energy", kinetic_energy),
                                              ("jacobian_norm", jacobian_norm))
                   if _setting(model, name, default) > 0)
    return CurveStyle(color=color, linestyle=MODIFIER_LINESTYLES[on], marker=marker)


def model_styles(models: Sequence[Any], *, weight_decay: float = 0.0, kinetic_energy: float = 0.0,
                 jacobian_norm: float = 0.0) -> dict[str, CurveStyle]:
    """Styles of every model of an experiment, keyed by model name: `model_style` of each, then,
    should two models still share colour, line style and marker (they differ only in settings
    the rules do not show, e.g. width or learning rate), the later ones get spare markers
    ("v", "^", ...) in model order. A model's style thus depends on its settings only, and is the
    same in every figure (and every experiment) of a report.

    Arguments:
        models: `ModelSpec`-like objects (with a `name`), in the experiment's order.
        weight_decay, kinetic_energy, jacobian_norm: the experiment's training values.

    Returns:
        name -> `CurveStyle`, no two equal.
    """
    out: dict[str, CurveStyle] = {}
    used: set[tuple[str, str, str | None]] = set()
    for m in models:
        style = model_style(m, weight_decay=weight_decay, kinetic_energy=kinetic_energy, jacobian_norm=jacobian_norm)
        spare = iter(_SPARE_MARKERS)
        while style.key() in used:
            marker = next(spare, None)
            if marker is None:  # more clashes than spare markers: shift the colour along the cycle
                marker = style.marker
                cycle = _default_cycle()
                style = CurveStyle(cycle[len(out) % len(cycle)], style.linestyle, marker)
                spare = iter(_SPARE_MARKERS)
                if style.key() not in used:
                    break
                continue
            style = CurveStyle(style.color, style.linestyle, marker)
        used.add(style.key())
        out[str(_attr(m, "name"))] = style
    return out


def resolve_styles(labels: Sequence[str], styles: Mapping[str, Any] | None) -> dict[str, CurveStyle]:
    """A `CurveStyle` per label: from `styles` (CurveStyle, a dict of its fields, or a colour string)
    where given, else the family colour of `method_colors`, solid; labels sharing a colour and line
    style then get spare markers, so no two labels look alike."""
    fallback = method_colors(list(labels))
    out: dict[str, CurveStyle] = {}
    used: set[tuple[str, str, str | None]] = set()
    for label in labels:
        given = None if styles is None else styles.get(label)
        if isinstance(given, CurveStyle):
            style = given
        elif isinstance(given, Mapping):
            style = CurveStyle(**given)
        elif isinstance(given, str):
            style = CurveStyle(given)
        else:
            style = CurveStyle(fallback[label])
        spare = iter(_SPARE_MARKERS)
        while style.key() in used and (marker := next(spare, None)) is not None:
            style = CurveStyle(style.color, style.linestyle, marker)
        used.add(style.key())
        out[label] = style
    return out


def point_labels(labels: Any, n: int, name: str = "labels") -> np.ndarray | None:
    """Validate per-point labels: None, or array-like of shape [n] or [n, 1]; returns a flat array."""
    if labels is None:
        return None
    arr = to_numpy(labels, name, dtype=None)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape [{n}] (one label per point), got shape {tuple(arr.shape)}")
    return arr


def _fmt_label(v: Any) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return f"y = {int(v)}"
    if isinstance(v, (int, float, np.number)):
        return f"y = {v:g}"
    return str(v)


def label_colors(labels: np.ndarray | None, n: int) -> tuple[list[str], list[tuple[str, str]]]:
    """Per-point colours for categorical labels.

    Two classes get `LABEL_COLORS` (smaller label blue, larger red), up to ten classes the "tab10"
    colours, more than ten numeric values a continuous "viridis" scale (then without legend entries).

    Arguments:
        labels: flat array of n labels, or None (all points one neutral colour).
        n: number of points.

    Returns:
        (colours, legend) where colours has n hex strings and legend is a list of (text, colour).
    """
    if labels is None:
        return [_NEUTRAL] * n, []
    uniq = np.unique(labels)
    if len(uniq) <= 2:
        palette = list(LABEL_COLORS[: len(uniq)]) if len(uniq) == 2 else [LABEL_COLORS[0]]
    elif len(uniq) <= 10:
        palette = [to_hex(c) for c in colormaps["tab10"].colors[: len(uniq)]]
    else:
        if not np.issubdtype(labels.dtype, np.number):
            tab = colormaps["tab20"].colors
            palette = [to_hex(tab[i % len(tab)]) for i in range(len(uniq))]
        else:
            vals = labels.astype(float)
            lo, hi = float(vals.min()), float(vals.max())
            scaled = (vals - lo) / (hi - lo) if hi > lo else np.zeros_like(vals)
            cmap = colormaps["viridis"]
            return [to_hex(cmap(s)) for s in scaled], []
    lookup = {u.item() if hasattr(u, "item") else u: c for u, c in zip(uniq, palette)}
    colors = [lookup[v.item() if hasattr(v, "item") else v] for v in labels]
    legend = [(_fmt_label(u), c) for u, c in zip(uniq, palette)]
    return colors, legend


def add_label_legend(ax: Axes, legend: list[tuple[str, str]], *, loc: str = "best") -> None:
    """Add a legend with one proxy line per (text, colour) entry (proxies are not added to the axes)."""
    if legend:
        handles = [Line2D([], [], color=c, lw=2, label=t) for t, c in legend]
        ax.legend(handles=handles, loc=loc, fontsize="small")


def root_figure(ax: Axes) -> Figure:
    """The top-level `Figure` that holds `ax` (also when `ax` lives in a SubFigure)."""
    try:
        fig = ax.get_figure(root=True)  # matplotlib >= 3.10
    except TypeError:
        fig = ax.figure
        while not isinstance(fig, Figure) and getattr(fig, "figure", None) is not None:
            fig = fig.figure
    if not isinstance(fig, Figure):
        raise ValueError("ax is not attached to a matplotlib Figure")
    return fig


def get_axes(ax: Axes | None, *, figsize: tuple[float, float] = (6.0, 4.0), projection: str | None = None) -> tuple[Figure, Axes]:
    """Return (figure, axes): a fresh pyplot-free figure with one axes, or `ax` and its root figure.

    Raises:
        TypeError: if `ax` is neither None nor a matplotlib Axes.
        ValueError: if `projection` is "3d" and `ax` is not a 3-D axes.
    """
    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        return fig, fig.add_subplot(projection=projection)
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    if projection == "3d" and getattr(ax, "name", "") != "3d":
        raise ValueError("ax must be a 3-D axes (created with projection='3d')")
    return root_figure(ax), ax
