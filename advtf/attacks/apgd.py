"""Auto-PGD (APGD) and a light AutoAttack: step-size-free PGD with momentum and restarts.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020 (arXiv:2003.01690). Equation numbers below are the paper's:

* Eq. 2 (the APGD update): ``z = P(x_k + eta * grad)``;
  ``x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1}))`` with ``alpha = 0.75`` and a
  plain gradient step first (Algorithm 1, line 3). For linf the gradient is replaced by its sign,
  for l2 by the unit-l2 gradient; ``P`` projects onto the ball and the [0, 1] box.
* Checkpoints (Sec. 3.2): ``w_j = ceil(p_j N)`` with ``p_0 = 0``, ``p_1 = 0.22`` and
  ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``; the step size starts at ``2 eps``.
* Eq. 3, condition 1: fewer than ``rho (w_j - w_{j-1})`` of the steps since the last checkpoint
  increased the objective, ``rho = 0.75``.
* Eq. 4, condition 2: the step size was not halved at the last checkpoint and the best objective
  did not improve since then.
  When either holds, the step size halves and the iterate restarts from the best point found.
* Eq. 6 (DLR) and Eq. 7 (targeted DLR) are :func:`advtf.attacks.losses.dlr` and
  :func:`advtf.attacks.losses.dlr_targeted`; APGD-T runs targeted DLR against the top
  non-true classes in turn (Sec. 4).

Registered attacks: ``apgd-ce``, ``apgd-dlr`` (APGD-T) and ``autoattack-lite`` (APGD-CE then
APGD-T, the worst case per example). Everything -- restarts, targets and iterations -- runs in
one compiled graph per call; eps, steps, restarts, ``rho`` and momentum are tensors, and the
checkpoint schedule is computed from the ``steps`` tensor inside the loop, so changing them
never retraces.

Without ``jit``, later restarts, targets and the second attack of the ensemble run only on the
examples still robust (a boolean mask compacts the batch inside the graph, as the reference
implementation does); XLA needs static shapes, so with ``jit`` every run covers the whole batch
and the results are selected per example instead. Both give the same kind of result; only the
random starts differ.
"""

from __future__ import annotations

import tensorflow as tf

from advtf.attacks import threat as threats
from advtf.attacks.iterative import as_seed, attack_label
from advtf.attacks.loops import UNROLL, blocked_loop
from advtf.attacks.losses import cross_entropy, dlr_targeted, predictions
from advtf.attacks.registry import register_attack
from advtf.attacks.threat import Threat
from advtf.errors import UserError

# Checkpoints in percent of the iterations (integers, so ceil(p_j N) is exact): p_1 = 22 and the
# first increment p_2 - p_1 = max(22 - 0 - 3, 6) = 19.
_P1, _D1, _DECAY, _MIN_GAP = 22, 19, 3, 6
_TINY = 1e-12


# ---------------------------------------------------------------------------------------------
# Checkpoint schedule (Sec. 3.2)


def _checkpoint_at(p, steps):
    """``w = ceil(p * N / 100)`` for a checkpoint at ``p`` percent of ``N`` iterations."""
    return (p * steps + 99) // 100


def _advance_checkpoint(p, d, done, steps):
    """Moves ``(p_j, p_{j+1} - p_j)`` past ``done`` iterations.

    ``p_{j+1} = p_j + d_j`` and ``d_{j+1} = max(d_j - 3, 6)`` (percent) is the paper's
    ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``. For few iterations ceil can map two
    ``p_j`` to the same iteration; the loop skips such empty intervals.
    """
    return tf.while_loop(
        lambda p, d: _checkpoint_at(p, steps) <= done,
        lambda p, d: (p + d, tf.maximum(d - _DECAY, _MIN_GAP)),
        (p, d),
    )


def checkpoint_schedule(steps: int) -> list[int]:
    """The iterations ``w_0 = 0 < w_1 < ...`` after which APGD may halve its step size.

    Computed with the same graph ops the attack uses, e.g. ``[0, 22, 41, 57, 70, 80, 87, 93, 99]``
    for 100 iterations.
    """
    n = tf.constant(int(steps))
    p, d = tf.constant(_P1), tf.constant(_D1)
    out = [0]
    for done in range(1, int(steps) + 1):
        if int(_checkpoint_at(p, n)) == done:
            out.append(done)
        p, d = _advance_checkpoint(p, d, tf.constant(done), n)
    return out


