"""Figures of derived datasets: robustified and relabeled images (no computation here)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _show(ax, image, title: str) -> None:
    cmap = "gray" if image.shape[-1] == 1 else None
    ax.imshow(np.squeeze(np.clip(image, 0, 1)), cmap=cmap, vmin=0, vmax=1)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def _name(class_names, k) -> str:
    k = int(k)
    return class_names[k] if class_names and 0 <= k < len(class_names) else str(k)


def image_rows_figure(columns: Sequence[tuple[str, np.ndarray]], path: Path, *, titles=None,
                      title: str = "") -> None:
    """One row per example, one column per ``(heading, images)`` pair (paper Figure 2's layout).

    ``titles[i][j]``, when given, replaces the heading above image (i, j).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(images) for _, images in columns)
    if n == 0:
        return
    fig, axes = plt.subplots(n, len(columns), figsize=(2 * len(columns), 2 * n), squeeze=False)
    for i in range(n):
        for j, (heading, images) in enumerate(columns):
            _show(axes[i, j], images[i], titles[i][j] if titles else heading)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97) if title else None)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def robustified_figure(seeds, robustified, originals, labels, path: Path, *, class_names=None,
                       title: str = "") -> None:
    """Seed x0, robustified x_r and original x per row (Springer et al. Figure 2)."""
    titles = [[f"seed x0", f"robustified ({_name(class_names, y)})", f"original ({_name(class_names, y)})"]
              for y in labels]
    image_rows_figure([("seed x0", seeds), ("robustified", robustified), ("original", originals)], path,
                      titles=titles, title=title)


def relabeled_figure(originals, relabeled, labels, new_labels, path: Path, *, class_names=None,
                     title: str = "") -> None:
    """Original image with its label, and the adversarial image with its new label, per row."""
    titles = [[f"original: {_name(class_names, y)}", f"relabeled: {_name(class_names, t)}"]
              for y, t in zip(labels, new_labels)]
    image_rows_figure([("original", originals), ("relabeled", relabeled)], path, titles=titles, title=title)
