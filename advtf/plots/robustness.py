"""Robust-accuracy figures (no computation here)."""

from __future__ import annotations

from pathlib import Path

from advtf.plots.figure import new_figure, save


def accuracy_vs_eps(curves: dict[str, list[tuple[float, float]]], path: Path, *, title: str = "",
                    xlabel: str = "eps", chance: float | None = None) -> None:
    """One line per model: accuracy under attack against the attack radius."""
    fig, ax = new_figure(figsize=(5, 3.6), squeeze=True)
    for label, points in curves.items():
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", label=label)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", label="chance")
    ax.set(xlabel=xlabel, ylabel="accuracy", ylim=(0, 1), title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, path, dpi=110)
