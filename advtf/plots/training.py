"""Figures of a training run (no computation here)."""

from __future__ import annotations

from pathlib import Path

from advtf.plots.figure import new_figure, save


def training_curves(history: list[dict], path: Path, *, title: str = "") -> None:
    """Loss and accuracies per epoch, saved as PNG."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = new_figure(1, 2, figsize=(9, 3.4), squeeze=True)
    ax_loss.plot(epochs, [r["train_loss"] for r in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="train loss")
    for key, label in [("train_accuracy", "train"), ("val_clean_accuracy", "validation clean"),
                       ("val_robust_accuracy", "validation robust")]:
        values = [r.get(key) for r in history]
        if any(v is not None for v in values):
            ax_acc.plot(epochs, [v if v is not None else float("nan") for v in values], marker="o", label=label)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1))
    if ax_acc.get_legend_handles_labels()[0]:
        ax_acc.legend(loc="lower right")
    save(fig, path, title=title, fontsize=12, dpi=110)
