"""Figures of the local-properties analyses (the local-properties paper, ICLR 2022 submission); no computation here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from advtf.plots.figure import new_figure, no_ticks, save

_FREQ_PANELS = [
    ("low-pass (Fig. 1a-b)", ("low_natural", "low_adversarial"), "low-pass radius (more high frequencies →)"),
    ("high-pass (Fig. 6)", ("high_natural", "high_adversarial"), "high-pass radius (fewer low frequencies →)"),
    ("frequency swap (Fig. 1c-d)", ("natural_low_adversarial_high", "adversarial_low_natural_high"),
     "swap threshold"),
]
_FREQ_LABELS = {"low_natural": "natural", "low_adversarial": "adversarial", "high_natural": "natural",
                "high_adversarial": "adversarial", "natural_low_adversarial_high": "natural + adversarial high",
                "adversarial_low_natural_high": "adversarial + natural high"}
_FREQ_COLOURS = {"low_natural": "tab:green", "high_natural": "tab:green", "low_adversarial": "tab:red",
                 "high_adversarial": "tab:red", "natural_low_adversarial_high": "tab:green",
                 "adversarial_low_natural_high": "tab:red"}


def frequency_figure(radii, models: list[dict], path: Path, *, curves, title: str = "") -> None:
    """One row per model: accuracy vs low-pass radius, vs high-pass radius, vs swap threshold.

    ``models[i]["model"]`` is the row's label, drawn as given (pass a short name, not a path).
    """
    fig, axes = new_figure(len(models), 3, figsize=(13, 3.2 * len(models)))
    for row, model in zip(axes, models):
        for ax, (panel, names, xlabel) in zip(row, _FREQ_PANELS):
            for name in names:
                ax.plot(radii, model["curves"][name], marker=".", color=_FREQ_COLOURS[name], label=_FREQ_LABELS[name])
            ax.axhline(model["clean_accuracy"], color="tab:green", ls=":", lw=0.8)
            ax.axhline(model["adversarial_accuracy"], color="tab:red", ls=":", lw=0.8)
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("accuracy")
            ax.set_title(f"{model['model']}: {panel}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    save(fig, path, title=title, fontsize=10)


def spectrum_figure(natural: np.ndarray, adversarial: list[tuple[str, np.ndarray]], path: Path) -> None:
    """Figure 2: mean log-amplitude of natural images, and per model its adversarial examples and the difference.

    ``adversarial`` holds ``(label, spectrum)`` pairs; the label is drawn as given.
    """
    cols = 1 + 2 * len(adversarial)
    fig, axes = new_figure(1, cols, figsize=(3.2 * cols, 3.2))
    axes = axes[0]
    low = min(natural.min(), *(a.min() for _, a in adversarial))
    high = max(natural.max(), *(a.max() for _, a in adversarial))
    diffs = [a - natural for _, a in adversarial]
    limit = max(float(np.abs(d).max()) for d in diffs) or 1.0
    im = axes[0].imshow(natural, cmap="jet", vmin=low, vmax=high)
    axes[0].set_title("natural: log|F|", fontsize=9)
    fig.colorbar(im, ax=axes[0], fraction=0.046, pad=0.04)
    for k, ((name, adv), diff) in enumerate(zip(adversarial, diffs)):
        im = axes[1 + 2 * k].imshow(adv, cmap="jet", vmin=low, vmax=high)
        axes[1 + 2 * k].set_title(f"adv ({name})", fontsize=9)
        fig.colorbar(im, ax=axes[1 + 2 * k], fraction=0.046, pad=0.04)
        im = axes[2 + 2 * k].imshow(diff, cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[2 + 2 * k].set_title(f"log|adv|-log|nat| ({name})", fontsize=9)
        fig.colorbar(im, ax=axes[2 + 2 * k], fraction=0.046, pad=0.04)
    no_ticks(*axes)
    save(fig, path)


def perturbation_grid(natural: np.ndarray, columns: list[dict], path: Path, *, eps: float, title: str = "") -> None:
    """Figures 3, 7, 8: per example, the natural image and for each model the adversarial image,
    the perturbation min-max scaled to [0, 1] ("[0, 255]"), its channel mean and each channel
    (diverging colour map, ±eps at the ends; one channel is shown once, as the mean).

    ``columns`` holds per model ``name`` (its label, drawn as given), ``image`` (adversarial,
    ``[N, H, W, C]``), ``prediction`` and ``success``.
    """
    n, channels = natural.shape[0], natural.shape[-1]
    per_model = 3 + (channels if channels > 1 else 0)
    cols = 1 + per_model * len(columns)
    fig, axes = new_figure(n, cols, figsize=(1.6 * cols, 1.7 * n + 0.4))
    gray = "gray" if channels == 1 else None
    for i in range(n):
        axes[i, 0].imshow(np.squeeze(natural[i]), cmap=gray, vmin=0, vmax=1)
        for c, model in enumerate(columns):
            base = 1 + c * per_model
            delta = model["image"][i] - natural[i]
            span = float(delta.max() - delta.min())
            scaled = (delta - delta.min()) / span if span > 0 else np.zeros_like(delta)
            axes[i, base].imshow(np.squeeze(model["image"][i]), cmap=gray, vmin=0, vmax=1)
            axes[i, base + 1].imshow(np.squeeze(scaled), cmap=gray, vmin=0, vmax=1)
            im = axes[i, base + 2].imshow(delta.mean(-1), cmap="RdBu_r", vmin=-eps, vmax=eps)
            for k in range(channels if channels > 1 else 0):
                axes[i, base + 3 + k].imshow(delta[..., k], cmap="RdBu_r", vmin=-eps, vmax=eps)
            mark = "ok" if model["success"][i] else "failed"
            axes[i, base].set_title(f"{model['name']}: {int(model['prediction'][i])} ({mark})", fontsize=7)
            if i == 0:
                axes[i, base + 1].set_title("delta [0,1]", fontsize=7)
                axes[i, base + 2].set_title("channel mean", fontsize=7)
                for k in range(channels if channels > 1 else 0):
                    axes[i, base + 3 + k].set_title(f"channel {k}", fontsize=7)
        axes[i, 0].set_title("natural", fontsize=7)
    no_ticks(*axes.ravel())
    fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01, label=f"delta (±{eps:g})")
    save(fig, path, title=title, tight=False, bbox_inches="tight")


def response_figure(rows: list[dict], layers: list[str], path: Path) -> None:
    """Tables 1-5 and Figure A8 as bars: mean max, total and l2 response difference per layer, one bar per row.

    ``rows[i]["model"]`` is a label, drawn as given (pass a short name, not a path).
    """
    stats = ("max", "total", "l2")
    titles = {"max": "max |f(x_adv) - f(x)|", "total": "sum |f(x_adv) - f(x)|",
              "l2": "||f(x_adv) - f(x)||_2 (activation bias)"}
    fig, axes = new_figure(1, 3, figsize=(16, 3.8), squeeze=True)
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(layers))
    for k, row in enumerate(rows):
        label = f"{row['model']} · {row['source']} · {row['attack']} · {row['split']} (n={row['n']})"
        for ax, stat in zip(axes, stats):
            values = [row.get(f"{layer}_{stat}") for layer in layers]
            ax.bar(x + k * width, [np.nan if v is None else v for v in values], width, label=label)
    for ax, stat in zip(axes, stats):
        ax.set_xticks(x + 0.4 - width / 2, layers)
        ax.set_yscale("log")
        ax.set_title(f"{titles[stat]} per image (mean over images)", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[-1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    save(fig, path)


def activation_maps_figure(maps: dict, path: Path, *, layer: str, title: str = "") -> None:
    """Figure 9/A9: channel maps of one layer for the same natural/adversarial pair, two rows per model.

    ``maps[model] = {"natural": [H, W, k], "adversarial": [H, W, k]}``; each model's rows share a colour scale.
    """
    k = max(m["natural"].shape[-1] for m in maps.values())
    fig, axes = new_figure(2 * len(maps), k, figsize=(1.3 * k + 1, 2.6 * len(maps)))
    for i, (name, pair) in enumerate(maps.items()):
        top = max(float(pair["natural"].max()), float(pair["adversarial"].max()), 1e-12)
        for j, kind in enumerate(("natural", "adversarial")):
            for c in range(k):
                ax = axes[2 * i + j, c]
                no_ticks(ax)
                if c < pair[kind].shape[-1]:
                    ax.imshow(pair[kind][..., c], cmap="viridis", vmin=0, vmax=top)
                if c == 0:
                    ax.set_ylabel(f"{name}\n{kind}", fontsize=7)
    save(fig, path, title=title or f"{layer}: activation maps, natural vs adversarial")


def epoch_curves(series: dict[str, dict[str, list]], panels: list[str], path: Path, *, ylabel: str,
                 title: str = "") -> None:
    """Figures 5 and 9: one panel per quantity (layer), one line per run, against the epoch.

    ``series[run] = {"epoch": [...], panel: [...], ...}``.
    """
    cols = min(4, len(panels))
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = new_figure(rows, cols, figsize=(3.4 * cols, 2.8 * rows))
    for ax, panel in zip(axes.ravel(), panels):
        for run, values in series.items():
            ax.plot(values["epoch"], values[panel], marker=".", label=run)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    save(fig, path, title=title, fontsize=10)


def kernel_figure(rows: list[dict], path: Path, *, stats) -> None:
    """Per-layer kernel statistics, one line per model (magnitude, within-kernel variance, TV).

    ``rows[i]["model"]`` is a label, drawn as given (pass a short name, not a path).
    """
    fig, axes = new_figure(1, len(stats), figsize=(4.2 * len(stats), 3.4))
    models = list(dict.fromkeys(r["model"] for r in rows))
    for ax, stat in zip(axes[0], stats):
        for model in models:
            mine = [r for r in rows if r["model"] == model]
            ax.plot(range(len(mine)), [np.nan if r[stat] is None else r[stat] for r in mine], marker=".",
                    label=model)
            ax.set_xticks(range(len(mine)), [r["layer"] for r in mine], rotation=90, fontsize=6)
        ax.set_title(stat, fontsize=9)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    save(fig, path)