# ---------------------------------------------------------------------------------------------
# One APGD run (Algorithm 1)


def _objective(model, x, y, target, loss: str, targeted: bool):
    """Per-example objective APGD ascends, and the logits.

    ``ce``: cross-entropy of ``y`` (untargeted) or minus that of ``target`` (targeted);
    ``dlr-targeted``: Eq. 7 with true label ``y`` and ``target``.
    """
    logits = model(x, training=False)
    if loss == "ce":
        value = -cross_entropy(logits, target) if targeted else cross_entropy(logits, y)
    else:
        value = dlr_targeted(logits, y, target)
    return value, logits


def _success(logits, y, target, targeted: bool):
    """Targeted: predicted ``target``; untargeted (APGD-T included): prediction != ``y``."""
    pred = predictions(logits)
    return tf.equal(pred, target) if targeted else tf.not_equal(pred, y)


def _value_and_grad(model, x_adv, y, target, loss, targeted):
    with tf.GradientTape() as tape:
        tape.watch(x_adv)
        value, logits = _objective(model, x_adv, y, target, loss, targeted)
        total = tf.reduce_sum(tf.where(tf.math.is_finite(value), value, tf.zeros_like(value)))
    grad = tape.gradient(total, x_adv)
    grad = tf.where(tf.math.is_finite(grad), grad, tf.zeros_like(grad))
    return value, logits, grad


def _direction(grad, norm: str):
    """The ball's steepest ascent (sign for linf, unit-l2 gradient); where that squares the gradient,
    rescaled first so huge DLR gradients cannot overflow."""
    ball = threats.ball(norm)
    if not ball.squares_gradient:
        return ball.ascent_direction(grad)
    axes = list(range(1, len(grad.shape)))
    scale = tf.reduce_max(tf.abs(grad), axis=axes, keepdims=True)
    return ball.ascent_direction(grad / (scale + _TINY))


def _in_threat(x, point, eps, norm):
    """``P``: projection onto the ``eps``-ball around ``x``, then onto the [0, 1] box."""
    return tf.clip_by_value(x + threats.project(point - x, eps, norm), 0.0, 1.0)


def momentum_step(x, x_cur, x_prev, grad, eta, momentum, i, eps, norm: str):
    """Eq. 2: ``z = P(x_k + eta d)``, ``x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1}))``.

    ``d`` is the sign (linf) or unit-l2 gradient, ``eta`` the per-example step size (B,), ``a`` the
    ``momentum`` (0.75 in the paper) except at iteration ``i = 0``: a plain gradient step first.
    """
    a = tf.where(tf.equal(i, 0), tf.constant(1.0), momentum)
    eta = tf.reshape(eta, [-1] + [1] * (len(x.shape) - 1))
    z = _in_threat(x, x_cur + eta * _direction(grad, norm), eps, norm)
    return _in_threat(x, x_cur + a * (z - x_cur) + (1.0 - a) * (x_cur - x_prev), eps, norm)


def halving_conditions(n_up, since, rho, reduced, f_max, f_last):
    """At a checkpoint: Eq. 3 (fewer than ``rho * since`` of the last ``since`` steps increased the
    objective) or Eq. 4 (the step size was not halved at the last checkpoint and the best objective
    did not improve since it), per example."""
    oscillating = tf.cast(n_up, tf.float32) < rho * tf.cast(since, tf.float32)  # Eq. 3
    stalled = ~reduced & (f_max <= f_last)                                      # Eq. 4
    return oscillating | stalled


def initial_step_size_state(loss0, eta0, steps):
    """The step-size bookkeeping before the first iteration (``w_0 = 0``, objective ``loss0`` (B,),
    step size ``eta0`` (B,), the paper's ``2 eps``), for :func:`step_size_update`."""
    p, d = _advance_checkpoint(tf.constant(_P1), tf.constant(_D1), tf.constant(0), steps)
    return dict(loss_cur=loss0, f_max=loss0, n_up=tf.zeros_like(loss0, tf.int32), f_last=loss0,
                reduced=tf.zeros_like(loss0, tf.bool), eta=eta0, last_w=tf.constant(0), p=p, d=d)


