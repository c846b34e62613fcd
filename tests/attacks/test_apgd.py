"""APGD (Croce & Hein 2020): DLR losses, the checkpoint schedule, the momentum step and the step-size halving
against plain reimplementations, and strength against PGD."""

import math
from fractions import Fraction

import keras
import numpy as np
import pytest
import tensorflow as tf

from advtf.attacks import ATTACKS, Threat, fast_fgsm, get_attack, per_example_norm
from advtf.attacks.apgd import (checkpoint_schedule, halving_conditions, initial_step_size_state, momentum_step,
                               step_size_update)
from advtf.attacks.losses import dlr, dlr_targeted
from advtf.errors import UserError
from advtf.evaluation import accuracy_counts
from tiny import digits

LOGITS = np.array([
    [3.0, 1.0, 0.5, -2.0, 0.0],   # true class on top
    [0.2, 4.0, 1.5, 1.0, -1.0],   # true class second
    [1.0, 2.0, 3.0, 4.0, 5.0],    # true class last
    [2.5, -1.0, 2.0, 0.3, 0.1],
], np.float32)
LABELS = np.array([0, 2, 0, 3], np.int32)
TARGETS = np.array([1, 1, 4, 0], np.int32)


def numpy_dlr(z, y):
    """Eq. 6: -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)."""
    s = np.sort(z)[::-1]
    other = np.max(np.delete(z, y))
    return -(z[y] - other) / (s[0] - s[2])


def numpy_dlr_targeted(z, y, t):
    """Eq. 7: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)."""
    s = np.sort(z)[::-1]
    return -(z[y] - z[t]) / (s[0] - 0.5 * (s[2] + s[3]))


