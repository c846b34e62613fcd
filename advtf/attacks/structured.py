"""Structured adversarial attack (Str-attack; Xu et al., ICLR 2019), with an l-infinity budget.

Xu, Liu, Zhao, Chen, Zhang, Fan, Erdogmus, Wang & Lin, "Structured Adversarial Attack: Towards
General Implementation and Better Interpretability", ICLR 2019. The variant here is the one the CAM
interpretability paper (Xu et al. 2019, Appendix 1, Eq. 9-10) uses: problem (9) with the C&W loss
(10), the group-lasso regulariser ``g`` and the hard constraint ``||delta||_inf <= eps``::

    minimise_delta   c * f(x + delta) + gamma * sum_G ||delta_G||_2 + l2_weight * ||delta||_2^2
    subject to       x + delta in [0, 1]^n,  ||delta||_inf <= eps

    f(x') = max(Z(x')_label - max_{j != label} Z(x')_j + kappa, 0)      (untargeted)
    f(x') = max(max_{j != t} Z(x')_j - Z(x')_t + kappa, 0)              (targeted at t)

The groups ``G`` are non-overlapping ``group_size x group_size`` spatial windows spanning all
channels (images whose side is not a multiple of ``group_size`` get smaller groups at the border).

It is solved by linearised ADMM (Str-attack paper, Sec. 3 and Eq. 10-18): the splitting
``delta = z``, ``w = z``, ``y = z`` with scaled duals ``u``, ``s``, ``v`` gives the iteration

* delta step (Eq. 10, ridge prox):      ``delta = rho / (rho + 2 l2_weight) * (z - u)``
* w step (Eq. 11, box and l-inf ball):  ``w = clip(z - s, max(-eps, -x), min(eps, 1 - x))``
* y step (Eq. 17, group soft-threshold): ``y_G = max(0, 1 - gamma / (rho ||(z - v)_G||)) (z - v)_G``
* z step (Eq. 18, linearised loss):
  ``z = (eta_t z + rho (delta + u + w + s + y + v) - c grad f(x + z)) / (eta_t + 3 rho)``
  with ``eta_t = alpha sqrt(t)``, then z clipped to the feasible set
* dual ascent:                          ``u += delta - z``, ``s += w - z``, ``v += y - z``

and the constant ``c`` is set per example by C&W's binary search (times 5 until a first success,
as in the reference implementation). The candidate of every iteration is the group-sparse ``y``
clipped to the feasible set (elementwise clipping keeps zero groups zero and never increases a group
norm); per example the successful candidate with the smallest group lasso ``sum_G ||delta_G||_2``
over all iterations and constants is returned, else the last candidate.

Differences from the authors' code (KaidiXu/StrAttack): the z step weighs the three splittings
equally (the exact minimiser of the linearised augmented Lagrangian; the authors' code counts the
delta term twice); z and the candidate are clipped to the feasible set; the best example is chosen by
group lasso rather than l2; border pixels form smaller groups instead of being left unpenalised;
overlapping groups and the optional "retrain" refinement (re-optimising on the support found, with
the group penalty dropped) are not implemented.

The binary search and the ADMM iterations are one compiled :func:`tf.function` (the iterations
``UNROLL`` per while-loop iteration, :func:`advtf.attacks.loops.blocked_loop`); every number except
``group_size`` (which fixes reshapes) is a tensor, so sweeping eps, gamma or rho never retraces.
"""

from __future__ import annotations

import functools

import tensorflow as tf

from advtf.attacks.cw import bisect_const
from advtf.attacks.iterative import attack_label
from advtf.attacks.loops import UNROLL, blocked_loop
from advtf.attacks.losses import margin, succeeded
from advtf.attacks.registry import register_attack
from advtf.attacks.threat import L0_TOLERANCE, Threat, as_seed, clip_to_threat
from advtf.errors import UserError

_UNBOUNDED = 1e10  # C&W's "no upper bound on c yet" (the initial upper bound of bisect_const)


def _dims(t: tf.Tensor) -> list:
    """Shape of ``t``: Python ints where static, scalar tensors where not (keeps shapes inferable)."""
    dynamic = tf.shape(t)
    return [d if d is not None else dynamic[i] for i, d in enumerate(t.shape)]


