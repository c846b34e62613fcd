"""The long attacks' blocked loops (advtf.attacks.loops) against the one-step loops they replaced.

The references below are verbatim copies of the loops before issue 17 (``for _ in tf.range(...)`` /
``tf.while_loop``, one step per iteration, C&W's Adam written by hand), so the library must give
bit-identical outputs on fixed inputs and seeds, with early abort and the binary search on ``c``.
"""

import numpy as np
import pytest
import tensorflow as tf
import keras

from advtf.attacks import apgd, cw, ead, structured
from advtf.attacks import threat as threats
from advtf.attacks.apgd import _success, _value_and_grad, initial_step_size_state, momentum_step, step_size_update
from advtf.attacks.cw import (NO_UPPER, agree_batch, bisect_const, logit_loss, per_example,
                              succeeded_with_confidence)
from advtf.attacks.ead import shrinkage_threshold
from advtf.attacks.loops import UNROLL, blocked_loop, forced_unroll
from advtf.attacks.losses import succeeded
from advtf.attacks.structured import _dims, _score, admm_iteration, group_lasso
from advtf.attacks.threat import clip_to_threat

_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8
_TANH_SCALE = 0.999999
_INF = float("inf")
_UNBOUNDED = 1e10
UNROLLS = sorted({1, 3, UNROLL})


# ---------------------------------------------------------------- verbatim copies of the old loops

def old_cw_l2(model, x, label, eps, steps, search_steps, initial_const, confidence, lr, targeted, abort_early):
    x, label = agree_batch(x, label)
    rank = len(x.shape)
    axes = list(range(1, rank))
    ones = tf.ones_like(label, tf.float32)  # (B,) with the static shape of the batch
    w0 = tf.atanh((2.0 * x - 1.0) * _TANH_SCALE)
    check_every = tf.maximum(steps // 10, 1)

    def to_image(w):
        return (tf.tanh(w) + 1.0) / 2.0

    def track(x_new, logits, best, best_l2, step_success):
        """Keeps per example the successful iterate with the smallest l2 inside eps."""
        _, signed = logit_loss(logits, label, confidence, targeted)
        success = succeeded_with_confidence(signed, confidence)
        l2 = tf.sqrt(tf.reduce_sum(tf.square(x_new - x), axis=axes))
        improve = success & (l2 <= eps) & (l2 < best_l2)
        best = tf.where(per_example(improve, rank), x_new, best)
        best_l2 = tf.where(improve, l2, best_l2)
        return best, best_l2, step_success | success

    const = initial_const * ones
    lower = tf.zeros_like(ones)
    upper = NO_UPPER * ones
    best = tf.identity(x)
    best_l2 = _INF * ones
    last = tf.identity(x)

    for _ in tf.range(search_steps):
        w = tf.identity(w0)
        m = tf.zeros_like(x)
        v = tf.zeros_like(x)
        step_success = tf.zeros_like(label, tf.bool)
        prev = tf.constant(_INF)
        i = tf.constant(0)
        stop = tf.constant(False)
        while tf.logical_and(i < steps, tf.logical_not(stop)):
            with tf.GradientTape() as tape:
                tape.watch(w)
                x_new = to_image(w)
                logits = model(x_new, training=False)
                f, _ = logit_loss(logits, label, confidence, targeted)
                dist = tf.reduce_sum(tf.square(x_new - x), axis=axes)
                total = tf.reduce_sum(dist + const * f)
            grad = tape.gradient(total, w)
            best, best_l2, step_success = track(x_new, logits, best, best_l2, step_success)
            # Adam (Kingma & Ba 2015) by hand: fresh moments for every c, as C&W reset the optimiser.
            t = tf.cast(i + 1, tf.float32)
            m = _BETA1 * m + (1.0 - _BETA1) * grad
            v = _BETA2 * v + (1.0 - _BETA2) * tf.square(grad)
            m_hat = m / (1.0 - tf.pow(_BETA1, t))
            v_hat = v / (1.0 - tf.pow(_BETA2, t))
            w = w - lr * m_hat / (tf.sqrt(v_hat) + _ADAM_EPS)
            # C&W's early abort: every steps/10 iterations stop once the batch loss stalls.
            if abort_early:
                check = tf.equal(i % check_every, 0)
                stop = check & (total > prev * 0.9999)
                prev = tf.where(check, total, prev)
            i += 1
        last = to_image(w)
        logits = model(last, training=False)
        best, best_l2, step_success = track(last, logits, best, best_l2, step_success)
        const, lower, upper = bisect_const(const, lower, upper, step_success)

    found = per_example(tf.math.is_finite(best_l2), rank)
    return tf.where(found, best, last)


def old_ead(model, x, label, eps, steps, search_steps, initial_const, confidence, lr, beta,
         norm, targeted, decision_rule, fista):
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

    for _ in tf.range(search_steps):
        x_k = tf.identity(x)
        y_k = tf.identity(x)
        step_success = tf.zeros_like(label, tf.bool)
        for k in tf.range(steps):
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
            x_k = x_next
        logits = model(x_k, training=False)
        best, best_dist, step_success = track(x_k, logits, best, best_dist, step_success)
        const, lower, upper = bisect_const(const, lower, upper, step_success)

    found = per_example(tf.math.is_finite(best_dist), rank)
    return tf.where(found, best, x_k)


def old_str_attack(model, x, label, eps, gamma, rho, l2_weight, alpha, confidence, initial_const,
                steps, search_steps, group_size, targeted):
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
    for _ in tf.range(search_steps):
        z = tf.zeros_like(x)
        u = tf.zeros_like(x)
        s = tf.zeros_like(x)
        v = tf.zeros_like(x)
        found = tf.zeros([batch], tf.bool)
        for t in tf.range(steps):
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
            found = found | success
            last = candidate
        # C&W's binary search on c (times 5 before the first success, as in the reference code).
        const, lower, upper = bisect_const(const, lower, upper, found, grow=5.0)
    delta = tf.where(tf.math.is_finite(best_norm)[:, None, None, None], best, last)
    return clip_to_threat(x, x + delta, eps, "linf")


def old_apgd_once(model, x, y, target, eps, steps, seed, norm, loss, targeted, rho, momentum, random_init):
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

    _, state = tf.while_loop(lambda i, s: i < steps, body, (tf.constant(0), state))
    x_out = tf.where(tf.reshape(state["succ"], ones), state["x_succ"], state["x_max"])
    return x_out, state["succ"], state["f_max"]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def setup():
    """A random-weight CNN on 8x8x1 and six random images labelled with its own predictions."""
    init = keras.initializers.GlorotUniform
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, activation="relu", kernel_initializer=init(0)),
        keras.layers.Flatten(),
        keras.layers.Dense(10, kernel_initializer=init(1)),
    ])
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(size=(6, 8, 8, 1)).astype(np.float32))
    y = tf.argmax(model(x), axis=1, output_type=tf.int32)
    return model, x, y