def test_dlr_losses_match_the_paper():
    got = dlr(tf.constant(LOGITS), tf.constant(LABELS)).numpy()
    want = [numpy_dlr(z, y) for z, y in zip(LOGITS, LABELS)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    got_t = dlr_targeted(tf.constant(LOGITS), tf.constant(LABELS), tf.constant(TARGETS)).numpy()
    want_t = [numpy_dlr_targeted(z, y, t) for z, y, t in zip(LOGITS, LABELS, TARGETS)]
    np.testing.assert_allclose(got_t, want_t, rtol=1e-6)
    # Scale and shift invariance (the point of DLR, Sec. 4).
    np.testing.assert_allclose(dlr(tf.constant(3 * LOGITS + 7), tf.constant(LABELS)).numpy(), want, rtol=1e-5)


def paper_checkpoints(n):
    """w_j = ceil(p_j N), p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), exactly."""
    ps = [Fraction(0), Fraction(22, 100)]
    while ps[-1] <= 1:
        ps.append(ps[-1] + max(ps[-1] - ps[-2] - Fraction(3, 100), Fraction(6, 100)))
    return sorted({math.ceil(p * n) for p in ps if p <= 1})


def test_checkpoint_schedule_is_the_papers():
    # Mutations tried in a scratch copy of apgd.py, each made this test fail: _DECAY 3 -> 2, _MIN_GAP 6 -> 5,
    # _P1 22 -> 20, ceil -> floor in _checkpoint_at.
    assert checkpoint_schedule(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoint_schedule(20) == [0, 5, 9, 12, 14, 16, 18, 19, 20]
    for n in (1, 2, 3, 5, 10, 20, 37, 250, 1000):
        assert checkpoint_schedule(n) == paper_checkpoints(n), n


# --- Algorithm 1's internals against plain reimplementations (Croce & Hein 2020) ------------------------------


def numpy_ball_box(x, point, eps, norm):
    """P: the nearest point of the eps-ball around x (per example), then clipped to [0, 1]."""
    d = point - x
    if norm == "linf":
        d = np.clip(d, -eps, eps)
    else:
        n = np.sqrt((d ** 2).sum(axis=(1, 2, 3), keepdims=True))
        d = d * np.minimum(1.0, eps / np.maximum(n, 1e-30))
    return np.clip(x + d, 0.0, 1.0)


def numpy_momentum_step(x, x_cur, x_prev, grad, eta, a, eps, norm):
    """z = P(x_k + eta * d), x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1})), d = sign or unit-l2 gradient."""
    if norm == "linf":
        d = np.sign(grad)
    else:
        d = grad / np.sqrt((grad ** 2).sum(axis=(1, 2, 3), keepdims=True))
    z = numpy_ball_box(x, x_cur + eta[:, None, None, None] * d, eps, norm)
    return numpy_ball_box(x, x_cur + a * (z - x_cur) + (1 - a) * (x_cur - x_prev), eps, norm)


def _momentum(x, x_cur, x_prev, grad, eta, momentum, i, eps, norm):
    c = lambda v: tf.constant(np.asarray(v, np.float32))  # noqa: E731
    return momentum_step(c(x), c(x_cur), c(x_prev), c(grad), c(eta), c(momentum), tf.constant(i), c(eps),
                         norm).numpy()


def test_momentum_step_hand_made():
    # Mutations tried in a scratch copy of apgd.py, each made the momentum tests fail: a <-> (1 - a),
    # x_prev - x_cur for the momentum term, z without the projection, no first-step a = 1.
    # Four pixels, linf eps 0.2, eta 0.2, a 0.75: z hits the ball (pixels 0, 1) and the box (2); x_{k+1}
    # hits the ball (0) and the box (2). By hand: pixel 0: z = P(0.8) = 0.7, x = P(0.6 + 0.75 * 0.1 + 0.25 * 0.2)
    # = P(0.725) = 0.7; pixel 1: z = P(0.25) = 0.3, x = 0.45 - 0.75 * 0.15 - 0.25 * 0.05 = 0.325; pixel 2:
    # z = P(1.18) = 1, x = P(1.015) = 1; pixel 3: z = 0, x = 0.2 - 0.75 * 0.2 + 0.25 * 0.1 = 0.075.
    x = np.array([0.5, 0.5, 0.95, 0.1]).reshape(1, 2, 2, 1)
    x_prev = np.array([0.4, 0.5, 0.9, 0.1]).reshape(1, 2, 2, 1)
    x_cur = np.array([0.6, 0.45, 0.98, 0.2]).reshape(1, 2, 2, 1)
    grad = np.array([1.0, -1.0, 3.0, -2.0]).reshape(1, 2, 2, 1)
    got = _momentum(x, x_cur, x_prev, grad, [0.2], 0.75, 3, 0.2, "linf")
    np.testing.assert_allclose(got.reshape(-1), [0.7, 0.325, 1.0, 0.075], atol=1e-6)
    got = _momentum(x, x_cur, x_prev, grad, [0.2], 0.75, 0, 0.2, "linf")  # the first step: no momentum, x_1 = z
    np.testing.assert_allclose(got.reshape(-1), [0.7, 0.3, 1.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 0.5)])
def test_momentum_step_matches_numpy(norm, eps):
    rng = np.random.default_rng(11)
    x = rng.uniform(size=(3, 4, 4, 2))
    x_prev = np.clip(x + rng.uniform(-eps, eps, size=x.shape) / (1 if norm == "linf" else 8), 0, 1)
    x_cur = np.clip(x + rng.uniform(-eps, eps, size=x.shape) / (1 if norm == "linf" else 8), 0, 1)
    grad = rng.normal(size=x.shape)
    eta = np.array([2 * eps, eps / 2, eps / 8])  # the first example is pushed far outside the ball
    for i, a in ((5, 0.75), (0, 1.0)):  # Algorithm 1 takes a plain gradient step (a = 1) first
        want = numpy_momentum_step(x, x_cur, x_prev, grad, eta, a, eps, norm)
        np.testing.assert_allclose(_momentum(x, x_cur, x_prev, grad, eta, 0.75, i, eps, norm), want, atol=2e-6)
    assert np.any((want == 0) | (want == 1))  # the box was active


def reference_halving(n_up, since, rho, reduced, f_max, f_last):
    """Condition 1 (Eq. 3): sum of increases < rho * (w_j - w_{j-1}); condition 2 (Eq. 4): eta and f_max
    unchanged since the last checkpoint (f_max never decreases, so "unchanged" is f_max == f_last)."""
    return n_up < rho * since or (not reduced and f_max == f_last)


def test_halving_conditions_hand_made():
    # (increases, steps since the last checkpoint, halved there, f_max, f_max there) -> halve?
    cases = [
        (3, 4, True, 2.0, 1.0, False),    # 3 < 0.75 * 4 is false: the borderline count does not halve
        (2, 4, True, 2.0, 1.0, True),     # one fewer increase: condition 1
        (14, 19, True, 2.0, 1.0, True),   # 14 < 14.25
        (15, 19, True, 2.0, 1.0, False),  # 15 < 14.25 is false
        (16, 22, True, 2.0, 1.0, True),   # 16 < 16.5
        (17, 22, True, 2.0, 1.0, False),
        (0, 1, True, 2.0, 1.0, True),     # no increase in a one-step interval
        (1, 1, False, 2.0, 2.0, True),    # condition 2: not halved and f_max unchanged
        (1, 1, True, 2.0, 2.0, False),    # halved last time: condition 2 does not apply
        (1, 1, False, 2.5, 2.0, False),   # f_max improved
    ]
    n_up, since, reduced, f_max, f_last, want = (np.array(v) for v in zip(*cases))
    got = halving_conditions(tf.constant(n_up, tf.int32), tf.constant(since, tf.int32), tf.constant(0.75),
                             tf.constant(reduced), tf.constant(f_max, tf.float32), tf.constant(f_last, tf.float32))
    np.testing.assert_array_equal(got.numpy(), want)
    assert [reference_halving(n, w, 0.75, r, fm, fl) for n, w, r, fm, fl, _ in cases] == list(want)


def reference_step_sizes(losses, n, rho=0.75):
    """Algorithm 1's step size on a given objective sequence, in plain Python: ``losses[0]`` is f(x^0) and
    ``losses[k]`` the objective of the k-th iterate. A halving restarts from x_max, so the next increase
    is counted against f_max. Returns eta (from 1) after each iteration and the iterations that halved it."""
    checkpoints = set(paper_checkpoints(n)[1:])
    eta, f_cur, f_max = 1.0, float(losses[0]), float(losses[0])
    count, last_w, halved, f_max_then = 0, 0, False, float(losses[0])
    etas, halvings = [], []
    for k in range(1, n + 1):
        value = float(losses[k])
        count += value > f_cur
        f_cur, f_max = value, max(f_max, value)
        if k in checkpoints:
            halved = reference_halving(count, k - last_w, rho, halved, f_max, f_max_then)
            if halved:
                eta, f_cur = eta / 2, f_max
                halvings.append(k)
            count, last_w, f_max_then = 0, k, f_max
        etas.append(eta)
    return etas, halvings


def run_step_sizes(losses, n, rho=0.75):
    """step_size_update driven by the objective sequences ``losses`` (examples, n + 1)."""
    losses = np.asarray(losses, np.float32)
    steps = tf.constant(n)
    s = initial_step_size_state(tf.constant(losses[:, 0]), tf.ones([len(losses)]), steps)
    etas, halves = [], []
    for k in range(1, n + 1):
        s, _, halve = step_size_update(s, tf.constant(losses[:, k]), tf.constant(k), steps, tf.constant(rho))
        etas.append(s["eta"].numpy())
        halves.append(halve.numpy())
    return np.array(etas).T, [list(np.flatnonzero(h) + 1) for h in np.array(halves).T]


# Objective sequences f(x^0), ..., f(x^20) over N = 20 iterations (checkpoints 5, 9, 12, 14, 16, 18, 19, 20).
RISING = list(range(21))
BORDERLINE = [0, 1, 2, 3, 4, 5, 6, 5.5, 7, 8] + list(range(9, 20))  # 3 of 4 increases up to 9: no halving
ONE_FEWER = [0, 1, 2, 3, 4, 5, 6, 5.5, 5.2, 8] + list(range(9, 20))  # 2 of 4: halves at 9
# f(x^0) = 10 stays the best until 17: condition 2 halves at 5; at 9 it cannot (halved at 5) and 3 of 4 steps
# increased (the first after the restart compares with f_max = 10); at 12 condition 2 again; at 14 and 16 one
# increase in two steps (each restart makes the next step a decrease); from 17 on new maxima.
STALLED = [10, 1, 2, 3, 4, 5, 5.5, 6, 7, 8, 8.5, 9, 9.5, 9.6, 9.7, 9.8, 9.9, 11, 12, 13, 14]
# f_max rises to 5, then stalls: condition 2 at 9 (3 of 4 increases), condition 1 at 12 (2 of 3).
PLATEAU = [0, 1, 2, 3, 4, 5, 1, 2, 3, 4, 4.5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
HAND_HALVINGS = [[], [], [9], [5, 12, 14, 16], [9, 12]]


def test_step_size_bookkeeping_on_hand_made_sequences():
    # Mutations tried in a scratch copy of apgd.py, each made this test fail: < -> <= in condition 1, condition 2
    # without "not halved last time", loss_cur = value (no restart from f_max) after a halving, f_last never
    # updated, n_up not reset at checkpoints, value >= loss_cur counted as an increase, eta * 0.6.
    sequences = [RISING, BORDERLINE, ONE_FEWER, STALLED, PLATEAU]
    etas, halvings = run_step_sizes(sequences, 20)
    assert halvings == HAND_HALVINGS
    for seq, got, want_halvings in zip(sequences, etas, HAND_HALVINGS):
        want_etas, ref_halvings = reference_step_sizes(seq, 20)
        assert ref_halvings == want_halvings
        np.testing.assert_array_equal(got, want_etas)


@pytest.mark.parametrize("n", [10, 20, 37])
def test_step_size_bookkeeping_matches_reference_on_random_walks(n):
    rng = np.random.default_rng(n)
    # Random walks rounded to 0.1 (ties between consecutive values and with f_max happen), drifting from
    # slightly down (mostly halving) to clearly up (mostly not).
    walks = np.round(np.cumsum(rng.normal(np.linspace(-0.2, 2.0, 16)[:, None], 1.0, size=(16, n + 1)), axis=1), 1)
    walks = walks.astype(np.float32)
    etas, halvings = run_step_sizes(walks, n)
    for walk, got_etas, got_halvings in zip(walks, etas, halvings):
        want_etas, want_halvings = reference_step_sizes(walk, n)
        assert got_halvings == want_halvings
        np.testing.assert_array_equal(got_etas, want_etas)
    checks = 16 * (len(paper_checkpoints(n)) - 1)
    assert 0.2 * checks < sum(map(len, halvings)) < 0.8 * checks  # both outcomes are frequent


def test_paper_constants_are_the_defaults():
    for name in ("apgd-ce", "apgd-dlr"):
        assert ATTACKS[name].options["rho"] == 0.75 and ATTACKS[name].options["momentum"] == 0.75


def test_bad_norm_and_too_few_classes_are_user_errors():
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    x, y = tf.zeros([2, 4, 4, 1]), tf.constant([0, 1])
    with pytest.raises(UserError, match="linf or l2"):
        get_attack("apgd-ce")(model, x, y, Threat(norm="l1", eps=1.0))
    with pytest.raises(UserError, match="at least 4 classes"):
        get_attack("apgd-dlr")(model, x, y, Threat(eps=0.1, steps=1))
    assert ATTACKS["apgd-ce"].default_steps == 100 and ATTACKS["apgd-dlr"].options["n_targets"] == 3


@pytest.fixture(scope="module")
def robust_digits():
    """A small CNN adversarially trained (FGSM with random start, linf 0.1) on 1000 digits (200 test), ~10 s."""
    splits = digits(train_subset=1000, test_subset=200)
    xtr, ytr = (np.stack(v) for v in zip(*[(a.numpy(), b.numpy()) for a, b in splits.train]))
    xte, yte = (np.stack(v) for v in zip(*[(a.numpy(), b.numpy()) for a, b in splits.test]))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((16, 16, 1)),
        keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Flatten(), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10),
    ])
    opt = keras.optimizers.Adam(3e-3)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    train_threat = Threat(norm="linf", eps=0.1)

    @tf.function
    def step(xb, yb, seed):
        xa = fast_fgsm(model, xb, yb, train_threat, seed=seed)
        with tf.GradientTape() as tape:
            value = loss(yb, model(xa, training=True))
        opt.apply_gradients(zip(tape.gradient(value, model.trainable_variables), model.trainable_variables))

    xtr, ytr = tf.constant(xtr), tf.constant(ytr.astype(np.int32))
    for epoch in range(10):
        perm = np.random.default_rng(epoch).permutation(len(ytr))
        for i in range(0, len(perm), 50):
            idx = perm[i:i + 50]
            step(tf.gather(xtr, idx), tf.gather(ytr, idx), tf.constant([epoch, i], tf.int64))
    return model, tf.constant(xte), tf.constant(yte.astype(np.int32))