def step_size_update(s, value, done, steps, rho):
    """Algorithm 1's step-size bookkeeping after iteration ``done`` (1-based) reached objective ``value``.

    ``s`` holds ``loss_cur`` (objective of the current iterate), ``f_max``, ``n_up`` (increases
    since the last checkpoint), ``f_last`` (``f_max`` at the last checkpoint), ``reduced`` (halved
    there), ``eta``, ``last_w`` and the schedule state ``p``, ``d``. Returns the updated copy,
    where ``f_max`` improved, and where ``eta`` halved (the caller restarts those from the best
    point, whose objective becomes ``loss_cur``).
    """
    s = dict(s)
    s["n_up"] += tf.cast(value > s["loss_cur"], tf.int32)
    better = value > s["f_max"]
    s["f_max"] = tf.where(better, value, s["f_max"])
    check = tf.equal(done, _checkpoint_at(s["p"], steps))
    halve = check & halving_conditions(s["n_up"], done - s["last_w"], rho, s["reduced"], s["f_max"], s["f_last"])
    s["eta"] = tf.where(halve, 0.5 * s["eta"], s["eta"])
    s["loss_cur"] = tf.where(halve, s["f_max"], value)
    s["reduced"] = tf.where(check, halve, s["reduced"])
    s["f_last"] = tf.where(check, s["f_max"], s["f_last"])
    s["n_up"] = tf.where(check, tf.zeros_like(s["n_up"]), s["n_up"])
    s["last_w"] = tf.where(check, done, s["last_w"])
    s["p"], s["d"] = _advance_checkpoint(s["p"], s["d"], done, steps)
    return s, better, halve


def _apgd_once(model, x, y, target, eps, steps, seed, norm, loss, targeted, rho, momentum, random_init,
               unroll: int = UNROLL):
    """One APGD run (Algorithm 1) from one start point.

    Returns:
        ``(x_out, success, best_loss)``: a successful iterate where one was found, otherwise
        the highest-objective iterate; per-example success; the highest objective value.
    """
    ones = [-1] + [1] * (len(x.shape) - 1)
    if random_init:
        noise = threats.random_start(tf.shape(x), eps, norm, seed, threats.start_mask(model))  # refined: inside S
        x0 = tf.clip_by_value(x + noise, 0.0, 1.0)
    else:
        x0 = tf.identity(x)
    loss0, logits0, grad0 = _value_and_grad(model, x0, y, target, loss, targeted)
    batch = tf.shape(x)[0]
    state = dict(
        x_cur=x0, x_prev=x0, grad=grad0, x_max=x0, grad_max=grad0,
        x_succ=x0, succ=_success(logits0, y, target, targeted),
        **initial_step_size_state(loss0, tf.fill([batch], 2.0) * eps, steps),
    )

    def body(i, s):
        x_new = momentum_step(x, s["x_cur"], s["x_prev"], s["grad"], s["eta"], momentum, i, eps, norm)
        value, logits, grad = _value_and_grad(model, x_new, y, target, loss, targeted)

        s, better, halve = step_size_update(s, value, i + 1, steps, rho)
        hit = _success(logits, y, target, targeted)
        s["x_succ"] = tf.where(tf.reshape(hit, ones), x_new, s["x_succ"])
        s["succ"] = s["succ"] | hit
        s["x_max"] = tf.where(tf.reshape(better, ones), x_new, s["x_max"])
        s["grad_max"] = tf.where(tf.reshape(better, ones), grad, s["grad_max"])
        s["x_prev"] = s["x_cur"]
        s["x_cur"] = tf.where(tf.reshape(halve, ones), s["x_max"], x_new)  # restart from the best
        s["grad"] = tf.where(tf.reshape(halve, ones), s["grad_max"], grad)
        return i + 1, s

    state = blocked_loop(steps, lambda i, s: body(i, s)[1], state, unroll)  # UNROLL steps per while iteration
    x_out = tf.where(tf.reshape(state["succ"], ones), state["x_succ"], state["x_max"])
    return x_out, state["succ"], state["f_max"]


# ---------------------------------------------------------------------------------------------
# Restarts, targets and the ensemble