def f32(v):
    return tf.constant(float(v), tf.float32)


def assert_bit_identical(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    assert np.array_equal(a, b), f"max |diff| {np.abs(a - b).max()}"


# ---------------------------------------------------------------- blocked_loop itself


@pytest.mark.parametrize("unroll", [1, 3, 10])
@pytest.mark.parametrize("n", [0, 7, 23])
def test_blocked_loop_runs_each_step_once_in_order(n, unroll):
    # state: (sum of i * 10^-k ... ) kept simple: the list of visited indices as a fixed-size record.
    @tf.function
    def run(n):
        record = tf.fill([30], -1)
        count = tf.constant(0)

        def step(i, s):
            record, count = s
            return tf.tensor_scatter_nd_update(record, [[count]], [i]), count + 1

        return blocked_loop(n, step, (record, count), unroll)

    record, count = run(tf.constant(n))
    assert int(count) == n
    assert record.numpy()[:n].tolist() == list(range(n))


@pytest.mark.parametrize("unroll", [1, 3, 10])
@pytest.mark.parametrize("stop_after", [0, 4, 12, 50])
def test_blocked_loop_stops_where_the_plain_loop_does(stop_after, unroll):
    """``active`` false after ``stop_after`` steps: exactly that many steps run (or n if fewer)."""
    n = 23

    @tf.function
    def run():
        def step(i, s):
            count, total = s
            return count + 1, total + i

        return blocked_loop(n, step, (tf.constant(0), tf.constant(0)), unroll,
                            active=lambda s: s[0] < stop_after)

    count, total = run()
    k = min(n, stop_after)
    assert int(count) == k and int(total) == k * (k - 1) // 2


def test_forced_unroll_sets_the_traced_block_and_is_restored():
    """Tracing ``blocked_loop(unroll=10)`` writes 10 + 1 step copies into the graph (block and
    remainder loops); inside ``forced_unroll(2)`` 2 + 1, inside ``forced_unroll(1)`` 1; afterwards 10 + 1
    again. The loop still runs every step (the property tests rely on this override)."""
    def traced_steps():
        calls = []

        @tf.function
        def run(n):
            def step(i, s):
                calls.append(i)
                return s + i

            return blocked_loop(n, step, tf.constant(0), 10)

        total = run(tf.constant(7))
        assert int(total) == 21
        return len(calls)

    assert traced_steps() == 11
    with forced_unroll(2):
        assert traced_steps() == 3
        with forced_unroll(1):
            assert traced_steps() == 1
        assert traced_steps() == 3
    assert traced_steps() == 11
    with pytest.raises(ValueError):
        with forced_unroll(0):
            pass


# ---------------------------------------------------------------- the attacks against the old loops


@pytest.mark.parametrize("abort_early", [False, True])
def test_cw_is_bit_identical_to_the_old_loop(setup, abort_early):
    model, x, y = setup
    args = (model, x, y, f32(100.0), tf.constant(23), tf.constant(3), f32(0.01), f32(0.0), f32(0.1), False, abort_early)
    old = tf.function(old_cw_l2)(*args)
    for unroll in UNROLLS:
        assert_bit_identical(tf.function(cw._cw_l2)(*args, unroll=unroll), old)
    assert_bit_identical(cw._compiled(*args), old)  # the library's default


def test_cw_early_abort_fires_and_changes_the_result(setup):
    """On this model the abort triggers, so the abort branch of the comparison above is exercised."""
    model, x, y = setup
    args = (model, x, y, f32(100.0), tf.constant(40), tf.constant(2), f32(0.01), f32(0.0), f32(0.1), False)
    aborted = cw._compiled(*args, True)
    full = cw._compiled(*args, False)
    assert not np.array_equal(aborted.numpy(), full.numpy())
    assert_bit_identical(aborted, tf.function(old_cw_l2)(*args, True))


@pytest.mark.parametrize("rule", ["en", "l1"])
@pytest.mark.parametrize("fista", [True, False])
def test_ead_is_bit_identical_to_the_old_loop(setup, rule, fista):
    model, x, y = setup
    args = (model, x, y, f32(1e3), tf.constant(23), tf.constant(3), f32(0.01), f32(0.0), f32(0.01), f32(0.01),
            "l1", False, rule, fista)
    old = tf.function(old_ead)(*args)
    for unroll in UNROLLS:
        assert_bit_identical(tf.function(ead._ead)(*args, unroll=unroll), old)


def test_str_is_bit_identical_to_the_old_loop(setup):
    """Step for step the same arithmetic: bit-identical once Grappler's arithmetic optimizer is off.

    With it on (the default), the unrolled body lets it regroup the ADMM sums across consecutive
    steps (the duals' ``u + delta - z`` into the next z step's six-term sum), which moves the result
    by about one float32 ulp (1e-7); the test bounds that too.
    """
    model, x, y = setup
    args = (model, x, y, f32(0.1), f32(1.0), f32(1.0), f32(1.0), f32(5.0), f32(0.0), f32(1.0),
            tf.constant(23), tf.constant(3), 2, False)
    saved = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False})
    try:
        old = tf.function(old_str_attack)(*args)
        for unroll in UNROLLS:
            assert_bit_identical(tf.function(structured._str_attack)(*args, unroll=unroll), old)
    finally:
        tf.config.optimizer.set_experimental_options({"arithmetic_optimization": saved.get("arithmetic_optimization",
                                                                                             True)})
    old = tf.function(old_str_attack)(*args)
    assert_bit_identical(tf.function(structured._str_attack)(*args, unroll=1), old)
    for unroll in UNROLLS:
        np.testing.assert_allclose(tf.function(structured._str_attack)(*args, unroll=unroll), old, rtol=0, atol=1e-6)


