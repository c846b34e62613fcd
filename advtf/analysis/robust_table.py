"""Accuracy of several classifiers on several test sets (Springer et al. 2021, Tables 1/2/5/6).

Rows are classifiers (standard, robust, zero-robust, negative-robust, ...), columns test sets
(the original test split and robustified sets R_ε). Each test set is read once; every batch
goes through every classifier in one compiled forward pass. Pure computation: loading,
checking and writing the table are the job's (:mod:`advtf.jobs.robust_table`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advtf.attacks.losses import predictions
from advtf.errors import UserError


@tf.function(reduce_retracing=True)
def predict_classes(model, x):
    """The class ``model`` predicts for each image of ``x`` (B,), compiled once per model."""
    return predictions(model(x, training=False))


def count_hits(predicted: np.ndarray, reference: np.ndarray, *, equal: bool = True) -> int:
    """How many predictions equal (``equal=True``) or differ from ``reference``."""
    same = np.asarray(predicted) == np.asarray(reference)
    return int(np.sum(same if equal else ~same))


def accuracy_matrix(classifiers: dict, testsets: dict[str, tf.data.Dataset], *, progress=None) -> dict:
    """Accuracy of every classifier on every batched ``(x, y)`` test set.

    Returns:
        ``{"accuracy": {classifier: {testset: float}}, "n": {testset: int}}``, in the given orders.

    Raises:
        UserError: an empty test set.
    """
    correct = {c: dict.fromkeys(testsets, 0) for c in classifiers}
    n = dict.fromkeys(testsets, 0)
    for t, batches in testsets.items():
        for x, y in batches:
            y = y.numpy()
            for c, model in classifiers.items():
                correct[c][t] += count_hits(predict_classes(model, x).numpy(), y)
            n[t] += len(y)
            if progress is not None:
                progress.update(len(y))
        if not n[t]:
            raise UserError(f"test set {t} is empty; pass a dataset with images in the evaluated split")
    return {"accuracy": {c: {t: correct[c][t] / n[t] for t in testsets} for c in classifiers}, "n": n}


def batch_hits(classifiers: dict, x, y) -> list[int]:
    """How many images of one batch ``(x, y)`` every classifier gets right, in the classifiers' order
    (the counts :func:`accuracy_matrix` sums)."""
    x, y = tf.convert_to_tensor(x), np.asarray(y)
    return [count_hits(predict_classes(model, x).numpy(), y) for model in classifiers.values()]
