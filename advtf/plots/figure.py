"""The one figure helper of ``advtf.plots``: figures on their own Agg canvas, written atomically.

Figures are built with matplotlib's object API (``Figure`` + ``FigureCanvasAgg``), never through
``pyplot`` or ``matplotlib.use``, so drawing a figure leaves the caller's backend (a notebook's inline
backend, say) untouched and keeps no figure alive in a global registry.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(rows: int = 1, cols: int = 1, *, figsize: tuple[float, float], squeeze: bool = False,
               **subplots) -> tuple[Figure, np.ndarray]:
    """A figure with a ``rows`` x ``cols`` grid of axes on an Agg canvas.

    ``axes`` is a 2-D array unless ``squeeze``; ``subplots`` go to :meth:`Figure.subplots`
    (``gridspec_kw``, ``sharex``, ...).
    """
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=squeeze, **subplots)


def save(fig: Figure, path, *, title: str = "", fontsize: float = 9, dpi: int = 90, tight: bool = True,
         rect=None, bbox_inches=None) -> None:
    """Adds ``title`` above the figure, lays it out and writes ``path`` atomically.

    The image goes to a temporary file beside ``path`` and replaces it in one ``os.replace``, so an
    interrupted run never leaves a truncated PNG. The format follows the suffix (PNG without one).
    """
    path = Path(path)
    if title:
        fig.suptitle(title, fontsize=fontsize)
    if tight:
        fig.tight_layout(rect=rect)
    fmt = path.suffix.lstrip(".").lower() or "png"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            fig.savefig(f, format=fmt, dpi=dpi, bbox_inches=bbox_inches)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def class_label(class_names, k) -> str:
    """The name of class ``k`` when ``class_names`` has it, else the index as text."""
    k = int(k)
    return class_names[k] if class_names and 0 <= k < len(class_names) else str(k)


def no_ticks(*axes) -> None:
    """Hides the ticks of image panels."""
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])


def show_image(ax, image: np.ndarray, title: str = "", *, fontsize: float = 8) -> None:
    """An ``[H, W, C]`` image in [0, 1] (grey when ``C == 1``), clipped, titled, without ticks."""
    cmap = "gray" if image.shape[-1] == 1 else None
    ax.imshow(np.squeeze(np.clip(image, 0, 1)), cmap=cmap, vmin=0, vmax=1)
    ax.set_title(title, fontsize=fontsize)
    no_ticks(ax)
