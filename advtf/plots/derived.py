"""Figures of derived datasets: robustified and relabeled images (no computation here)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from advtf.plots.figure import class_label, new_figure, save, show_image


def image_rows_figure(columns: Sequence[tuple[str, np.ndarray]], path: Path, *, titles=None,
                      title: str = "") -> None:
    """One row per example, one column per ``(heading, images)`` pair (Springer et al. 2021, Figure 2's layout).

    ``titles[i][j]``, when given, replaces the heading above image (i, j). Nothing is written without images.
    """
    n = min(len(images) for _, images in columns)
    if n == 0:
        return
    fig, axes = new_figure(n, len(columns), figsize=(2 * len(columns), 2 * n))
    for i in range(n):
        for j, (heading, images) in enumerate(columns):
            show_image(axes[i, j], images[i], titles[i][j] if titles else heading)
    save(fig, path, title=title, fontsize=10, dpi=100, rect=(0, 0, 1, 0.97) if title else None)


def robustified_figure(seeds, robustified, originals, labels, path: Path, *, class_names=None,
                       title: str = "") -> None:
    """Seed x0, robustified x_r and original x per row (Springer et al. 2021, Figure 2)."""
    titles = [["seed x0", f"robustified ({class_label(class_names, y)})", f"original ({class_label(class_names, y)})"]
              for y in labels]
    image_rows_figure([("seed x0", seeds), ("robustified", robustified), ("original", originals)], path,
                      titles=titles, title=title)


def relabeled_figure(originals, relabeled, labels, new_labels, path: Path, *, class_names=None,
                     title: str = "") -> None:
    """Original image with its label, and the adversarial image with its new label, per row."""
    titles = [[f"original: {class_label(class_names, y)}", f"relabeled: {class_label(class_names, t)}"]
              for y, t in zip(labels, new_labels)]
    image_rows_figure([("original", originals), ("relabeled", relabeled)], path, titles=titles, title=title)
