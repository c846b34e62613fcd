"""The PGD core: PGD, FGSM and I-FGSM give bit for bit the outputs of the loop before the core.

The reference below is a copy of that loop (``_pgd_once``/``_pgd_restarts`` as of 2026-12-01) over
the frozen norm-ball code, compiled the same way, so any change of arithmetic in the refactored
core shows up as a differing bit.
"""

import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from frozen_geometry import ascent_direction, project, random_start

from advtf.attacks import Threat, fgsm, ifgsm, pgd
from advtf.attacks.losses import cross_entropy, succeeded


def _objective(model, x, label, targeted):
    logits = model(x, training=False)
    ce = cross_entropy(logits, label)
    return (-ce if targeted else ce), logits


def _step_scale(i, steps, schedule):
    if schedule == "constant":
        return tf.constant(1.0)
    t = tf.cast(i, tf.float32) / tf.cast(steps, tf.float32)
    if schedule == "cosine":
        return 0.5 * (1.0 + tf.cos(math.pi * t))
    return 1.0 - t


def _reference_once(model, x, label, eps, alpha, steps, seed, norm, targeted, random_init, schedule):
    if random_init:
        noise = random_start(tf.shape(x), eps, norm, seed, getattr(model, "perturbation_mask", None))
        x_adv = tf.clip_by_value(x + noise, 0.0, 1.0)
    else:
        x_adv = tf.identity(x)
    for i in (range(steps) if isinstance(steps, int) else tf.range(steps)):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            loss, _ = _objective(model, x_adv, label, targeted)
            total = tf.reduce_sum(loss)
        grad = tape.gradient(total, x_adv)
        step = alpha * _step_scale(i, steps, schedule)
        stepped = tf.clip_by_value(x_adv + step * ascent_direction(grad, norm), 0.0, 1.0)
        x_adv = tf.clip_by_value(x + project(stepped - x, eps, norm), 0.0, 1.0)
    return x_adv


def _reference_restarts(model, x, label, eps, alpha, steps, restarts, seed, norm, targeted, random_init, schedule):
    best = tf.identity(x)
    best_loss = tf.fill(tf.shape(label), float("-inf"))
    best_success = tf.zeros(tf.shape(label), tf.bool)
    for r in tf.range(restarts):
        run_seed = tf.random.experimental.stateless_fold_in(seed, r)
        x_adv = _reference_once(model, x, label, eps, alpha, steps, run_seed, norm, targeted, random_init, schedule)
        loss, logits = _objective(model, x_adv, label, targeted)
        success = succeeded(logits, label, targeted)
        better = (success & ~best_success) | ((success == best_success) & (loss > best_loss))
        best = tf.where(better[:, None, None, None], x_adv, best)
        best_loss = tf.where(better, loss, best_loss)
        best_success = best_success | success
    return best


def _reference_single(model, x, label, eps, alpha, steps, restarts, seed, norm, targeted, random_init, schedule):
    del restarts
    run_seed = tf.random.experimental.stateless_fold_in(seed, 0)
    return _reference_once(model, x, label, eps, alpha, steps, run_seed, norm, targeted, random_init, schedule)


_ref_restarts = tf.function(_reference_restarts, reduce_retracing=True)
_ref_single = tf.function(_reference_single, reduce_retracing=True)


def reference_pgd(model, x, y, threat, *, targeted=False, target=None, seed, schedule="constant"):
    """Today's pgd() entry: the same tensors and the same unroll rule (up to 20 steps)."""
    fn = _ref_single if int(threat.restarts) == 1 else _ref_restarts
    label = tf.cast(target if targeted else y, tf.int32)
    steps = int(threat.steps)
    return fn(model, tf.convert_to_tensor(x, tf.float32), label, tf.constant(threat.eps, tf.float32),
              tf.constant(threat.alpha, tf.float32), steps if steps <= 20 else tf.constant(steps),
              tf.constant(int(threat.restarts)), tf.cast(seed, tf.int64), threat.norm, bool(targeted),
              bool(threat.random_start), schedule)


@pytest.fixture(scope="module")
def small_cnn():
    init = keras.initializers.GlorotNormal(3)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", kernel_initializer=init)(inputs)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inputs, keras.layers.Dense(5, kernel_initializer=init)(h))
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(6, 8, 8, 3)).astype(np.float32)
    x[0] = 0.0  # a saturated image: the box binds
    y = rng.integers(0, 5, 6).astype(np.int32)
    return model, x, y


