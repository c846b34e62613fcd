"""Figures of adversarial examples (no computation here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from advtf.plots.figure import class_label, new_figure, no_ticks, save, show_image


def examples_figure(rows: dict[str, np.ndarray], path: Path, *, count: int = 8, norm: str = "linf",
                    eps: float | None = None, class_names=None, title: str = "") -> None:
    """A grid with one row per example: natural image, adversarial image, perturbation.

    The perturbation (channel mean) uses a diverging colour map centred at 0, spanning
    ``±eps`` for linf and ``±max|delta|`` of the shown examples otherwise. Nothing is written
    when there is no example.
    """
    n = min(count, len(rows["label"]))
    if n == 0:
        return
    names = list(class_names) if class_names else None
    delta = rows["image"][:n] - rows["natural"][:n]
    limit = float(eps) if norm == "linf" and eps else float(np.abs(delta).max() or 1.0)
    fig, axes = new_figure(n, 3, figsize=(6, 2 * n))
    for i in range(n):
        show_image(axes[i, 0], rows["natural"][i], f"natural: {class_label(names, rows['clean_prediction'][i])}")
        mark = "ok" if rows["success"][i] else "failed"
        show_image(axes[i, 1], rows["image"][i],
                   f"adversarial: {class_label(names, rows['adversarial_prediction'][i])} ({mark})")
        im = axes[i, 2].imshow(delta[i].mean(axis=-1), cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[i, 2].set_title(f"delta ({norm} {float(rows[norm][i]):.3g})", fontsize=8)
        fig.colorbar(im, ax=axes[i, 2], fraction=0.046, pad=0.04)
        no_ticks(axes[i, 2])
    save(fig, path, title=title, fontsize=10, dpi=100, rect=(0, 0, 1, 0.98) if title else None)
