"""Clean and robust accuracy, attacking the true label."""

from __future__ import annotations

import tensorflow as tf

from advtf.attacks import Threat, check_attack, get_attack
from advtf.distribute.replicas import BatchSums, replica_seed
from advtf.models.precision import attack_view  # float16 models: input gradients without underflow


def accuracy_counts(model, x, y, *, threat: Threat | None, attack: str = "pgd", seed=None, jit=False,
                    options: dict | None = None):
    """Per-batch counts: examples, clean-correct and (with a threat) robust-correct.

    An example counts as robust only if it is classified correctly both clean and under
    attack (the convention of AutoAttack's robust accuracy).
    """
    y = tf.cast(y, tf.int32)
    clean = tf.equal(tf.argmax(model(x, training=False), -1, output_type=tf.int32), y)
    out = {"n": tf.cast(tf.size(y), tf.float32), "clean": tf.reduce_sum(tf.cast(clean, tf.float32))}
    if threat is not None:
        x_adv = get_attack(attack)(attack_view(model), x, y, threat, seed=seed, jit=jit, **(options or {}))
        adv = tf.equal(tf.argmax(model(x_adv, training=False), -1, output_type=tf.int32), y)
        out["robust"] = tf.reduce_sum(tf.cast(clean & adv, tf.float32))
    return out


class Evaluator:
    """Clean (and robust, given ``threat``) accuracy of ``model``; compiled once, reusable."""

    def __init__(self, model, *, threat: Threat | None = None, attack: str = "pgd",
                 strategy: tf.distribute.Strategy | None = None, seed: int = 0, jit: bool = False,
                 options: dict | None = None):
        if threat is not None:  # fail early on a bad name, norm or option
            check_attack(attack, threat.norm, options)
        self.threat = threat

        def replica_fn(x, y, step):
            return accuracy_counts(model, x, y, threat=threat, attack=attack, seed=replica_seed(seed, step), jit=jit,
                                   options=options)

        self._sums = BatchSums(strategy or tf.distribute.get_strategy(), replica_fn)

    def sums(self, batches: tf.data.Dataset, *, progress=None, start: int = 0) -> dict[str, float]:
        """Counts ``n``, ``clean`` (and ``robust``) over ``batches``, the first being batch ``start`` of the pass."""
        return self._sums(batches, progress=progress, start=start)

    def __call__(self, batches: tf.data.Dataset, *, progress=None) -> dict:
        """``{"clean_accuracy", "n"}`` plus ``"robust_accuracy"`` when there is a threat."""
        return self.accuracies(self.sums(batches, progress=progress))

    def accuracies(self, totals: dict[str, float]) -> dict:
        """``{"clean_accuracy", "n"}`` (and ``"robust_accuracy"``) of counts from :meth:`sums`."""
        n = int(totals.get("n", 0))
        result = {"n": n, "clean_accuracy": totals.get("clean", 0.0) / max(n, 1)}
        if self.threat is not None:
            result["robust_accuracy"] = totals.get("robust", 0.0) / max(n, 1)
        return result


def evaluate(model, batches: tf.data.Dataset, *, threat: Threat | None = None, attack: str = "pgd",
             strategy: tf.distribute.Strategy | None = None, seed: int = 0, progress=None,
             jit: bool = False, options: dict | None = None) -> dict:
    """Clean (and robust, given ``threat``) accuracy of ``model`` over batched ``(x, y)``.

    Returns:
        ``{"clean_accuracy", "n"}`` plus ``"robust_accuracy"`` when ``threat`` is given.
    """
    evaluator = Evaluator(model, threat=threat, attack=attack, strategy=strategy, seed=seed, jit=jit, options=options)
    return evaluator(batches, progress=progress)
