"""Zero- and negative-robust relabeled datasets (Springer et al. 2021, Sec. 3.2 and Appendix A).

Each ``(x, y)`` becomes ``(x_hat, y_hat)``: ``x_hat`` a targeted adversarial example (L2 PGD in
the paper, Table 4: eps 0.5, 200 steps of 0.1) that the source model classifies as ``y_hat``.

* ``zero`` (Ilyas et al.'s D_rand): ``y_hat`` uniform over all K classes, so robust features
  are uncorrelated with the new label and only non-robust ones predict it. With
  ``per_image="all"`` every image yields K examples, one per target class (the paper's CIFAR-10
  construction).
* ``negative`` (D_det): ``y_hat = (y + 1) mod K``, a fixed permutation, so robust features are
  anti-correlated with the new label.

A classifier trained on such a set ("zero-robust", "negative-robust") can only have learned
non-robust features; its accuracy on a robustified test set then measures robust/non-robust
entanglement. Pure computation: the job ``advtf.jobs.relabel`` streams a split through it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advtf.attacks import Threat, attack_outcome, attack_spec
from advtf.errors import UserError

MODES = ("zero", "negative")
PER_IMAGE = ("one", "all")


def relabel_targets(labels: np.ndarray, num_classes: int, mode: str, *, seed: int = 0,
                    per_image: str = "one") -> tuple[np.ndarray, np.ndarray]:
    """Which image each new example comes from, and its new label.

    Returns:
        ``(index, new_label)``: int arrays of length n (``per_image="one"``) or n*K (``"all"``:
        image-major, targets 0..K-1 for each image).

    Raises:
        UserError: unknown mode, ``all`` with ``negative``, or fewer than two classes.
    """
    if mode not in MODES:
        raise UserError(f"unknown --mode {mode!r}; choose zero or negative")
    if per_image not in PER_IMAGE:
        raise UserError(f"unknown --per-image {per_image!r}; choose one or all")
    if num_classes < 2:
        raise UserError(f"relabeling needs at least two classes (the dataset has {num_classes})")
    labels = np.asarray(labels, np.int64)
    n = len(labels)
    if per_image == "all":
        if mode != "zero":
            raise UserError("--per-image all makes one example per class, a zero-robust set; use it with --mode zero")
        return np.repeat(np.arange(n), num_classes), np.tile(np.arange(num_classes), n)
    if mode == "negative":
        return np.arange(n), (labels + 1) % num_classes
    rng = np.random.default_rng([int(seed), 7_011])
    return np.arange(n), rng.integers(0, num_classes, size=n)


def relabel_batch(model, x, y, new_label, *, attack: str, threat: Threat, options: dict | None = None, seed,
                  jit: bool = False) -> dict[str, tf.Tensor]:
    """Targeted adversarial examples of ``x`` towards ``new_label``: ``image``, ``success``, ``l2`` (tensors)."""
    fn = attack_spec(attack).fn
    target = tf.convert_to_tensor(new_label, tf.int32)
    x = tf.convert_to_tensor(x, tf.float32)
    x_adv = fn(model, x, y, threat, targeted=True, target=target, seed=seed, jit=jit, **(options or {}))
    outcome = attack_outcome(model, x, x_adv, y, targeted=True, target=target)
    return {"image": x_adv, "success": outcome["success"], "l2": outcome["l2"]}


def label_histogram(labels: np.ndarray, names: list[str]) -> dict[str, int]:
    """``{class name: count}`` of ``labels`` over all classes (zero counts included)."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=len(names))
    return {names[k]: int(counts[k]) for k in range(len(names))}