CASES = [
    dict(norm="linf", eps=8 / 255, steps=3, restarts=1, targeted=False, schedule="constant"),
    dict(norm="l2", eps=0.5, steps=3, restarts=1, targeted=True, schedule="cosine"),
    dict(norm="linf", eps=8 / 255, steps=4, restarts=2, targeted=True, schedule="constant"),
    dict(norm="l2", eps=1.0, steps=2, restarts=3, step_size=0.7, targeted=False, schedule="linear"),
    dict(norm="linf", eps=0.05, steps=23, restarts=1, targeted=False, schedule="cosine"),  # the tensor loop
    dict(norm="l2", eps=0.5, steps=22, restarts=2, targeted=True, schedule="constant"),
    dict(norm="l2", eps=0.5, steps=3, restarts=1, random_start=False, targeted=False, schedule="constant"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_pgd_is_bit_identical_to_the_reference_loop(small_cnn, case):
    model, x, y = small_cnn
    case = dict(case)
    targeted, schedule = case.pop("targeted"), case.pop("schedule")
    threat = Threat(**case)
    target = (y + 1) % 5
    seed = tf.constant([3, 4], tf.int64)
    got = pgd(model, x, y, threat, targeted=targeted, target=target, seed=seed, schedule=schedule).numpy()
    want = reference_pgd(model, x, y, threat, targeted=targeted, target=target, seed=seed,
                         schedule=schedule).numpy()
    np.testing.assert_array_equal(got, want)
    assert np.any(got != x)  # the attack moved: the comparison is not of two copies of x


@pytest.mark.parametrize("norm, eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_fgsm_and_ifgsm_are_bit_identical_to_the_reference_loop(small_cnn, norm, eps):
    model, x, y = small_cnn
    seed = tf.constant([1, 2], tf.int64)
    threat = Threat(norm=norm, eps=eps, steps=5)
    one = dataclasses.replace(threat, steps=1, step_size=eps, restarts=1, random_start=False)
    np.testing.assert_array_equal(fgsm(model, x, y, threat, seed=seed).numpy(),
                                  reference_pgd(model, x, y, one, seed=seed).numpy())
    basic = dataclasses.replace(threat, step_size=eps / 5, restarts=1, random_start=False)
    np.testing.assert_array_equal(ifgsm(model, x, y, threat, seed=seed).numpy(),
                                  reference_pgd(model, x, y, basic, seed=seed).numpy())


def test_a_masked_model_starts_inside_its_mask_as_before(small_cnn):
    model, x, y = small_cnn
    mask = np.zeros((6, 8, 8, 1), np.float32)
    mask[:, 2:5, 3:6] = 1.0
    masked = keras.Model(model.inputs, model.outputs)
    masked.perturbation_mask = tf.constant(mask)
    threat = Threat(norm="l2", eps=0.5, steps=2)
    seed = tf.constant([5, 6], tf.int64)
    np.testing.assert_array_equal(pgd(masked, x, y, threat, seed=seed).numpy(),
                                  reference_pgd(masked, x, y, threat, seed=seed).numpy())


def _simulate(f, grad, x0, steps, step, descend):
    """numpy: normalised-gradient steps clipped to [0, 1]; every iterate with its objective."""
    xs, x = [], x0.astype(np.float64)
    for _ in range(steps):
        g = grad(x)
        d = g / (np.linalg.norm(g.reshape(len(g), -1), axis=1)[:, None, None, None] + 1e-12)
        xs.append(x)
        x = np.clip(x - step * d if descend else x + step * d, 0.0, 1.0)
    xs.append(x)
    return np.stack(xs), np.stack([f(v) for v in xs])


@pytest.mark.parametrize("descend", [False, True])
@pytest.mark.parametrize("tensor_steps", [False, True])
def test_the_core_keeps_the_best_iterate_with_no_ball(descend, tensor_steps):
    """A quadratic bowl (descent) or cap (ascent) around c, steps of 0.3 that overshoot it: the
    iterates oscillate, and the one of best objective is returned, per example, as numpy finds it."""
    from advtf.attacks.iterative import gradient_steps
    from advtf.attacks.threat import ball

    rng = np.random.default_rng(7)
    c = rng.uniform(0.3, 0.7, size=(4, 3, 3, 1))
    x0 = rng.uniform(size=(4, 3, 3, 1)).astype(np.float32)
    sign = 1.0 if descend else -1.0  # minimise ||x - c||^2, or maximise -||x - c||^2
    f = lambda v: sign * ((v - c) ** 2).sum(axis=(1, 2, 3))
    grad = lambda v: sign * 2 * (v - c)
    c_t = tf.constant(c, tf.float32)

    def objective(images):
        return sign * tf.reduce_sum(tf.square(images - c_t), axis=[1, 2, 3])

    steps = 6
    run = tf.function(lambda s: gradient_steps(objective, tf.constant(x0), s, tf.constant(0.3), direction=ball("l2"),
                                               descend=descend, keep_best=True))
    best_x, best_value = (v.numpy() for v in run(tf.constant(steps) if tensor_steps else steps))
    xs, values = _simulate(f, grad, x0, steps, 0.3, descend)
    pick = np.argmin(values, axis=0) if descend else np.argmax(values, axis=0)  # first of ties, as the core
    assert np.all((pick > 0) & (pick < steps))  # the best is neither the start nor the last iterate
    np.testing.assert_allclose(best_x, xs[pick, np.arange(4)], atol=1e-5)
    np.testing.assert_allclose(best_value, values[pick, np.arange(4)], rtol=1e-4, atol=1e-6)
    last = tf.function(lambda: gradient_steps(objective, tf.constant(x0), steps, tf.constant(0.3),
                                              direction=ball("l2"), descend=descend))().numpy()
    np.testing.assert_allclose(last, xs[-1], atol=1e-5)  # without keep-the-best: the last iterate
