"""Figures of Springer et al. 2021: the accuracy matrix (Tables 1/2) and transfer curves (Figures 5/6).

No computation here.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.colors import Normalize, TwoSlopeNorm

from advtf.plots.figure import new_figure, save

METRIC_LABELS = {"error_rate": "victim error rate (true labels)", "target_rate": "victim predicts the target"}


def accuracy_heatmap(accuracy: dict[str, dict[str, float]], path: Path, *, chance: float, title: str = "") -> None:
    """Classifiers (rows) × test sets (columns), coloured by a diverging map centred at chance.

    Red cells are below chance, blue above; every cell carries its value.
    """
    rows = list(accuracy)
    cols = list(next(iter(accuracy.values())))
    values = [[accuracy[r][c] for c in cols] for r in rows]
    fig, ax = new_figure(figsize=(max(5.0, 3.0 + 0.85 * len(cols)), 1.7 + 0.5 * len(rows)), squeeze=True)
    norm = TwoSlopeNorm(vmin=0.0, vcenter=chance, vmax=1.0) if 0 < chance < 1 else Normalize(0.0, 1.0)
    image = ax.imshow(values, cmap="RdBu", norm=norm, aspect="auto")
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            dark = abs(norm(value) - 0.5) > 0.35
            ax.text(j, i, f"{100 * value:.1f}", ha="center", va="center", fontsize=9,
                    color="white" if dark else "black")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    bar = fig.colorbar(image, ax=ax)
    ticks = sorted({0.0, chance, 0.5, 1.0})
    bar.set_ticks(ticks, labels=[f"chance {t:.3g}" if t == chance else f"{t:g}" for t in ticks])
    bar.ax.axhline(chance, color="black", linewidth=1)
    bar.set_label("accuracy (white = chance)")
    ax.set_title(f"{title or 'accuracy'} (%; chance = {100 * chance:.1f}%)", fontsize=10)
    save(fig, path, dpi=110, bbox_inches="tight")


def transfer_curves(table: dict[str, dict[str, float]], path: Path, *, metric: str,
                    white_box: dict[str, float] | None = None, clean: dict[str, float] | None = None,
                    title: str = "") -> None:
    """One line per victim: the transfer metric against the source's ε.

    The x axis is categorical (sources equally spaced in the given order, labelled by their ε
    text), so ε = 0 sits beside 1/256 and 1 as in the paper's figures. Dashed black: each
    source's white-box value; dotted, in the victim's colour: the victim on natural images.
    """
    sources = list(table)
    victims = list(next(iter(table.values()))) if table else []
    xs = list(range(len(sources)))
    fig, ax = new_figure(figsize=(max(5.0, 0.7 * len(sources) + 2.5), 3.8), squeeze=True)
    for victim in victims:
        (line,) = ax.plot(xs, [table[s][victim] for s in sources], marker="o", label=victim)
        if clean is not None:
            ax.axhline(clean[victim], color=line.get_color(), linestyle=":", linewidth=1)
    if clean is not None and victims:
        ax.plot([], [], color="grey", linestyle=":", linewidth=1, label="victim on natural images")
    if white_box is not None:
        ax.plot(xs, [white_box[s] for s in sources], color="black", linestyle="--", marker="x",
                label="source (white-box)")
    ax.set_xticks(xs, sources)
    ax.set(xlabel="source robustness ε (categorical axis)", ylabel=METRIC_LABELS.get(metric, metric),
           ylim=(0, 1), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    save(fig, path, dpi=110, bbox_inches="tight")
