"""Per-example objectives the attacks ascend, and what counts as success.

Every function takes logits (B, K) and int32 labels (B,) and returns a (B,) tensor.
"""

from __future__ import annotations

import tensorflow as tf


def cross_entropy(logits, label):
    """Softmax cross-entropy of ``label``."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=label, logits=logits)


def margin(logits, label):
    """``Z_label - max_{j != label} Z_j`` (C&W's f6 without the clamp; < 0 means misclassified)."""
    k = tf.shape(logits)[-1]
    one_hot = tf.one_hot(label, k, dtype=logits.dtype)
    true = tf.reduce_sum(one_hot * logits, axis=-1)
    other = tf.reduce_max(logits - one_hot * 1e9, axis=-1)
    return true - other


def dlr(logits, label):
    """Difference of logits ratio loss (Croce & Hein 2020, Eq. 6), untargeted; larger is stronger."""
    sorted_logits = tf.sort(logits, axis=-1, direction="DESCENDING")
    k = tf.shape(logits)[-1]
    one_hot = tf.one_hot(label, k, dtype=logits.dtype)
    true = tf.reduce_sum(one_hot * logits, axis=-1)
    top = sorted_logits[:, 0]
    second = sorted_logits[:, 1]
    best_other = tf.where(tf.equal(top, true), second, top)
    denom = top - sorted_logits[:, 2] + 1e-12
    return -(true - best_other) / denom


def dlr_targeted(logits, label, target):
    """Targeted DLR (Croce & Hein 2020, Eq. 7); larger is stronger."""
    sorted_logits = tf.sort(logits, axis=-1, direction="DESCENDING")
    k = tf.shape(logits)[-1]
    true = tf.reduce_sum(tf.one_hot(label, k, dtype=logits.dtype) * logits, axis=-1)
    tgt = tf.reduce_sum(tf.one_hot(target, k, dtype=logits.dtype) * logits, axis=-1)
    denom = sorted_logits[:, 0] - 0.5 * (sorted_logits[:, 2] + sorted_logits[:, 3]) + 1e-12
    return -(true - tgt) / denom


def predictions(logits):
    return tf.argmax(logits, axis=-1, output_type=tf.int32)


def succeeded(logits, label, targeted: bool):
    """Untargeted: prediction != label; targeted: prediction == label (the target)."""
    pred = predictions(logits)
    return tf.equal(pred, label) if targeted else tf.not_equal(pred, label)
