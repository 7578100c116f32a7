"""Model output over a 2-D input grid (e.g. the g(x) maps of the paper's Figs. 1, 5 and 6)."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .style import ArrayLike, check_ndim, get_axes, to_numpy
from .style import point_labels as _validate_labels

__all__ = ["plot_input_space_map"]


def plot_input_space_map(
    xs: ArrayLike,
    ys: ArrayLike,
    values: ArrayLike,
    *,
    points: ArrayLike | None = None,
    point_labels: ArrayLike | None = None,
    vmin: float = -1.0,
    vmax: float = 1.0,
    cmap: str = "RdBu_r",
    title: str | None = None,
    colorbar: bool = True,
    colorbar_label: str = "model output",
    ax: Axes | None = None,
) -> Figure:
    """Colour map of a model's output over a grid of 2-D inputs, x to the right and y upward.

    Drawn with `pcolormesh(xs, ys, values, shading="nearest")`: the cell centred at (xs[j], ys[i])
    shows values[i, j], so the orientation does not depend on any image convention.

    Arguments:
        xs: grid x coordinates, shape [nx], strictly increasing.
        ys: grid y coordinates, shape [ny], strictly increasing.
        values: outputs, shape [ny, nx] (or [ny, nx, 1]); values[i, j] is the output at (xs[j], ys[i]),
            i.e. what `np.meshgrid(xs, ys)` (default "xy" indexing) gives.
        points: optional data points to overlay, shape [M, 2].
        point_labels: optional labels of the points, shape [M]; coloured with the same `cmap`,
            `vmin` and `vmax` as the map (so -1/+1 labels match the map's extremes).
        vmin, vmax: colour range of the map.
        cmap: colormap name.
        title: optional title.
        colorbar: add a colour bar.
        colorbar_label: the colour bar's label.
        ax: draw into this axes (its figure is returned) instead of a new figure.

    Returns:
        The Figure: a QuadMesh, an optional scatter collection and an optional colour-bar axes.

    Raises:
        ValueError: if xs/ys are not strictly increasing 1-D arrays, `values` is not [len(ys), len(xs)],
            or `points`/`point_labels` have wrong shapes.
    """
    x = to_numpy(xs, "xs")
    y = to_numpy(ys, "ys")
    z = to_numpy(values, "values")
    check_ndim(x, "xs", (1,), "[nx]")
    check_ndim(y, "ys", (1,), "[ny]")
    for name, arr in (("xs", x), ("ys", y)):
        if arr.shape[0] < 1 or np.any(np.diff(arr) <= 0):
            raise ValueError(f"{name} must be non-empty and strictly increasing, got shape {tuple(arr.shape)}")
    if z.ndim == 3 and z.shape[2] == 1:
        z = z[:, :, 0]
    if z.shape != (y.shape[0], x.shape[0]):
        raise ValueError(
            f"values must have shape [len(ys), len(xs)] = [{y.shape[0]}, {x.shape[0]}] "
            f"(values[i, j] is the output at (xs[j], ys[i])), got shape {tuple(z.shape)}"
        )
    pts = labs = None
    if points is not None:
        pts = to_numpy(points, "points")
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"points must have shape [M, 2], got shape {tuple(pts.shape)}")
        labs = _validate_labels(point_labels, pts.shape[0], "point_labels")
        if labs is not None and labs.dtype.kind not in "biuf":
            raise ValueError(f"point_labels must be numeric (they are coloured with cmap), got dtype {labs.dtype}")
    elif point_labels is not None:
        raise ValueError("point_labels needs points")

    fig, ax = get_axes(ax, figsize=(5.5, 4.5))
    norm = Normalize(vmin=vmin, vmax=vmax)
    mesh = ax.pcolormesh(x, y, z, shading="nearest", cmap=cmap, norm=norm)
    if pts is not None:
        if labs is None:
            ax.scatter(pts[:, 0], pts[:, 1], c="black", s=10, zorder=3)
        else:
            ax.scatter(pts[:, 0], pts[:, 1], c=labs.astype(float), cmap=cmap, norm=norm, s=20,
                       edgecolors="black", linewidths=0.6, zorder=3)
    if colorbar:
        fig.colorbar(mesh, ax=ax, label=colorbar_label)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    if title is not None:
        ax.set_title(title)
    return fig