def _as_groups(delta: tf.Tensor, group_size: int) -> tf.Tensor:
    """``delta`` (B, H, W, C) zero-padded to multiples of ``group_size`` and reshaped so that axis
    pairs (1, 2) and (3, 4) index (group row, row within group) and (group column, column within
    group): shape (B, ceil(H/g), g, ceil(W/g), g, C)."""
    g = int(group_size)
    b, h, w, c = _dims(delta)
    pad_h, pad_w = (-h) % g, (-w) % g
    padded = tf.pad(delta, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
    return tf.reshape(padded, [b, (h + pad_h) // g, g, (w + pad_w) // g, g, c])


def group_norms(delta, group_size: int = 2) -> tf.Tensor:
    """l2 norm of every ``group_size x group_size`` spatial group (all channels together).

    Groups tile the image without overlap from the top-left corner; when a side is not a multiple of
    ``group_size`` the last row/column of groups is smaller (zero padding does not change a norm).

    Args:
        delta: perturbations (B, H, W, C).
        group_size: side of the square groups, >= 1.

    Returns:
        (B, ceil(H / group_size), ceil(W / group_size)) float32 tensor of group l2 norms.
    """
    if int(group_size) < 1:
        raise UserError(f"group_size must be >= 1 (got {group_size})")
    delta = tf.convert_to_tensor(delta, tf.float32)
    return tf.sqrt(tf.reduce_sum(tf.square(_as_groups(delta, group_size)), axis=[2, 4, 5]))


def group_lasso(delta, group_size: int = 2) -> tf.Tensor:
    """Per-example group lasso ``sum_G ||delta_G||_2`` (the Str-attack regulariser), shape (B,)."""
    return tf.reduce_sum(group_norms(delta, group_size), axis=[1, 2])


def nonzero_groups(delta, group_size: int = 2, tol: float = L0_TOLERANCE) -> tf.Tensor:
    """Per-example number of groups whose l2 norm exceeds ``tol`` (group-level l0), shape (B,) int32."""
    return tf.reduce_sum(tf.cast(group_norms(delta, group_size) > tol, tf.int32), axis=[1, 2])


def _group_shrink(a: tf.Tensor, threshold: tf.Tensor, group_size: int) -> tf.Tensor:
    """Proximal operator of ``threshold * sum_G ||.||_2``: group soft-thresholding (Eq. 17)."""
    b, h, w, c = _dims(a)
    groups = _as_groups(a, group_size)
    norms = tf.sqrt(tf.reduce_sum(tf.square(groups), axis=[2, 4, 5], keepdims=True))
    scale = tf.maximum(1.0 - threshold / tf.maximum(norms, 1e-12), 0.0)
    padded = tf.reshape(groups * scale, [b, _dims(groups)[1] * group_size, _dims(groups)[3] * group_size, c])
    return padded[:, :h, :w, :]


def _score(model, x_adv, label, targeted: bool):
    """Per-example "how adversarial" (>= kappa is a success with confidence kappa), and logits."""
    logits = model(x_adv, training=False)
    m = margin(logits, label)
    return (m if targeted else -m), logits


def admm_iteration(model, x, label, state, t, const, lo, hi, gamma, rho, l2_weight, alpha, confidence,
                   group_size: int, targeted: bool):
    """One linearised ADMM iteration (module docstring; Str-attack paper, Eq. 10, 11, 17, 18, duals).

    Args:
        state: ``(z, u, s, v)``, the split variable and the three scaled duals, each (B, H, W, C).
        t: 0-based iteration index (``eta = alpha * sqrt(t + 1)``).
        const: (B,) loss constants ``c``; ``lo``, ``hi``: feasible bounds of delta (box and l-inf ball).
        gamma, rho, l2_weight, alpha, confidence: as in :func:`str_attack`.

    Returns:
        ``((z, u, s, v), y)``: the next state and the group-sparse ``y`` of this iteration.
    """
    z, u, s, v = state
    with tf.GradientTape() as tape:
        tape.watch(z)
        score, _ = _score(model, x + z, label, targeted)
        loss = tf.reduce_sum(const * tf.nn.relu(confidence - score))
    grad = tape.gradient(loss, z)
    delta = rho / (rho + 2.0 * l2_weight) * (z - u)          # Eq. 10
    w = tf.clip_by_value(z - s, lo, hi)                       # Eq. 11
    y = _group_shrink(z - v, gamma / rho, group_size)         # Eq. 17
    eta = alpha * tf.sqrt(tf.cast(t + 1, tf.float32))
    z = (eta * z + rho * (delta + u + w + s + y + v) - grad) / (eta + 3.0 * rho)  # Eq. 18
    z = tf.clip_by_value(z, lo, hi)
    return (z, u + delta - z, s + w - z, v + y - z), y


def _str_attack(model, x, label, eps, gamma, rho, l2_weight, alpha, confidence, initial_const,
                steps, search_steps, group_size, targeted, unroll: int = UNROLL):
    """Binary search over c around ``steps`` linearised-ADMM iterations; see the module docstring."""
    batch = _dims(x)[0]
    lo = tf.maximum(-eps, -x)  # feasible set of delta: box [0, 1] and the l-inf ball
    hi = tf.minimum(eps, 1.0 - x)
    const = tf.fill([batch], initial_const)
    lower = tf.zeros([batch])
    upper = tf.fill([batch], _UNBOUNDED)
    best = tf.zeros_like(x)
    best_norm = tf.fill([batch], float("inf"))
    last = tf.zeros_like(x)

    def iteration(const, t, state):
        """One ADMM iteration ``t`` for this ``c``; keeps the best feasible group-sparse candidate."""
        z, u, s, v, best, best_norm, found, last = state
        (z, u, s, v), y = admm_iteration(model, x, label, (z, u, s, v), t, const, lo, hi, gamma, rho,
                                         l2_weight, alpha, confidence, group_size, targeted)
        # The candidate: group-sparse y made feasible.
        candidate = tf.clip_by_value(y, lo, hi)
        score, logits = _score(model, x + candidate, label, targeted)
        success = succeeded(logits, label, targeted) & (score >= confidence)
        norm = group_lasso(candidate, group_size)
        better = success & (norm < best_norm)
        best = tf.where(better[:, None, None, None], candidate, best)
        best_norm = tf.where(better, norm, best_norm)
        return z, u, s, v, best, best_norm, found | success, candidate

    for _ in tf.range(search_steps):
        zeros = tf.zeros_like(x)
        state = (zeros, zeros, zeros, zeros, best, best_norm, tf.zeros([batch], tf.bool), last)
        _, _, _, _, best, best_norm, found, last = blocked_loop(
            steps, functools.partial(iteration, const), state, unroll)
        # C&W's binary search on c (times 5 before the first success, as in the reference code).
        const, lower, upper = bisect_const(const, lower, upper, found, grow=5.0)
    delta = tf.where(tf.math.is_finite(best_norm)[:, None, None, None], best, last)
    return clip_to_threat(x, x + delta, eps, "linf")


_compiled = tf.function(_str_attack, reduce_retracing=True)
_compiled_xla = tf.function(_str_attack, reduce_retracing=True, jit_compile=True)


@register_attack("str", norms=("linf",), default_steps=100,
                 summary="Structured attack (Xu et al. 2019): group-lasso sparse perturbations by ADMM, l-inf bound.")
def str_attack(model, x, y, threat: Threat, *, targeted: bool = False, target=None, seed=None, jit: bool = False,
               group_size: int = 2, gamma: float = 1.0, rho: float = 1.0, l2_weight: float = 1.0,
               alpha: float = 5.0, confidence: float = 0.0, initial_const: float = 1.0, search_steps: int = 5):
    """Str-attack adversarial examples with ``||x_adv - x||_inf <= threat.eps`` and ``x_adv`` in [0, 1].

    Minimises C&W's loss (Xu et al. 2019, Appendix 1, Eq. 10) plus the group lasso over
    non-overlapping ``group_size x group_size`` windows, subject to the l-inf ball and the box
    (Eq. 9), by linearised ADMM (Str-attack paper, Eq. 10-18), with a binary search over ``c``.

    Args:
        model: Keras model mapping [0, 1] images to logits; called with ``training=False``.
        x: images (B, H, W, C), float32 in [0, 1].
        y: true labels (B,).
        threat: ``norm`` must be ``linf``; ``eps`` is the l-inf budget; ``steps`` is the number of
            ADMM iterations per binary-search step. Step size, restarts and random start are unused
            (the attack is deterministic and starts from zero).
        targeted: reach ``target`` instead of leaving ``y``.
        target: target labels (B,), required when ``targeted``.
        seed: accepted (an int or a (2,) tensor) for the common interface; unused (deterministic).
        jit: compile with XLA.
        group_size: side of the square spatial groups (all channels in one group).
        gamma: weight of the group lasso (the paper's tau); larger gives fewer perturbed groups.
        rho: ADMM penalty parameter.
        l2_weight: weight of the squared l2 term on delta (the paper's gamma).
        alpha: proximal weight of the linearised z step, ``eta_t = alpha * sqrt(t)`` (Eq. 18).
        confidence: C&W's kappa: success needs a margin of at least this.
        initial_const: first value of the loss constant ``c``.
        search_steps: binary-search steps over ``c``.

    Returns:
        x_adv (B, H, W, C) float32: per example the successful iterate with the smallest group
        lasso, else the last iterate, always inside the l-inf ball and [0, 1].

    Raises:
        UserError: another norm, or an invalid option.
    """
    as_seed(seed)  # unused (deterministic), but checked as in every attack
    if threat.norm != "linf":
        raise UserError(f"str supports --norm linf only (got {threat.norm})")
    if int(group_size) < 1:
        raise UserError(f"option group_size of str must be >= 1 (got {group_size})")
    if int(search_steps) < 1:
        raise UserError(f"option search_steps of str must be >= 1 (got {search_steps})")
    for name, value in (("gamma", gamma), ("l2_weight", l2_weight), ("alpha", alpha), ("confidence", confidence)):
        if not float(value) >= 0:
            raise UserError(f"option {name} of str must be >= 0 (got {value})")
    for name, value in (("rho", rho), ("initial_const", initial_const)):
        if not float(value) > 0:
            raise UserError(f"option {name} of str must be > 0 (got {value})")
    x = tf.convert_to_tensor(x, tf.float32)
    label = attack_label(y, target, targeted)
    fn = _compiled_xla if jit else _compiled
    f32 = lambda v: tf.constant(float(v), tf.float32)  # noqa: E731
    return fn(model, x, label, tf.cast(threat.eps, tf.float32), f32(gamma), f32(rho), f32(l2_weight),
              f32(alpha), f32(confidence), f32(initial_const), tf.constant(int(threat.steps)),
              tf.constant(int(search_steps)), int(group_size), bool(targeted))
