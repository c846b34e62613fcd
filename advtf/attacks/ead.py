"""EAD, the elastic-net attack (Chen et al. 2018, "EAD: elastic-net attacks to deep neural networks
via adversarial examples", Algorithm 1), the EAD of Xu et al. (2019), Appendix 1, Eqs. (9)-(10).

EAD minimises ``c * f(x') + ||x' - x||_2^2 + beta * ||x' - x||_1`` over the box by (F)ISTA with
the projected shrinkage-thresholding operator, and searches ``c`` per example by bisection like
C&W. Both loops are one compiled function, state held in tensors; the (F)ISTA iterations run
``UNROLL`` per while-loop iteration (:func:`advtf.attacks.loops.blocked_loop`).
"""

from __future__ import annotations

import functools

import tensorflow as tf

from advtf.attacks import threat as threats
from advtf.attacks.cw import (NO_UPPER, agree_batch, bisect_const, check_search_options, logit_loss, per_example,
                              succeeded_with_confidence)
from advtf.attacks.iterative import attack_label
from advtf.attacks.loops import UNROLL, blocked_loop
from advtf.attacks.registry import register_attack
from advtf.attacks.threat import Threat
from advtf.errors import UserError

DECISION_RULES = ("en", "l1")
_INF = float("inf")


def shrinkage_threshold(z, x, beta):
    """EAD's projected shrinkage-thresholding operator S_beta (Chen et al. 2018, Eq. 7).

    Per pixel: ``min(z - beta, 1)`` where ``z - x > beta``, ``x`` where ``|z - x| <= beta``,
    ``max(z + beta, 0)`` where ``z - x < -beta``: soft-thresholding of the perturbation at
    ``beta``, then projection onto [0, 1].
    """
    diff = z - x
    up = tf.minimum(z - beta, 1.0)
    down = tf.maximum(z + beta, 0.0)
    return tf.where(diff > beta, up, tf.where(diff < -beta, down, x))


