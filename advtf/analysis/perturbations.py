"""Adversarial perturbations in the spatial domain (the local-properties paper, Sec. 3, Figures 3, 7, 8).

The figure shows, for the same natural images, each model's adversarial example and its
perturbation ``δ = x_adv - x``: overall (min-max scaled to [0, 1], the paper's "[0, 255]"),
the channel mean and each channel on a diverging colour map with ±eps at the ends.

The paper reads these figures by eye ("locally consistent" vs "disordered"); to make the reading
measurable, every perturbation also gets (per image, then averaged):

* ``at_bound``: share of entries with ``|δ| >= 0.99·eps`` (the paper: robust-model perturbations
  "tend to reach the perturbation bound");
* ``sign_agreement``: share of horizontally or vertically neighbouring entries (same channel)
  whose ``δ`` has the same sign, among pairs where both are non-zero (locally co-increasing or
  co-decreasing: 1 = perfectly consistent, 0.5 = random signs);
* ``neighbour_diff``: mean ``|δ(p) - δ(q)|`` over those neighbour pairs, divided by eps (local disorder);
* ``high_energy``: share of ``‖δ‖²`` at spatial frequencies ``>= min(H, W)/4`` from the centre.
"""

from __future__ import annotations

import numpy as np

from advtf.analysis.frequency import radial_distance
from advtf.errors import UserError

ONLY = ("successful", "failed", "all")
STATS = ("at_bound", "sign_agreement", "neighbour_diff", "high_energy")


def _neighbour_pairs(delta: np.ndarray):
    """Horizontally and vertically adjacent entries of ``[N, H, W, C]``, flattened per image."""
    n = len(delta)
    first = np.concatenate([delta[:, 1:].reshape(n, -1), delta[:, :, 1:].reshape(n, -1)], axis=1)
    second = np.concatenate([delta[:, :-1].reshape(n, -1), delta[:, :, :-1].reshape(n, -1)], axis=1)
    return first, second


def perturbation_stats(delta, eps: float) -> dict[str, np.ndarray]:
    """Per-image :data:`STATS` of perturbations ``[N, H, W, C]`` (module docstring)."""
    delta = np.asarray(delta, np.float64)
    if delta.ndim != 4:
        raise UserError(f"perturbations must be [N, H, W, C]; got shape {delta.shape}")
    n, height, width = delta.shape[:3]
    a, b = _neighbour_pairs(delta)
    both = (a != 0) & (b != 0)
    same = (np.sign(a) == np.sign(b)) & both
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(both.any(1), same.sum(1) / np.maximum(both.sum(1), 1), np.nan)
        power = np.abs(np.fft.fftshift(np.fft.fft2(delta, axes=(1, 2)), axes=(1, 2))) ** 2
        far = radial_distance(height, width) >= min(height, width) / 4
        total = power.sum(axis=(1, 2, 3))
        high = np.where(total > 0, power[:, far].sum(axis=(1, 2)) / np.where(total > 0, total, 1), np.nan)
    return {"at_bound": (np.abs(delta) >= 0.99 * eps).reshape(n, -1).mean(1),
            "sign_agreement": agreement,
            "neighbour_diff": np.abs(a - b).mean(1) / eps,
            "high_energy": high}


def select_examples(success: list[np.ndarray], correct: list[np.ndarray], only: str, count: int) -> np.ndarray:
    """Indices of up to ``count`` examples naturally correct on every model, chosen by ``only``.

    ``successful``: the attack succeeds on every model (Figure 3); ``failed``: it fails on the first
    model (Figure 8: failed on the adversarially-trained model, listed first); ``all``: any outcome.
    """
    if only not in ONLY:
        raise UserError(f"--only must be one of {', '.join(ONLY)} (got {only!r})")
    keep = np.logical_and.reduce(correct)
    if only == "successful":
        keep &= np.logical_and.reduce(success)
    elif only == "failed":
        keep &= ~success[0]
    return np.flatnonzero(keep)[:count]


OUTCOMES = ("label", "adversarial_prediction", "success", "clean_correct", "adversarial_correct")


def outcome_rows(batches, eps: float) -> dict[str, np.ndarray]:
    """A model's attacked batches reduced to per-example :data:`OUTCOMES` and :data:`STATS`, without
    the images: what :func:`model_summary` needs, one batch in memory at a time."""
    parts = [{**{k: batch[k] for k in OUTCOMES}, **perturbation_stats(batch["image"] - batch["natural"], eps)}
             for batch in batches]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


def rows_at(batches, index: np.ndarray, keys=("natural", "image")) -> dict[str, np.ndarray]:
    """``keys`` of the examples at ``index`` (ascending, as :func:`select_examples` gives them) from batches in order."""
    index = np.asarray(index, np.int64)
    picked, start = {k: [] for k in keys}, 0
    for batch in batches:
        count = len(batch[keys[0]])
        here = index[(index >= start) & (index < start + count)] - start
        for k in keys:
            picked[k].append(np.asarray(batch[k])[here])
        start += count
    return {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in picked.items()}


def model_summary(path, rows: dict[str, np.ndarray], shown: np.ndarray, eps: float) -> tuple[dict, list[dict]]:
    """One model's row (``n``, ``success_rate``, clean and adversarial accuracy, the mean :data:`STATS`
    over all images and over the ``shown`` ones) and one row per shown example, from its attacked rows
    (with ``image`` and ``natural``, or already reduced by :func:`outcome_rows`)."""
    stats = rows if all(s in rows for s in STATS) else perturbation_stats(rows["image"] - rows["natural"], eps)
    entry = {"model": str(path), "n": int(len(rows["label"])), "success_rate": float(rows["success"].mean()),
             "clean_accuracy": float(rows["clean_correct"].mean()),
             "adversarial_accuracy": float(rows["adversarial_correct"].mean()),
             **{s: float(np.nanmean(stats[s])) for s in STATS},
             **{f"shown_{s}": float(np.nanmean(stats[s][shown])) if len(shown) else None for s in STATS}}
    examples = [{"index": int(i), "model": str(path), "label": int(rows["label"][i]),
                 "prediction": int(rows["adversarial_prediction"][i]), "success": bool(rows["success"][i]),
                 **{s: round(float(stats[s][i]), 4) for s in STATS}} for i in shown]
    return entry, examples


def empty_note(only: str, attacked: int) -> str:
    """Why no figure was drawn: no naturally correct image matched ``--only`` among ``attacked``."""
    where = {"successful": " on every model", "failed": " on the first model"}.get(only, "")
    return (f"no naturally correct image with a {only} attack{where} among the {attacked} attacked; "
            "no perturbation grid drawn (try --only all or more images)")