def robust_correct(model, x, y, name, threat):
    """Robust count through the evaluator's own path, inside a tf.function (trace safety)."""
    fn = tf.function(lambda x, y: accuracy_counts(model, x, y, threat=threat, attack=name,
                                                  seed=tf.constant([0, 7], tf.int64)))
    counts = fn(x, y)
    return int(counts["robust"]), int(counts["clean"])


def assert_apgd_not_weaker(model, x, y, norm, eps):
    pgd20 = robust_correct(model, x, y, "pgd", Threat(norm=norm, eps=eps, steps=20))
    apgd = robust_correct(model, x, y, "apgd-ce", Threat(norm=norm, eps=eps, steps=20))
    lite = robust_correct(model, x, y, "autoattack-lite", Threat(norm=norm, eps=eps, steps=20))
    print(f"{norm} eps={eps} clean={pgd20[1]} robust: pgd-20={pgd20[0]} apgd-ce-20={apgd[0]} "
          f"autoattack-lite-20={lite[0]}")
    assert 0 < lite[0] <= apgd[0] <= pgd20[0] < pgd20[1]


@pytest.mark.usefixtures("small_unroll")  # bit-identical results, smaller traces (the jit tests keep 10)
def test_apgd_is_at_least_as_strong_as_pgd_linf(robust_digits):
    # Measured: clean 191/200; robust pgd-20 125, apgd-ce-20 120, autoattack-lite-20 116.
    assert_apgd_not_weaker(*robust_digits, "linf", 0.1)