@pytest.mark.parametrize("loss", ["ce", "dlr-targeted"])
def test_apgd_run_is_bit_identical_to_the_old_loop(setup, loss):
    model, x, y = setup
    target = (y + 1) % 10
    args = (model, x, y, target, f32(0.1), tf.constant(23), tf.constant([3, 4], tf.int64), "linf", loss, False,
            f32(0.75), f32(0.75), True)
    old = tf.function(old_apgd_once)(*args)
    for unroll in UNROLLS:
        new = tf.function(apgd._apgd_once)(*args, unroll=unroll)
        for a, b in zip(new, old):
            assert_bit_identical(a, b)


@pytest.mark.parametrize("mode", ["apgd-ce", "autoattack-lite"])
def test_apgd_attack_does_not_depend_on_the_block_size(setup, mode):
    model, x, y = setup
    args = (model, x, y, y, f32(0.05), tf.constant(23), tf.constant(2), tf.constant([5, 6], tf.int64), f32(0.75),
            f32(0.75), "linf", mode, False, tf.constant(3), True, True)
    one = tf.function(apgd._attack)(*args, unroll=1)
    assert_bit_identical(apgd._compiled(*args), one)


@pytest.mark.parametrize("name", ["cw", "ead"])
def test_jit_runs_the_blocked_loops(setup, name):
    """XLA (``jit=True``) compiles the blocked loops and finds the same adversarial examples: same
    success per example, norms within a few percent (XLA reorders float arithmetic, so the best
    iterate can differ slightly; not bit for bit)."""
    from advtf.attacks import Threat, per_example_norm
    model, x, y = setup
    fn = {"cw": cw.cw, "ead": ead.ead, "str": structured.str_attack}[name]
    threat = {"cw": Threat("l2", eps=3.0, steps=12), "ead": Threat("l1", eps=20.0, steps=12),
              "str": Threat("linf", eps=0.1, steps=12)}[name]
    opts = {"cw": {}, "ead": {"lr": 0.1, "initial_const": 1.0}, "str": {}}[name]
    results = []
    for jit in (False, True):
        x_adv = fn(model, x, y, threat, search_steps=2, jit=jit, **opts)
        fooled = tf.argmax(model(x_adv), axis=1, output_type=tf.int32).numpy() != y.numpy()
        results.append((fooled, per_example_norm(x_adv - x, "l2").numpy()))
    (f0, n0), (f1, n1) = results
    assert f0.any()
    np.testing.assert_array_equal(f0, f1)
    np.testing.assert_allclose(n1, n0, rtol=0.05, atol=1e-3)
