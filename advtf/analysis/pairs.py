"""What the analyses share: natural/adversarial pairs batch by batch, success on another model,
and regrouping rows (loading models and checkpoint series is :mod:`advtf.inputs`)."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from advtf.adversarial import attack_batches
from advtf.data import make_batches


def adversarial_pairs(model, splits, request, *, batch_size: int, seed: int, progress=None,
                      desc: str = "") -> Iterator[dict[str, np.ndarray]]:
    """:func:`advtf.adversarial.attack_batches` over the test split, with a progress bar.

    Every model attacked this way sees the same images in the same order (the test split is
    batched without shuffling), so rows of different models line up example by example.
    """
    source = splits.require("test")
    bar = progress(total=splits.sizes.get("test"), desc=desc or request.name, unit="img") if progress else None
    try:
        yield from attack_batches(model, make_batches(source, batch_size, training=False), request,
                                  num_classes=splits.info.num_classes, seed=seed, progress=bar)
    finally:
        if bar is not None:
            bar.close()


def success_on(predicted: np.ndarray, rows: dict[str, np.ndarray], targeted: bool) -> np.ndarray:
    """Whether adversarial examples succeed on a model that predicted ``predicted`` for them.

    Untargeted: the prediction differs from the true label; targeted: it is the target.
    """
    return predicted == rows["target"] if targeted else predicted != rows["label"]


def concat_rows(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenates per-batch dicts of arrays."""
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]} if chunks else {}


def by_run(rows: list[dict]) -> dict[str, dict[str, list]]:
    """Regroups ``{"run": ..., key: value}`` rows as ``{run: {key: [values in row order]}}`` for epoch curves."""
    grouped: dict[str, dict[str, list]] = {}
    for row in rows:
        entry = grouped.setdefault(row["run"], {})
        for key, value in row.items():
            entry.setdefault(key, []).append(value)
    return grouped
