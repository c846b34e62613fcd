"""Figures of ``advtf retrain`` (Siddiqui & Breuel 2021, Figs. 2-7); no computation here."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from advtf.plots.figure import new_figure, save

_METRICS = (("clean_accuracy", "clean accuracy"), ("robust_accuracy", "robust accuracy"))
_PART_COLOURS = {"before": "tab:blue", "after": "tab:orange"}


def _finish(fig, path: Path, title: str) -> None:
    save(fig, path, title=textwrap.fill(title, 80))


def cutoff_figure(rows: list[dict], pretrained: dict, labels: list[str], path: Path, *, title: str = "",
                  xlabel: str = "cut-off module") -> None:
    """Clean and robust accuracy vs cut-off, retrained before / after it; dashed: only pretrained (Figs. 2-5)."""
    fig, axes = new_figure(1, 2, figsize=(max(9, 0.45 * len(labels) * 2), 3.6), squeeze=True)
    for ax, (metric, label) in zip(axes, _METRICS):
        for part in ("before", "after"):
            points = sorted((r["cutoff"], r[metric]) for r in rows if r.get("part") == part)
            if points:
                x, y = zip(*points)
                ax.plot(x, y, marker="o", color=_PART_COLOURS[part], label=f"retrained {part} cut-off")
        ax.axhline(pretrained[metric], color="k", ls="--", lw=1, label="only pretrained")
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=90 if len(labels) > 8 else 0, fontsize=7 if len(labels) > 8 else 9)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _finish(fig, path, title)


def combinations_figure(medians: list[dict], path: Path, *, title: str = "") -> None:
    """Median accuracy over the module subsets with vs without each module (Fig. 6)."""
    names = [m["module"] for m in medians]
    x = np.arange(len(names))
    fig, axes = new_figure(1, 2, figsize=(9, 3.6), squeeze=True)
    for ax, (metric, label) in zip(axes, _METRICS):
        with_ = [m[f"{metric}_with"] for m in medians]
        without = [m[f"{metric}_without"] for m in medians]
        ax.bar(x - 0.2, with_, 0.4, label="retrained (with)", color="tab:blue")
        ax.bar(x + 0.2, without, 0.4, label="pretrained, frozen (without)", color="tab:gray")
        ax.set_xticks(x)
        ax.set_xticklabels(names)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("module")
        ax.set_ylabel(f"median {label}")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
    _finish(fig, path, title)


def reinit_figure(rows: list[dict], pretrained: dict, path: Path, *, title: str = "") -> None:
    """Clean and robust accuracy with one unit reinitialised (no retraining); dashed: the model itself (Fig. 7)."""
    names = [r["retrained"] for r in rows]
    x = np.arange(len(names))
    fig, ax = new_figure(figsize=(max(6, 0.5 * len(names) + 2), 3.6), squeeze=True)
    colours = {"clean_accuracy": "tab:green", "robust_accuracy": "tab:red"}
    for offset, (metric, label) in zip((-0.2, 0.2), _METRICS):
        ax.bar(x + offset, [r[metric] for r in rows], 0.4, color=colours[metric], label=label)
        ax.axhline(pretrained[metric], color=colours[metric], ls="--", lw=1, label=f"{label}, none reinitialised")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=90 if len(names) > 8 else 0, fontsize=7 if len(names) > 8 else 9)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("reinitialised unit")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    _finish(fig, path, title)


def cell_figure(rows: list[dict], pretrained: dict, path: Path, *, title: str = "") -> None:
    """Clean and robust accuracy of the pretrained model beside each retrained cell (a single-cell run)."""
    cell_colour = "tab:blue" if len(rows) == 1 else None  # several cells: matplotlib's colour cycle
    bars = [("only pretrained", pretrained, "tab:gray")] + [(f"retrained {r['retrained']}", r, cell_colour)
                                                             for r in rows]
    width = 0.8 / len(bars)
    fig, ax = new_figure(figsize=(max(6.5, 1.2 * len(bars) + 3), 4.0), squeeze=True)
    for i, (label, values, colour) in enumerate(bars):
        x = np.arange(len(_METRICS)) + (i - (len(bars) - 1) / 2) * width
        heights = [values[metric] for metric, _ in _METRICS]
        drawn = ax.bar(x, heights, width, label=label, color=colour)
        ax.bar_label(drawn, fmt="%.3f", fontsize=7)
    ax.set_xticks(np.arange(len(_METRICS)))
    ax.set_xticklabels([name for _, name in _METRICS])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    _finish(fig, path, title)
