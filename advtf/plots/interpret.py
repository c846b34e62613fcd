"""Figures of ``advtf cam`` and ``advtf psr`` (Xu et al. 2019, Figures 2, 3, 4, 6, A1, A2, A6); no computation here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from advtf.plots.figure import class_label, new_figure, no_ticks, save, show_image

# PSR categories as the paper draws them: suppression white, balanced grey, promotion black.
_PSR_COLOURS = {0: (1.0, 1.0, 1.0), 1: (0.5, 0.5, 0.5), 2: (0.0, 0.0, 0.0)}


def _heat(ax, values, title: str = "", vmax=1.0, cmap="jet") -> None:
    ax.imshow(values, cmap=cmap, vmin=0, vmax=vmax)
    ax.set_title(title, fontsize=7)
    no_ticks(ax)


def _image(ax, image, title: str) -> None:
    show_image(ax, image, title, fontsize=7)


def _labels(figure: dict, i: int, class_names) -> tuple[str, str]:
    """The names of example ``i``'s true class t0 and target t."""
    return class_label(class_names, figure["label"][i]), class_label(class_names, figure["target"][i])


def cam_figure(figure: dict, path: Path, *, class_names=None, title: str = "") -> None:
    """Figure A1's row layout: F(x',t0), F(x0,t0), x0, F(x0,t), F(x',t), maps on a shared scale per row."""
    n = len(figure["label"])
    fig, axes = new_figure(n, 5, figsize=(10, 2.1 * n))
    for i in range(n):
        t0, t = _labels(figure, i, class_names)
        _heat(axes[i, 0], figure["xadv_t0"][i], f"F(x', t0={t0})")
        _heat(axes[i, 1], figure["x0_t0"][i], f"F(x0, t0={t0})")
        _image(axes[i, 2], figure["natural"][i], "x0")
        _heat(axes[i, 3], figure["x0_t"][i], f"F(x0, t={t})")
        _heat(axes[i, 4], figure["xadv_t"][i], f"F(x', t={t})")
    save(fig, path, title=title, dpi=100)


def psr_examples_figure(figure: dict, path: Path, *, class_names=None, title: str = "") -> None:
    """Figure 2 per example: x', the ||delta_Gi||_2 heat map, ||delta_Gi||_2 and ||delta_Gi||_inf, d0 and dt
    per grid, sorted PSR."""
    n = len(figure["label"])
    fig, axes = new_figure(n, 5, figsize=(15, 2.4 * n), width_ratios=[1, 1, 2, 2, 2])
    for i in range(n):
        t0, t = _labels(figure, i, class_names)
        _image(axes[i, 0], figure["adversarial"][i], f"x' ({t0} -> {t})")
        _heat(axes[i, 1], figure["l2_map"][i], "||δ_G||2 per grid", vmax=max(float(figure["l2_map"][i].max()), 1e-12),
              cmap="magma")
        grids = np.arange(len(figure["l2"][i]))
        ax = axes[i, 2]
        ax.plot(grids, figure["l2"][i], label="||δ_G||2")
        ax.plot(grids, figure["linf"][i], label="||δ_G||∞")
        ax.set_xlabel("grid", fontsize=7)
        ax.legend(fontsize=6)
        ax = axes[i, 3]
        ax.plot(grids, figure["d0"][i], label="d0 (suppress t0)")
        ax.plot(grids, figure["dt"][i], label="dt (promote t)")
        ax.set_xlabel("grid", fontsize=7)
        ax.legend(fontsize=6)
        ax = axes[i, 4]
        ax.plot(np.sort(figure["r"][i]), ".", markersize=3)
        for level in (-1, 1):
            ax.axhline(level, linestyle="--", color="k", linewidth=0.8)
        ax.set_xlabel("grids sorted by PSR r", fontsize=7)
        ax.set_ylabel("r = log2(dt/d0)", fontsize=7)
        for ax in axes[i, 2:]:
            ax.tick_params(labelsize=6)
            ax.grid(alpha=0.3)
    save(fig, path, title=title, dpi=100)


def _categories_rgba(category_map: np.ndarray) -> np.ndarray:
    rgba = np.zeros((*category_map.shape, 4), np.float32)
    for value, colour in _PSR_COLOURS.items():
        rgba[category_map == value] = (*colour, 0.75)
    return rgba


def psr_cam_figure(figure: dict, path: Path, *, class_names=None, title: str = "") -> None:
    """Figure 4/A2: F(x0,t0), x0, F(x',t) and the PSR categories of the significant grids over F(x',t)."""
    n = len(figure["label"])
    fig, axes = new_figure(n, 4, figsize=(8.5, 2.2 * n))
    for i in range(n):
        t0, t = _labels(figure, i, class_names)
        _heat(axes[i, 0], figure["cam_x0_t0"][i], f"F(x0, t0={t0})")
        _image(axes[i, 1], figure["natural"][i], "x0")
        _heat(axes[i, 2], figure["cam_xadv_t"][i], f"F(x', t={t})")
        _heat(axes[i, 3], figure["cam_xadv_t"][i], "PSR over F(x', t)")
        axes[i, 3].imshow(_categories_rgba(figure["category_map"][i]))
    save(fig, path, title=title + "\nwhite: suppression (r<-1), grey: balanced, black: promotion (r>1)" if title
         else "", fontsize=8, dpi=100)


def refine_figure(figure: dict, mask: np.ndarray, refined: np.ndarray, path: Path, *, title: str = "") -> None:
    """Figures 6/A6: x0, per-pixel l2 of the original perturbation, the allowed pixels S, the refined one's."""
    n = min(len(mask), len(figure["natural"]))
    fig, axes = new_figure(n, 4, figsize=(8.5, 2.2 * n))
    for i in range(n):
        original = np.sqrt(np.sum(np.square(figure["delta"][i]), -1))
        after = np.sqrt(np.sum(np.square(refined[i] - figure["natural"][i]), -1))
        top = max(float(original.max()), float(after.max()), 1e-12)
        _image(axes[i, 0], figure["natural"][i], "x0")
        _heat(axes[i, 1], original, f"|δ| per pixel (max {original.max():.3g})", vmax=top, cmap="magma")
        _heat(axes[i, 2], mask[i], "allowed pixels S", cmap="gray")
        _heat(axes[i, 3], after, f"refined |δ_S| (max {after.max():.3g})", vmax=top, cmap="magma")
    save(fig, path, title=title, dpi=100)