def _better(succ, loss, best_succ, best_loss):
    """Success first, then the higher objective (NaN never wins)."""
    return (succ & ~best_succ) | ((succ == best_succ) & (loss > best_loss))


def _search(model, x, y, targets, eps, steps, restarts, seed, norm, loss, targeted, rho, momentum,
            random_init, compact, best, unroll: int = UNROLL):
    """APGD with ``restarts`` runs per row of ``targets`` (T, B), on the examples not yet fooled.

    ``best = (x, success, objective)`` is updated per example: success first, then the higher
    objective. With ``compact`` each run sees only the still-unsuccessful examples.
    """
    ones = [-1] + [1] * (len(x.shape) - 1)

    def body(k, best_x, best_succ, best_loss):
        target = tf.gather(targets, k // restarts)
        run_seed = tf.random.experimental.stateless_fold_in(seed, k)
        active = ~best_succ
        if compact:
            idx = tf.where(active)[:, 0]
            sub_x = tf.gather(x, idx)

            def run():
                return _apgd_once(model, sub_x, tf.gather(y, idx), tf.gather(target, idx), eps, steps, run_seed,
                                  norm, loss, targeted, rho, momentum, random_init, unroll)

            def skip():
                return sub_x, tf.zeros(tf.shape(idx), tf.bool), tf.zeros(tf.shape(idx), tf.float32)

            x_run, s_run, l_run = tf.cond(tf.size(idx) > 0, run, skip)
            rows = idx[:, None]
            cand_x = tf.tensor_scatter_nd_update(best_x, rows, x_run)
            cand_s = tf.tensor_scatter_nd_update(tf.zeros_like(best_succ), rows, s_run)
            cand_l = tf.tensor_scatter_nd_update(tf.fill(tf.shape(best_loss), float("-inf")), rows, l_run)
        else:
            cand_x, cand_s, cand_l = _apgd_once(model, x, y, target, eps, steps, run_seed, norm, loss, targeted,
                                                rho, momentum, random_init, unroll)
        take_new = active & _better(cand_s, cand_l, best_succ, best_loss)
        best_x = tf.where(tf.reshape(take_new, ones), cand_x, best_x)
        best_loss = tf.where(take_new, cand_l, best_loss)
        best_succ = best_succ | (active & cand_s)
        return k + 1, best_x, best_succ, best_loss

    total = tf.shape(targets)[0] * restarts
    _, best_x, best_succ, best_loss = tf.while_loop(lambda k, *_: k < total, body, (tf.constant(0), *best))
    return best_x, best_succ, best_loss


def _check_classes(logits, need: int, name: str):
    k = logits.shape[-1]
    if k is not None and k < need:
        raise UserError(f"{name} needs a model with at least {need} classes (the DLR loss, Croce & Hein 2020 "
                        f"Eq. 6-7); this one has {k}; use apgd-ce")


def _run(model, x, y, target, eps, steps, restarts, seed, rho, momentum, norm, mode, targeted, n_targets,
         random_init, compact, unroll: int = UNROLL):
    """The compiled body of all three attacks; ``mode`` is the registry name."""
    ones = [-1] + [1] * (len(x.shape) - 1)
    logits0 = model(x, training=False)
    succ0 = _success(logits0, y, target, targeted)
    common = dict(unroll=unroll, eps=eps, steps=steps, restarts=restarts, rho=rho, momentum=momentum, norm=norm,
                  targeted=targeted, random_init=random_init, compact=compact)
    start = (x, succ0, tf.fill(tf.shape(y), float("-inf")))
    ce_x, ce_succ = x, succ0
    if mode in ("apgd-ce", "autoattack-lite"):
        ce_x, ce_succ, _ = _search(model, x, y, target[None], seed=tf.random.experimental.stateless_fold_in(seed, 0),
                                   loss="ce", best=start, **common)
        if mode == "apgd-ce":
            return ce_x
    _check_classes(logits0, 4, mode)
    if targeted:
        targets = target[None]
    else:
        # APGD-T (Sec. 4): the top non-true classes of the clean logits, one after the other.
        others = tf.where(tf.one_hot(y, tf.shape(logits0)[-1]) > 0, float("-inf"), logits0)
        n = tf.minimum(n_targets, tf.shape(logits0)[-1] - 1)
        targets = tf.transpose(tf.argsort(others, axis=-1, direction="DESCENDING", stable=True)[:, :n])
        targets = tf.cast(targets, tf.int32)
    t_x, t_succ, _ = _search(model, x, y, targets, seed=tf.random.experimental.stateless_fold_in(seed, 1),
                             loss="dlr-targeted", best=(ce_x, ce_succ, start[2]), **common)
    if mode == "apgd-dlr":
        return t_x
    # autoattack-lite: keep APGD-CE's result unless only APGD-T succeeded (t_succ includes ce_succ).
    return tf.where(tf.reshape(t_succ & ~ce_succ, ones), t_x, ce_x)


def _attack(model, x, y, target, eps, steps, restarts, seed, rho, momentum, norm, mode, targeted, n_targets,
            random_init, compact, unroll: int = UNROLL):
    x_adv = _run(model, x, y, target, eps, steps, restarts, seed, rho, momentum, norm, mode, targeted, n_targets,
                 random_init, compact, unroll)
    x_adv = tf.where(tf.math.is_finite(x_adv), x_adv, x)
    return threats.clip_to_threat(x, x_adv, eps, norm)


_compiled = tf.function(_attack, reduce_retracing=True)
_compiled_xla = tf.function(_attack, reduce_retracing=True, jit_compile=True)


def _launch(mode, model, x, y, threat: Threat, targeted, target, seed, jit, rho, momentum, n_targets=1):
    """Validates statically, converts, and calls the compiled attack."""
    if threat.norm not in ("linf", "l2"):
        raise UserError(f"{mode} supports --norm linf or l2 (got {threat.norm})")
    if not 0.0 < float(rho) <= 1.0:
        raise UserError(f"option rho of {mode} is in (0, 1] (got {rho})")
    if not 0.0 < float(momentum) <= 1.0:
        raise UserError(f"option momentum of {mode} is in (0, 1] (got {momentum}); 1 means no momentum")
    if int(n_targets) < 1:
        raise UserError(f"option n_targets of {mode} must be >= 1 (got {n_targets})")
    x = tf.convert_to_tensor(x, tf.float32)
    y = tf.cast(y, tf.int32)
    label = attack_label(y, target, targeted)  # the target when targeted, else y
    fn = _compiled_xla if jit else _compiled
    return fn(
        model, x, y, label,
        tf.constant(threat.eps, tf.float32), tf.constant(int(threat.steps)), tf.constant(int(threat.restarts)),
        as_seed(seed), tf.constant(float(rho), tf.float32), tf.constant(float(momentum), tf.float32),
        threat.norm, mode, bool(targeted), tf.constant(int(n_targets)), bool(threat.random_start), not jit,
    )


@register_attack("apgd-ce", norms=("linf", "l2"), default_steps=100,
                 summary="Auto-PGD on cross-entropy (Croce & Hein 2020): adaptive step size, momentum, restarts.")
def apgd_ce(model, x, y, threat: Threat, *, targeted: bool = False, target=None, seed=None, jit: bool = False,
            rho: float = 0.75, momentum: float = 0.75):
    """APGD-CE (Croce & Hein 2020, Algorithm 1 with the cross-entropy loss).

    The step size starts at ``2 eps`` and halves at the checkpoints of Sec. 3.2 when Eq. 3 or
    Eq. 4 holds; ``threat.step_size`` is ignored (APGD is step-size free). Each of
    ``threat.restarts`` runs starts from a random point of the ball (unless
    ``threat.random_start`` is off); per example the first successful run wins, otherwise the
    highest cross-entropy.

    Args:
        model: Keras model mapping [0, 1] images to logits; called with ``training=False``.
        x: images (B, H, W, C), float32 in [0, 1].
        y: true labels (B,).
        threat: norm (linf or l2), eps, steps, restarts, random start.
        targeted: descend the cross-entropy of ``target`` (success: predicted ``target``).
        target: target labels (B,), required when ``targeted``.
        seed: stateless seed, an int tensor of shape (2,) or a plain int ``s`` (as ``[s, 0]``); random when
            ``None``.
        jit: compile with XLA (every run then covers the whole batch).
        rho: condition-1 threshold of Eq. 3 (fraction of steps that must increase the loss).
        momentum: ``alpha`` of Eq. 2 (1 disables momentum).

    Returns:
        x_adv with ``||x_adv - x|| <= eps`` in ``threat.norm`` and ``x_adv`` in [0, 1].
    """
    return _launch("apgd-ce", model, x, y, threat, targeted, target, seed, jit, rho, momentum)


@register_attack("apgd-dlr", norms=("linf", "l2"), default_steps=100,
                 summary="APGD-T (Croce & Hein 2020): APGD on the targeted DLR loss over the top classes.")
def apgd_dlr(model, x, y, threat: Threat, *, targeted: bool = False, target=None, seed=None, jit: bool = False,
             rho: float = 0.75, momentum: float = 0.75, n_targets: int = 3):
    """APGD-T: APGD on the targeted DLR loss (Croce & Hein 2020, Eq. 7; Sec. 4).

    Targeted (``targeted=True``): ``threat.restarts`` APGD runs towards ``target``; success means
    predicting ``target``. Untargeted (robust accuracy on the true label): AutoAttack's APGD-T,
    one targeted-DLR search (with ``threat.restarts`` runs) per each of the ``n_targets`` highest
    non-true classes of the clean logits, each only on the examples still classified correctly;
    success means any prediction other than ``y``. The model needs at least 4 classes.

    Args:
        model: Keras model mapping [0, 1] images to logits; called with ``training=False``.
        x: images (B, H, W, C), float32 in [0, 1].
        y: true labels (B,).
        threat: norm (linf or l2), eps, steps, restarts, random start; step_size is ignored.
        targeted: attack the given ``target`` instead of the top classes.
        target: target labels (B,), required when ``targeted``.
        seed: stateless seed, an int tensor of shape (2,) or a plain int ``s`` (as ``[s, 0]``); random when
            ``None``.
        jit: compile with XLA (every run then covers the whole batch).
        rho: condition-1 threshold of Eq. 3.
        momentum: ``alpha`` of Eq. 2.
        n_targets: target classes tried when untargeted (AutoAttack's standard version uses 9).

    Returns:
        x_adv with ``||x_adv - x|| <= eps`` in ``threat.norm`` and ``x_adv`` in [0, 1].
    """
    return _launch("apgd-dlr", model, x, y, threat, targeted, target, seed, jit, rho, momentum, n_targets)


@register_attack("autoattack-lite", norms=("linf", "l2"), default_steps=100,
                 summary="APGD-CE then APGD-T (a light AutoAttack, Croce & Hein 2020): worst case per example.")
def autoattack_lite(model, x, y, threat: Threat, *, targeted: bool = False, target=None, seed=None,
                    jit: bool = False, n_targets: int = 3):
    """A light AutoAttack: APGD-CE, then APGD-T on the examples it left robust (Croce & Hein 2020, Sec. 4).

    The full AutoAttack adds FAB-T and Square and uses 9 target classes; this ensemble keeps the
    two gradient attacks. An example fooled by APGD-CE keeps APGD-CE's point; otherwise APGD-T's
    point if it fooled the model, else APGD-CE's highest-loss point.

    ``targeted=True`` is not AutoAttack's use, but runs rather than fails: APGD-CE descending the
    cross-entropy of ``target``, then targeted APGD-DLR towards the same ``target`` where the
    first did not reach it (success: predicting ``target``).

    Args:
        model: Keras model mapping [0, 1] images to logits; called with ``training=False``.
        x: images (B, H, W, C), float32 in [0, 1].
        y: true labels (B,).
        threat: norm (linf or l2), eps, steps and restarts of each attack; step_size is ignored.
        targeted: see above.
        target: target labels (B,), required when ``targeted``.
        seed: stateless seed, an int tensor of shape (2,) or a plain int ``s`` (as ``[s, 0]``); random when
            ``None``.
        jit: compile with XLA (every run then covers the whole batch).
        n_targets: target classes of APGD-T.

    Returns:
        x_adv with ``||x_adv - x|| <= eps`` in ``threat.norm`` and ``x_adv`` in [0, 1].
    """
    return _launch("autoattack-lite", model, x, y, threat, targeted, target, seed, jit, 0.75, 0.75, n_targets)
