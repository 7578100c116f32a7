"""Writing figures to files or to PNG bytes (for base64 embedding in HTML reports)."""

from __future__ import annotations

import io
import os
from pathlib import Path

from matplotlib.figure import Figure

__all__ = ["figure_to_png_bytes", "save_figure"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: zlib level of saved PNG files (0-9): speed over size, as figures are drawn while runs train.
PNG_COMPRESS_LEVEL = 1


def _check_figure(fig: Figure) -> None:
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 120, tight: bool | None = None) -> Path:
    """Save `fig` to `path`, creating missing parent directories.

    The format follows the suffix (".png", ".pdf", ".svg", ...); a path without a suffix gets ".png".

    Arguments:
        fig: the figure.
        path: destination file.
        dpi: resolution for raster formats.
        tight: crop to the drawn content (bbox_inches="tight", which draws the figure twice); None:
            only when the figure has no layout engine (anode's figures use constrained layout,
            which already fits the content to the figure, so they are drawn once).

    Returns:
        The Path written.

    Raises:
        TypeError: if `fig` is not a Figure.
        ValueError: if `dpi` is not positive.
    """
    _check_figure(fig)
    if dpi <= 0:
        raise ValueError(f"dpi must be positive, got {dpi!r}")
    out = Path(path)
    if out.suffix == "":
        out = out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    if tight is None:
        tight = fig.get_layout_engine() is None
    # PNGs at zlib level 1: about 7% larger than the default level 6, and a fifth less time to save
    extra = {"pil_kwargs": {"compress_level": PNG_COMPRESS_LEVEL}} if out.suffix.lower() == ".png" else {}
    fig.savefig(out, dpi=dpi, bbox_inches="tight" if tight else None, **extra)
    return out


def figure_to_png_bytes(fig: Figure, *, dpi: int = 100, tight: bool = True) -> bytes:
    """Render `fig` as PNG and return the bytes (e.g. for `base64.b64encode` into an HTML <img>).

    Arguments:
        fig: the figure.
        dpi: resolution.
        tight: crop to the drawn content (bbox_inches="tight").

    Returns:
        The PNG file content, starting with the PNG signature.

    Raises:
        TypeError: if `fig` is not a Figure.
        ValueError: if `dpi` is not positive.
    """
    _check_figure(fig)
    if dpi <= 0:
        raise ValueError(f"dpi must be positive, got {dpi!r}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    return buf.getvalue()
