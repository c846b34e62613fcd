"""Per-example outcome of an attack: success flag, predictions and the norms of the perturbation.

Xu et al. (2019, Table A1) report l0, l1, l2 and linf norms of delta; every advtf attack run
records all four for every example, so tables can be cut any way afterwards.
"""

from __future__ import annotations

import tensorflow as tf

from advtf.attacks.losses import predictions
from advtf.attacks.threat import per_example_norm

NORM_NAMES = ("l0", "l1", "l2", "linf")


def _outcome(model, x, x_adv, y, label, targeted: bool):
    clean_pred = predictions(model(x, training=False))
    adv_pred = predictions(model(x_adv, training=False))
    success = tf.equal(adv_pred, label) if targeted else tf.not_equal(adv_pred, label)
    delta = x_adv - x
    out = {"clean_prediction": clean_pred, "adversarial_prediction": adv_pred, "success": success,
           "clean_correct": tf.equal(clean_pred, y), "adversarial_correct": tf.equal(adv_pred, y)}
    out.update({norm: per_example_norm(delta, norm) for norm in NORM_NAMES})
    return out


_compiled_outcome = tf.function(_outcome, reduce_retracing=True)


def attack_outcome(model, x, x_adv, y, *, targeted: bool = False, target=None) -> dict[str, tf.Tensor]:
    """Per-example outcome of ``x_adv`` against ``x``.

    Args:
        model: the attacked model (logits).
        x, x_adv: natural and adversarial images (B, H, W, C).
        y: true labels (B,).
        targeted: success means predicting ``target``; otherwise, anything but ``y``.
        target: target labels (B,) when targeted.

    Returns:
        ``success``, ``clean_prediction``, ``adversarial_prediction``, ``clean_correct``,
        ``adversarial_correct`` and the perturbation norms ``l0`` (entries with
        |delta| > 1e-6), ``l1``, ``l2``, ``linf``; each of shape (B,).
    """
    y = tf.cast(y, tf.int32)
    label = tf.cast(target, tf.int32) if targeted else y
    return _compiled_outcome(model, tf.convert_to_tensor(x, tf.float32), tf.convert_to_tensor(x_adv, tf.float32),
                             y, label, bool(targeted))
