"""Gradient-sign / projected-gradient attacks: FGSM, I-FGSM, PGD (and the "fast" training FGSM).

FGSM (Goodfellow et al. 2015), I-FGSM (Kurakin et al. 2017) and PGD (Madry et al. 2018) are one
compiled loop with different defaults, the loop that training, evaluation and analyses share.
eps, step size and restarts are tensors, so sweeping them never retraces; up to
``UNROLL_MAX_STEPS`` steps the loop is unrolled (one trace per step count), beyond as a tensor.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from advtf.attacks import threat as threats
from advtf.attacks.losses import cross_entropy, succeeded
from advtf.attacks.registry import register_attack
from advtf.attacks.threat import Threat, as_seed
from advtf.errors import UserError

SCHEDULES = ("constant", "cosine", "linear")
# Up to this many steps the loop is unrolled in Python inside the tf.function (one trace per step
# count). A tf.range loop ran about 1.5x slower in a quarter to half of its traces on CPU, stuck in
# that mode for the trace's life; unrolled loops never did (benchmarks/RESULTS.md, "Attack
# throughput and strength"). Longer attacks keep the tensor loop (no retrace when steps change).
UNROLL_MAX_STEPS = 20


def _objective(model, x, label, targeted: bool):
    """Per-example loss the attack ascends, and the logits it saw."""
    logits = model(x, training=False)
    ce = cross_entropy(logits, label)
    return (-ce if targeted else ce), logits


def _step_scale(i, steps, schedule: str):
    """Multiplier of the step size at step ``i`` of ``steps`` (a constant schedule has none)."""
    t = tf.cast(i, tf.float32) / tf.cast(steps, tf.float32)
    if schedule == "cosine":
        return 0.5 * (1.0 + tf.cos(math.pi * t))
    return 1.0 - t  # linear: 1 at the first step, 1/steps at the last


def gradient_steps(objective, x_start, steps, step_size, *, direction: threats.Ball, ball: threats.Ball | None = None,
                   x=None, eps=None, descend: bool = False, keep_best: bool = False, best=None,
                   schedule: str = "constant"):
    """The PGD core: ``steps`` steepest-ascent (or descent) steps on a per-example objective.

    PGD ascends the cross-entropy inside a norm ball; robustification (``analysis/robustify.py``)
    descends a representation distance with no ball, keeping the best iterate, as Madry et al.'s
    robustness library builds both from its attacker. Every iterate lies in [0, 1].

    Args:
        objective: images -> per-example objective (B,), differentiable in the images.
        x_start: the first iterate (B, H, W, C).
        steps: a Python int (the loop is unrolled, one trace per count) or an int tensor (a
            ``tf.range`` loop: no retrace when it changes).
        step_size: step length (scalar tensor), times ``schedule``'s multiplier at each step.
        direction: the ball whose unit steepest-ascent direction the steps follow (sign for linf,
            normalised gradient for l2).
        ball: after each step (and the box), project onto this ball of radius ``eps`` around ``x``,
            then clip to [0, 1] again; ``None``: only the box.
        descend: step against the gradient (minimise the objective).
        keep_best: per example, keep the iterate of best objective: each iterate is judged by the
            value computed for its gradient, and the last one by one more evaluation (the robustness
            library's ``use_best``); ties keep the earlier one.
        best: with ``keep_best``, the incumbent ``(images, values)`` to beat; default ``x_start``
            with a value of -inf (ascent) or +inf (descent).
        schedule: step-size schedule, one of :data:`SCHEDULES`.

    Returns:
        The last iterate, or with ``keep_best`` the pair ``(best images, their objective values)``.
    """
    if keep_best and best is None:
        worst = float("inf") if descend else float("-inf")
        best = (x_start, tf.fill(tf.shape(x_start)[:1], worst))

    def one_step(i, carry):
        x_adv = carry[0]
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            value = objective(x_adv)
            total = tf.reduce_sum(value)
        grad = tape.gradient(total, x_adv)
        kept = _keep_better(*carry[1:], x_adv, value, descend) if keep_best else ()
        step = step_size if schedule == "constant" else step_size * _step_scale(i, steps, schedule)
        move = step * direction.ascent_direction(grad)
        x_adv = tf.clip_by_value(x_adv - move if descend else x_adv + move, 0.0, 1.0)
        if ball is not None:
            # Box first, then the ball: the projection of a point of the box stays in the box (the
            # segment to x is), and unlike ball-then-box it lands on the l2 sphere, which is
            # stronger (identical for linf, where the two commute).
            x_adv = tf.clip_by_value(x + ball.project(x_adv - x, eps), 0.0, 1.0)
        return (x_adv, *kept)

    # The iterate, and with keep_best the incumbent images and values (one loop-carried tuple).
    carry = (x_start, *best) if keep_best else (x_start,)
    for i in (range(steps) if isinstance(steps, int) else tf.range(steps)):
        carry = one_step(i, carry)
    if keep_best:
        return _keep_better(carry[1], carry[2], carry[0], objective(carry[0]), descend)
    return carry[0]


def _keep_better(best_x, best_value, x_new, value, descend: bool):
    """Per example, ``x_new`` where its value is strictly better than the incumbent's."""
    better = value < best_value if descend else value > best_value
    return tf.where(better[:, None, None, None], x_new, best_x), tf.where(better, value, best_value)


def _pgd_once(model, x, label, eps, alpha, steps, seed, norm, targeted, random_init, schedule):
    """One PGD run from one start point."""
    if random_init:
        noise = threats.random_start(tf.shape(x), eps, norm, seed, threats.start_mask(model))
        x_adv = tf.clip_by_value(x + noise, 0.0, 1.0)
    else:
        x_adv = tf.identity(x)
    ball = threats.ball(norm)
    return gradient_steps(lambda images: _objective(model, images, label, targeted)[0], x_adv, steps, alpha,
                          direction=ball, ball=ball, x=x, eps=eps, schedule=schedule)


def _pgd_restarts(model, x, label, eps, alpha, steps, restarts, seed, norm, targeted, random_init, schedule):
    """Runs ``restarts`` PGD runs; keeps per example a successful one, else the highest loss."""
    best = tf.identity(x)
    best_loss = tf.fill(tf.shape(label), float("-inf"))
    best_success = tf.zeros(tf.shape(label), tf.bool)
    for r in tf.range(restarts):
        run_seed = tf.random.experimental.stateless_fold_in(seed, r)
        x_adv = _pgd_once(model, x, label, eps, alpha, steps, run_seed, norm, targeted, random_init, schedule)
        loss, logits = _objective(model, x_adv, label, targeted)
        success = succeeded(logits, label, targeted)
        better = (success & ~best_success) | ((success == best_success) & (loss > best_loss))
        best = tf.where(better[:, None, None, None], x_adv, best)
        best_loss = tf.where(better, loss, best_loss)
        best_success = best_success | success
    return best


def _pgd_single(model, x, label, eps, alpha, steps, restarts, seed, norm, targeted, random_init, schedule):
    """One run: no restart selection, so no extra forward pass (same examples as restart 0)."""
    del restarts
    run_seed = tf.random.experimental.stateless_fold_in(seed, 0)
    return _pgd_once(model, x, label, eps, alpha, steps, run_seed, norm, targeted, random_init, schedule)


_compiled = tf.function(_pgd_restarts, reduce_retracing=True)
_compiled_xla = tf.function(_pgd_restarts, reduce_retracing=True, jit_compile=True)
_single = tf.function(_pgd_single, reduce_retracing=True)
_single_xla = tf.function(_pgd_single, reduce_retracing=True, jit_compile=True)


def attack_label(y, target, targeted: bool):
    """The label an attack works on: ``target`` when targeted (required then), else ``y``."""
    if targeted and target is None:
        raise ValueError("a targeted attack needs target labels")
    return tf.cast(target if targeted else y, tf.int32)


@register_attack("pgd", norms=("linf", "l2"), default_steps=20,
                 summary="Projected gradient descent (Madry et al. 2018): random start, restarts, step schedules.")
def pgd(model, x, y, threat: Threat, *, targeted: bool = False, target=None, seed=None, jit: bool = False,
        schedule: str = "constant"):
    """PGD adversarial examples inside ``threat``'s ball and [0, 1].

    Args:
        model: Keras model mapping [0, 1] images to logits; called with ``training=False``.
        x: images (B, H, W, C), float32 in [0, 1].
        y: true labels (B,) (untargeted: the attack moves away from them).
        threat: norm, eps, steps, step size, restarts, random start.
        targeted: descend the cross-entropy of ``target`` instead.
        target: target labels (B,), required when ``targeted``.
        seed: stateless seed: an int tensor of shape (2,), or a plain int ``s`` (the same as
            ``[s, 0]``); random when ``None``.
        jit: compile with XLA (slower on CPU, faster on GPU).
        schedule: step-size schedule over the steps: ``constant``, ``cosine`` (half-cosine decay
            to 0) or ``linear`` (decay to step_size/steps).

    Returns:
        x_adv with ``||x_adv - x|| <= eps`` in ``threat.norm`` and ``x_adv`` in [0, 1].
    """
    if threat.norm not in ("linf", "l2"):
        raise UserError(f"pgd supports --norm linf or l2 (got {threat.norm})")
    if schedule not in SCHEDULES:
        raise UserError(f"unknown step schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")
    x = tf.convert_to_tensor(x, tf.float32)
    label = attack_label(y, target, targeted)
    if int(threat.restarts) == 1:
        fn = _single_xla if jit else _single
    else:
        fn = _compiled_xla if jit else _compiled
    steps = int(threat.steps)
    return fn(
        model, x, label,
        tf.constant(threat.eps, tf.float32), tf.constant(threat.alpha, tf.float32),
        steps if steps <= UNROLL_MAX_STEPS else tf.constant(steps), tf.constant(int(threat.restarts)),
        as_seed(seed), threat.norm, bool(targeted), bool(threat.random_start), schedule,
    )


@register_attack("fgsm", norms=("linf", "l2"), default_steps=1,
                 summary="Fast gradient sign method (Goodfellow et al. 2015): one step of size eps (FGM for l2).")
def fgsm(model, x, y, threat: Threat, *, targeted: bool = False, target=None, seed=None, jit: bool = False):
    """Fast gradient (sign) method: one step of size eps from x (FGM for l2)."""
    one_step = dataclasses.replace(threat, steps=1, step_size=threat.eps, restarts=1, random_start=False)
    return pgd(model, x, y, one_step, targeted=targeted, target=target, seed=seed, jit=jit)


@register_attack("ifgsm", norms=("linf", "l2"),
                 summary="Iterative FGSM (Kurakin et al. 2017): no random start, step eps/steps unless given.")
def ifgsm(model, x, y, threat: Threat, *, targeted: bool = False, target=None, seed=None, jit: bool = False):
    """I-FGSM / basic iterative method: ``steps`` sign steps from x, clipped to the ball and [0, 1].

    The step size defaults to eps/steps (Kurakin et al.'s ``min(eps + 4, 1.25 eps)`` iteration count
    convention is left to ``threat.steps``); there is no random start and no restart.
    """
    step = threat.step_size if threat.step_size is not None else threat.eps / int(threat.steps)
    basic = dataclasses.replace(threat, step_size=step, restarts=1, random_start=False)
    return pgd(model, x, y, basic, targeted=targeted, target=target, seed=seed, jit=jit)


def fast_fgsm(model, x, y, threat: Threat, *, targeted: bool = False, target=None, seed=None, jit: bool = False):
    """FGSM with random start and step 1.25 eps, the "fast" training attack of Wong et al. (2020)."""
    one_step = dataclasses.replace(
        threat, steps=1, step_size=1.25 * threat.eps, restarts=1, random_start=True
    )
    return pgd(model, x, y, one_step, targeted=targeted, target=target, seed=seed, jit=jit)