@pytest.mark.slow
@pytest.mark.usefixtures("small_unroll")
def test_apgd_is_at_least_as_strong_as_pgd_l2(robust_digits):
    # Measured: clean 191/200; robust pgd-20 97, apgd-ce-20 87, autoattack-lite-20 85.
    assert_apgd_not_weaker(*robust_digits, "l2", 1.0)


@pytest.mark.usefixtures("small_unroll")
def test_targeted_apgd_dlr_reaches_given_targets(robust_digits):
    model, x, y = robust_digits
    x, y = x[:64], y[:64]
    target = (y + 3) % 10
    # Eq. 7 only pushes the target above the true class, so a third class can stay on top:
    # measured hit rates 0.89 at eps 0.3 (targeted CE: 0.95) and 1.0 at eps 0.4.
    threat = Threat(norm="linf", eps=0.4, steps=30)
    x_adv = get_attack("apgd-dlr")(model, x, y, threat, targeted=True, target=target, seed=tf.constant([1, 2]))
    hit = np.mean(np.argmax(model(x_adv), 1) == target.numpy())
    assert hit >= 0.9, hit
    assert np.all(per_example_norm(x_adv - x, "linf").numpy() <= 0.4 + 1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["apgd-ce", "apgd-dlr", "autoattack-lite"])
def test_jit_compiles_and_attacks(robust_digits, name):
    model, x, y = robust_digits
    x, y = x[:32], y[:32]
    threat = Threat(norm="linf", eps=0.15, steps=10)
    x_adv = get_attack(name)(model, x, y, threat, seed=tf.constant([3, 4]), jit=True)
    assert np.all(per_example_norm(x_adv - x, "linf").numpy() <= 0.15 + 1e-6)
    clean = np.argmax(model(x), 1) == y.numpy()
    robust = clean & (np.argmax(model(x_adv), 1) == y.numpy())
    assert robust.sum() < clean.sum()
