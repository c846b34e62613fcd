"""Figure 8 of Siddiqui & Breuel 2021: 2-D embeddings of natural / adversarial feature vectors; no computation here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from advtf.plots.figure import new_figure, no_ticks, save

NATURAL, ADVERSARIAL = "tab:green", "tab:red"


def _contours(ax, density, extent, colour) -> None:
    if density is None or not np.isfinite(density).all() or density.max() <= 0:
        return
    top = density.max()
    xs = np.linspace(extent[0], extent[1], density.shape[1])
    ys = np.linspace(extent[2], extent[3], density.shape[0])
    # Nested filled regions (20 %, 50 %, 80 % of the peak density) darken towards the modes.
    for level in (0.2, 0.5, 0.8):
        ax.contourf(xs, ys, density, levels=[level * top, top * 1.01], colors=[colour], alpha=0.13)
    ax.contour(xs, ys, density, levels=[0.2 * top], colors=[colour], linewidths=0.8)


def features_figure(panels: list[dict], rows: list[dict], modules: list[str], path: Path, *, title: str = "") -> None:
    """Rows = models, columns = modules; each panel a scatter of the joint embedding with density contours
    (natural green, adversarial red) and the panel's MMD², p-value and C2ST accuracy in its title.

    ``panels[i]["model"]`` and ``rows[j]["model"]`` are labels, drawn as given (pass short names, not paths);
    a row's statistics go to the panel with the same model label and module.
    """
    models = list(dict.fromkeys(p["model"] for p in panels))
    stats = {(r["model"], r["module"]): r for r in rows}
    fig, axes = new_figure(len(models), len(modules), figsize=(3.2 * len(modules), 3.2 * len(models) + 0.4))
    for panel in panels:
        ax = axes[models.index(panel["model"])][modules.index(panel["module"])]
        xy, adv = np.asarray(panel["embedding"]), np.asarray(panel["adversarial"], bool)
        ax.scatter(xy[~adv, 0], xy[~adv, 1], s=3, c=NATURAL, alpha=0.4, linewidths=0, label="natural")
        ax.scatter(xy[adv, 0], xy[adv, 1], s=3, c=ADVERSARIAL, alpha=0.4, linewidths=0, label="adversarial")
        _contours(ax, panel.get("density_natural"), panel["extent"], NATURAL)
        _contours(ax, panel.get("density_adversarial"), panel["extent"], ADVERSARIAL)
        ax.set_xlim(panel["extent"][0], panel["extent"][1])
        ax.set_ylim(panel["extent"][2], panel["extent"][3])
        no_ticks(ax)
        r = stats.get((panel["model"], panel["module"]), {})
        c2st = r.get("c2st_accuracy")
        ax.set_title(f"{panel['module']} (C={r.get('channels', '?')})\nMMD²={r.get('mmd2', float('nan')):.3g} "
                     f"p={r.get('p_value', float('nan')):.3g}  C2ST={'n/a' if c2st is None else f'{c2st:.2f}'}",
                     fontsize=8)
        if modules.index(panel["module"]) == 0:
            ax.set_ylabel(str(panel["model"]), fontsize=10)
    axes[0][0].legend(loc="best", fontsize=7, markerscale=4)
    save(fig, path, title=title)
