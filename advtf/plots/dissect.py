"""Figures of ``advtf dissect`` (Xu et al. 2019, Figures 7 and 8); no computation here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from advtf.plots.figure import new_figure, no_ticks, save


def detectors_figure(rows: list[dict], categories: list[str], path: Path, *, title: str = "") -> None:
    """Figure 7b: concept detectors per layer and category (stacked bars), all units and the top sensitive."""
    scopes = list(dict.fromkeys(r["units"].split(" ")[0] for r in rows))
    fig, axes = new_figure(1, len(scopes), figsize=(5.5 * len(scopes), 3.8))
    for ax, scope in zip(axes[0], scopes):
        chosen = [r for r in rows if r["units"].split(" ")[0] == scope]
        x = np.arange(len(chosen))
        bottom = np.zeros(len(chosen))
        for category in categories:
            values = np.asarray([r[category] for r in chosen], float)
            ax.bar(x, values, 0.6, bottom=bottom, label=category)
            bottom += values
        ax.set_xticks(x, [f"{r['layer']}\n({r['n_units']} units)" for r in chosen], fontsize=8)
        ax.set_ylabel("concept detectors")
        ax.set_title("all units" if scope == "all" else "the most sensitive units (Fig. 7b)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    save(fig, path, title=title, fontsize=10)


def pvalues_figure(rows: list[dict], layers: list[str], path: Path, *, title: str = "") -> None:
    """Figure 7a: p-value against N, one line per layer (skipped N left out), 0.05 marked."""
    fig, ax = new_figure(figsize=(6, 3.8), squeeze=True)
    for layer in layers:
        points = [(r["n"], r["p_value"]) for r in rows if r["layer"] == layer and r["p_value"] is not None]
        if points:
            ax.plot(*zip(*points), marker="o", label=layer)
    ax.axhline(0.05, color="grey", ls=":", lw=1, label="p = 0.05")
    ax.set_yscale("log")
    ax.set_xlabel("N (top sensitive units)")
    ax.set_ylabel("p-value")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    save(fig, path)


def _overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """NetDissect style: the image where the unit fires, dimmed elsewhere, the mask edge in red."""
    rgb = np.repeat(image, 3, -1) if image.shape[-1] == 1 else image
    out = np.where(mask[..., None] > 0, rgb, 0.25 * rgb)
    edge = mask.astype(bool) & ~(np.roll(mask, 1, 0).astype(bool) & np.roll(mask, -1, 0).astype(bool)
                                 & np.roll(mask, 1, 1).astype(bool) & np.roll(mask, -1, 1).astype(bool))
    out[edge] = (1.0, 0.1, 0.1)
    return out


def segmentation_figure(natural: np.ndarray, adversarial: np.ndarray, natural_masks: np.ndarray,
                        adversarial_masks: np.ndarray, titles: list[str], path: Path, *, title: str = "") -> None:
    """Figure 8: per unit (column) and image, the image segmented by ``M_k`` for natural and adversarial input.

    ``natural`` / ``adversarial``: ``[n, H, W, C]``; masks ``[n, H, W, units]``; ``titles`` one per unit.
    """
    n, units = natural.shape[0], natural_masks.shape[-1]
    fig, axes = new_figure(2 * n, units + 1, figsize=(2.3 * (units + 1), 2.3 * 2 * n + 0.6))
    for i in range(n):
        for row, (image, masks, name) in enumerate(((natural, natural_masks, "natural"),
                                                     (adversarial, adversarial_masks, "adversarial"))):
            ax = axes[2 * i + row]
            ax[0].imshow(np.squeeze(image[i]), cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=1)
            ax[0].set_title(f"image {i}: {name}", fontsize=7)
            for k in range(units):
                ax[k + 1].imshow(_overlay(image[i], masks[i, ..., k]))
                if i == 0 and row == 0:
                    ax[k + 1].set_title(titles[k], fontsize=6)
    no_ticks(*axes.ravel())
    save(fig, path, title=title)
