"""Clean and robust accuracy, attacking the true label."""

from __future__ import annotations

import tensorflow as tf

from advtf.attacks import Threat, get_attack
from advtf.training.distributed import replica_seed, sum_over_batches


def accuracy_counts(model, x, y, *, threat: Threat | None, attack: str = "pgd", seed=None, jit=False):
    """Per-batch counts: examples, clean-correct and (with a threat) robust-correct.

    An example counts as robust only if it is classified correctly both clean and under
    attack (the convention of AutoAttack's robust accuracy).
    """
    y = tf.cast(y, tf.int32)
    clean = tf.equal(tf.argmax(model(x, training=False), -1, output_type=tf.int32), y)
    out = {"n": tf.cast(tf.size(y), tf.float32), "clean": tf.reduce_sum(tf.cast(clean, tf.float32))}
    if threat is not None:
        x_adv = get_attack(attack)(model, x, y, threat, seed=seed, jit=jit)
        adv = tf.equal(tf.argmax(model(x_adv, training=False), -1, output_type=tf.int32), y)
        out["robust"] = tf.reduce_sum(tf.cast(clean & adv, tf.float32))
    return out


def evaluate(model, batches: tf.data.Dataset, *, threat: Threat | None = None, attack: str = "pgd",
             strategy: tf.distribute.Strategy | None = None, seed: int = 0, progress=None,
             jit: bool = False) -> dict:
    """Clean (and robust, given ``threat``) accuracy of ``model`` over batched ``(x, y)``.

    Returns:
        ``{"clean_accuracy", "n"}`` plus ``"robust_accuracy"`` when ``threat`` is given.
    """
    strategy = strategy or tf.distribute.get_strategy()
    get_attack(attack)  # fail early on a bad name

    def replica_fn(x, y, step):
        return accuracy_counts(model, x, y, threat=threat, attack=attack, seed=replica_seed(seed, step), jit=jit)

    totals = sum_over_batches(strategy, batches, replica_fn, progress=progress)
    n = int(totals.get("n", 0))
    result = {"n": n, "clean_accuracy": totals.get("clean", 0.0) / max(n, 1)}
    if threat is not None:
        result["robust_accuracy"] = totals.get("robust", 0.0) / max(n, 1)
    return result