def _ead(model, x, label, eps, steps, search_steps, initial_const, confidence, lr, beta,
         norm, targeted, decision_rule, fista, unroll: int = UNROLL):
    x, label = agree_batch(x, label)
    rank = len(x.shape)
    axes = list(range(1, rank))
    ones = tf.ones_like(label, tf.float32)  # (B,) with the static shape of the batch
    steps_f = tf.cast(steps, tf.float32)

    def track(x_k, logits, best, best_dist, step_success):
        """Keeps per example the successful iterate with the smallest decision-rule distance
        among those inside the eps-ball of ``norm``."""
        _, signed = logit_loss(logits, label, confidence, targeted)
        success = succeeded_with_confidence(signed, confidence)
        delta = x_k - x
        l1 = tf.reduce_sum(tf.abs(delta), axis=axes)
        dist = l1 if decision_rule == "l1" else tf.reduce_sum(tf.square(delta), axis=axes) + beta * l1
        improve = success & (threats.per_example_norm(delta, norm) <= eps) & (dist < best_dist)
        best = tf.where(per_example(improve, rank), x_k, best)
        best_dist = tf.where(improve, dist, best_dist)
        return best, best_dist, step_success | success

    const = initial_const * ones
    lower = tf.zeros_like(ones)
    upper = NO_UPPER * ones
    best = tf.identity(x)
    best_dist = _INF * ones
    x_k = tf.identity(x)

    def fista_iteration(const, k, state):
        """One (F)ISTA iteration ``k`` for this ``c``, tracking the best iterate."""
        x_k, y_k, best, best_dist, step_success = state
        kf = tf.cast(k, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(y_k)
            logits_y = model(y_k, training=False)
            f, _ = logit_loss(logits_y, label, confidence, targeted)
            total = tf.reduce_sum(const * f + tf.reduce_sum(tf.square(y_k - x), axis=axes))
        grad = tape.gradient(total, y_k)
        # The iterate x_k itself is what may be returned; with ISTA it is the point y_k.
        logits_x = model(x_k, training=False) if fista else logits_y
        best, best_dist, step_success = track(x_k, logits_x, best, best_dist, step_success)
        # Square-root decay of the step size to 0 (the EAD code's polynomial decay, power 0.5).
        alpha = lr * tf.sqrt(1.0 - kf / steps_f)
        x_next = shrinkage_threshold(y_k - alpha * grad, x, beta)
        if fista:
            y_k = x_next + kf / (kf + 3.0) * (x_next - x_k)
        else:
            y_k = x_next
        return x_next, y_k, best, best_dist, step_success

    for _ in tf.range(search_steps):
        state = (tf.identity(x), tf.identity(x), best, best_dist, tf.zeros_like(label, tf.bool))
        x_k, _, best, best_dist, step_success = blocked_loop(
            steps, functools.partial(fista_iteration, const), state, unroll)
        logits = model(x_k, training=False)
        best, best_dist, step_success = track(x_k, logits, best, best_dist, step_success)
        const, lower, upper = bisect_const(const, lower, upper, step_success)

    found = per_example(tf.math.is_finite(best_dist), rank)
    return tf.where(found, best, x_k)


_compiled = tf.function(_ead, reduce_retracing=True)
_compiled_xla = tf.function(_ead, reduce_retracing=True, jit_compile=True)


@register_attack("ead", norms=("l1", "l2"), default_steps=100,
                 summary="Elastic-net attack EAD (Chen et al. 2018): (F)ISTA with shrinkage, binary search on c; "
                         "sparse l1 perturbations within eps.")
def ead(model, x, y, threat: Threat, *, targeted: bool = False, target=None, seed=None, jit: bool = False,
        beta: float = 1e-2, confidence: float = 0.0, initial_const: float = 1e-2, search_steps: int = 5,
        lr: float = 1e-2, decision_rule: str = "en", fista: bool = True):
    """EAD, the elastic-net attack (Chen et al. 2018, Algorithm 1; Xu et al. 2019, Appendix 1).

    Minimises ``c * f(x') + ||x' - x||_2^2 + beta * ||x' - x||_1`` over x' in [0, 1], with C&W's
    logit loss ``f(x') = max(Z_y - max_{j!=y} Z_j, -kappa)`` (untargeted; targeted:
    ``max(max_{j!=t} Z_j - Z_t, -kappa)``). Each of ``threat.steps`` iterations takes a gradient
    step on the smooth part ``c * f + ||delta||_2^2`` at the point ``y_k`` with step size
    ``lr * sqrt(1 - k / steps)``, then applies the projected shrinkage-thresholding operator
    ``S_beta`` (Eq. 7: soft-threshold the perturbation at beta, clip to [0, 1]); with FISTA,
    ``y_{k+1} = x_{k+1} + k / (k + 3) * (x_{k+1} - x_k)``. ``c`` is bisected per example over
    ``search_steps`` values, as in C&W.

    EAD is a minimum-norm attack; here ``threat.eps`` is a hard budget on its result in
    ``threat.norm`` (l1, EAD's natural one, or l2). Among all iterates of all ``c`` values, the
    successful one inside the eps-ball with the smallest decision-rule distance is returned
    (``"en"``: ``||delta||_2^2 + beta ||delta||_1``; ``"l1"``: ``||delta||_1``); an example without
    one gets the last iterate of the last ``c``, and every result is finally moved into the
    eps-ball and [0, 1] (:func:`~advtf.attacks.threat.clip_to_threat`). ``threat.step_size``,
    ``restarts`` and ``random_start`` are not used (``seed`` is ignored: the attack is
    deterministic).

    Args:
        model: Keras model mapping [0, 1] images to logits; called with ``training=False``.
        x: images (B, H, W, C), float32 in [0, 1].
        y: true labels (B,).
        threat: ``norm`` ``"l1"`` or ``"l2"`` and ``eps``, the budget; ``steps`` the (F)ISTA
            iterations per binary-search step.
        targeted: reach ``target`` (success: prediction == target) instead of leaving ``y``.
        target: target labels (B,), required when ``targeted``.
        seed: ignored (deterministic attack); accepted (an int or a (2,) tensor) for the common interface.
        jit: compile with XLA.
        beta: weight of the l1 term (the shrinkage threshold), >= 0; 0 gives a box-constrained
            C&W-L2-like attack.
        confidence: kappa, the logit margin a success must have (>= 0).
        initial_const: first value of the trade-off constant ``c``.
        search_steps: binary-search steps over ``c`` (each runs ``threat.steps`` iterations).
        lr: initial step size, decayed as ``lr * sqrt(1 - k / steps)``.
        decision_rule: ``"en"`` (elastic-net distance) or ``"l1"``: which distance picks the
            best adversarial example.
        fista: FISTA momentum (Beck & Teboulle 2009); False runs plain ISTA.

    Returns:
        x_adv (float32, shaped like x) with ``||x_adv - x|| <= eps`` in ``threat.norm`` and
        ``x_adv`` in [0, 1].

    Raises:
        UserError: an unsupported norm or invalid option values.
        ValueError: ``targeted`` without ``target``.
    """
    if threat.norm not in ("l1", "l2"):
        raise UserError(f"ead supports --norm l1 or l2 (got {threat.norm})")
    if decision_rule not in DECISION_RULES:
        raise UserError(f"ead: unknown decision_rule {decision_rule!r}; choose one of: {', '.join(DECISION_RULES)}")
    if not beta >= 0:
        raise UserError(f"ead: beta must be >= 0 (got {beta}); pass e.g. -O beta=0.01")
    check_search_options("ead", confidence=confidence, initial_const=initial_const,
                         search_steps=search_steps, lr=lr)
    threats.as_seed(seed)  # unused (deterministic), but checked as in every attack
    x = tf.convert_to_tensor(x, tf.float32)
    label = attack_label(y, target, targeted)
    eps = tf.constant(threat.eps, tf.float32)
    fn = _compiled_xla if jit else _compiled
    x_adv = fn(
        model, x, label, eps, tf.constant(int(threat.steps)), tf.constant(int(search_steps)),
        tf.constant(float(initial_const), tf.float32), tf.constant(float(confidence), tf.float32),
        tf.constant(float(lr), tf.float32), tf.constant(float(beta), tf.float32),
        threat.norm, bool(targeted), str(decision_rule), bool(fista),
    )
    return threats.clip_to_threat(x, x_adv, eps, threat.norm)
