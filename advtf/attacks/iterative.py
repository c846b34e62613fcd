"""Projected gradient descent (Madry et al. 2018) and FGSM (Goodfellow et al. 2015).

One compiled loop serves training, evaluation and analyses: eps, step size, steps and
restarts are tensors, so sweeping them never retraces.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from advtf.attacks import threat as threats
from advtf.attacks.threat import Threat


def _objective(model, x, label, targeted: bool):
    """Per-example loss the attack ascends, and the logits it saw."""
    logits = model(x, training=False)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=label, logits=logits)
    return (-ce if targeted else ce), logits


def _succeeded(logits, label, targeted: bool):
    pred = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return tf.equal(pred, label) if targeted else tf.not_equal(pred, label)


def _pgd_once(model, x, label, eps, alpha, steps, seed, norm, targeted, random_init):
    """One PGD run from one start point."""
    if random_init:
        x_adv = tf.clip_by_value(x + threats.random_start(tf.shape(x), eps, norm, seed), 0.0, 1.0)
    else:
        x_adv = tf.identity(x)
    for _ in tf.range(steps):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            loss, _ = _objective(model, x_adv, label, targeted)
            total = tf.reduce_sum(loss)
        grad = tape.gradient(total, x_adv)
        delta = threats.project(x_adv - x + alpha * threats.ascent_direction(grad, norm), eps, norm)
        x_adv = tf.clip_by_value(x + delta, 0.0, 1.0)
    return x_adv


def _pgd_restarts(model, x, label, eps, alpha, steps, restarts, seed, norm, targeted, random_init):
    """Runs ``restarts`` PGD runs; keeps per example a successful one, else the highest loss."""
    best = tf.identity(x)
    best_loss = tf.fill(tf.shape(label), float("-inf"))
    best_success = tf.zeros(tf.shape(label), tf.bool)
    for r in tf.range(restarts):
        run_seed = tf.random.experimental.stateless_fold_in(seed, r)
        x_adv = _pgd_once(model, x, label, eps, alpha, steps, run_seed, norm, targeted, random_init)
        loss, logits = _objective(model, x_adv, label, targeted)
        success = _succeeded(logits, label, targeted)
        better = (success & ~best_success) | ((success == best_success) & (loss > best_loss))
        best = tf.where(better[:, None, None, None], x_adv, best)
        best_loss = tf.where(better, loss, best_loss)
        best_success = best_success | success
    return best


def _pgd_single(model, x, label, eps, alpha, steps, restarts, seed, norm, targeted, random_init):
    """One run: no restart selection, so no extra forward pass (same examples as restart 0)."""
    del restarts
    run_seed = tf.random.experimental.stateless_fold_in(seed, 0)
    return _pgd_once(model, x, label, eps, alpha, steps, run_seed, norm, targeted, random_init)


_compiled = tf.function(_pgd_restarts, reduce_retracing=True)
_compiled_xla = tf.function(_pgd_restarts, reduce_retracing=True, jit_compile=True)
_single = tf.function(_pgd_single, reduce_retracing=True)
_single_xla = tf.function(_pgd_single, reduce_retracing=True, jit_compile=True)


def pgd(model, x, y, threat: Threat, *, targeted: bool = False, target=None, seed=None, jit: bool = False):
    """PGD adversarial examples inside ``threat``'s ball and [0, 1].

    Args:
        model: Keras model mapping [0, 1] images to logits; called with ``training=False``.
        x: images (B, H, W, C), float32 in [0, 1].
        y: true labels (B,) (untargeted: the attack moves away from them).
        threat: norm, eps, steps, step size, restarts, random start.
        targeted: descend the cross-entropy of ``target`` instead.
        target: target labels (B,), required when ``targeted``.
        seed: stateless seed, int tensor of shape (2,); random when ``None``.
        jit: compile with XLA (slower on CPU, faster on GPU).

    Returns:
        x_adv with ``||x_adv - x|| <= eps`` in ``threat.norm`` and ``x_adv`` in [0, 1].
    """
    x = tf.convert_to_tensor(x, tf.float32)
    label = tf.cast(target if targeted else y, tf.int32)
    if targeted and target is None:
        raise ValueError("a targeted attack needs target labels")
    if seed is None:
        seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)
    if int(threat.restarts) == 1:
        fn = _single_xla if jit else _single
    else:
        fn = _compiled_xla if jit else _compiled
    return fn(
        model, x, label,
        tf.constant(threat.eps, tf.float32), tf.constant(threat.alpha, tf.float32),
        tf.constant(int(threat.steps)), tf.constant(int(threat.restarts)),
        tf.cast(seed, tf.int64), threat.norm, bool(targeted), bool(threat.random_start),
    )


def fgsm(model, x, y, threat: Threat, *, targeted: bool = False, target=None, seed=None, jit: bool = False):
    """Fast gradient (sign) method: one step of size eps from x (FGM for l2)."""
    one_step = dataclasses.replace(threat, steps=1, step_size=threat.eps, restarts=1, random_start=False)
    return pgd(model, x, y, one_step, targeted=targeted, target=target, seed=seed, jit=jit)


def fast_fgsm(model, x, y, threat: Threat, *, targeted: bool = False, target=None, seed=None, jit: bool = False):
    """FGSM with random start and step 1.25 eps, the "fast" training attack of Wong et al. (2020)."""
    one_step = dataclasses.replace(
        threat, steps=1, step_size=1.25 * threat.eps, restarts=1, random_start=True
    )
    return pgd(model, x, y, one_step, targeted=targeted, target=target, seed=seed, jit=jit)
