"""Figures of adversarial examples (no computation here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def examples_figure(rows: dict[str, np.ndarray], path: Path, *, count: int = 8, norm: str = "linf",
                    eps: float | None = None, class_names=None, title: str = "") -> None:
    """A grid with one row per example: natural image, adversarial image, perturbation.

    The perturbation (channel mean) uses a diverging colour map centred at 0, spanning
    ``±eps`` for linf and ``±max|delta|`` of the shown examples otherwise.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(count, len(rows["label"]))
    if n == 0:
        return
    names = list(class_names) if class_names else None

    def name(k):
        k = int(k)
        return names[k] if names and 0 <= k < len(names) else str(k)

    delta = rows["image"][:n] - rows["natural"][:n]
    limit = float(eps) if norm == "linf" and eps else float(np.abs(delta).max() or 1.0)
    fig, axes = plt.subplots(n, 3, figsize=(6, 2 * n), squeeze=False)
    for i in range(n):
        nat, adv = rows["natural"][i], rows["image"][i]
        cmap = "gray" if nat.shape[-1] == 1 else None
        axes[i, 0].imshow(np.squeeze(nat), cmap=cmap, vmin=0, vmax=1)
        axes[i, 0].set_title(f"natural: {name(rows['clean_prediction'][i])}", fontsize=8)
        axes[i, 1].imshow(np.squeeze(adv), cmap=cmap, vmin=0, vmax=1)
        mark = "ok" if rows["success"][i] else "failed"
        axes[i, 1].set_title(f"adversarial: {name(rows['adversarial_prediction'][i])} ({mark})", fontsize=8)
        im = axes[i, 2].imshow(delta[i].mean(axis=-1), cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[i, 2].set_title(f"delta ({norm} {float(rows[norm][i]):.3g})", fontsize=8)
        fig.colorbar(im, ax=axes[i, 2], fraction=0.046, pad=0.04)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98) if title else None)
    fig.savefig(path, dpi=100)
    plt.close(fig)
