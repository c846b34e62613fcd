"""PGD / FGSM: constraints always hold, closed forms on linear models, restarts never weaken."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from advtf.attacks import Threat, fast_fgsm, fgsm, per_example_norm, pgd
from advtf.errors import UserError


def linear_model(shape, classes, seed=0):
    inputs = keras.Input(shape)
    logits = keras.layers.Dense(classes, kernel_initializer=keras.initializers.RandomNormal(stddev=1.0, seed=seed),
                                bias_initializer="zeros")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, logits)


def conv_model(shape, classes, seed=0):
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                            kernel_initializer=keras.initializers.GlorotNormal(seed))(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, kernel_initializer=keras.initializers.GlorotNormal(seed))(x))


@settings(max_examples=20, deadline=None)
@given(
    norm=st.sampled_from(["linf", "l2"]),
    eps=st.floats(0.001, 3.0),
    steps=st.integers(1, 4),
    restarts=st.integers(1, 2),
    side=st.integers(2, 6),
    channels=st.sampled_from([1, 3]),
    batch=st.integers(1, 5),
    step_scale=st.floats(0.1, 5.0),
    seed=st.integers(0, 2**16),
    targeted=st.booleans(),
    which=st.sampled_from(["pgd", "fgsm", "fast"]),
)
def test_attacks_stay_in_ball_and_box(norm, eps, steps, restarts, side, channels, batch, step_scale, seed,
                                      targeted, which):
    rng = np.random.default_rng(seed)
    shape = (side, side, channels)
    model = (linear_model if seed % 2 else conv_model)(shape, 3, seed)
    x = tf.constant(rng.choice([0.0, 1.0, 0.5], size=(batch, *shape)) * rng.uniform(size=(batch, *shape)), tf.float32)
    y = tf.constant(rng.integers(0, 3, batch), tf.int32)
    target = (y + 1) % 3
    threat = Threat(norm=norm, eps=eps, steps=steps, step_size=step_scale * eps / steps, restarts=restarts)
    attack = {"pgd": pgd, "fgsm": fgsm, "fast": fast_fgsm}[which]
    x_adv = attack(model, x, y, threat, targeted=targeted, target=target if targeted else None,
                   seed=tf.constant([seed, 1], tf.int64)).numpy()
    assert np.all(x_adv >= 0.0) and np.all(x_adv <= 1.0)
    assert np.all(per_example_norm(x_adv - x.numpy(), norm).numpy() <= eps + 1e-6)


def test_fgsm_equals_closed_form_on_linear_model():
    shape, classes = (4, 4, 1), 3
    model = linear_model(shape, classes)
    w, b = (v.numpy() for v in model.layers[-1].weights)
    rng = np.random.default_rng(1)
    x = rng.uniform(0.2, 0.8, size=(6, *shape)).astype(np.float32)
    y = rng.integers(0, classes, 6)
    logits = x.reshape(6, -1) @ w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = (p - np.eye(classes)[y]) @ w.T  # d CE / d x for logits = W^T x + b
    eps = 0.05
    expected = np.clip(x + eps * np.sign(grad).reshape(x.shape), 0, 1)
    got = fgsm(model, x, y, Threat(norm="linf", eps=eps)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    expected_l2 = np.clip(x + eps * (grad / np.linalg.norm(grad, axis=1, keepdims=True)).reshape(x.shape), 0, 1)
    np.testing.assert_allclose(fgsm(model, x, y, Threat(norm="l2", eps=eps)).numpy(), expected_l2, atol=1e-6)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_reaches_analytic_worst_case_on_linear_model(norm):
    # Two classes: the CE of label 0 grows with the margin m = (w1 - w0) . x; its maximum over
    # the ball is at delta = eps * sign(v) (linf) or eps * v / |v| (l2), v = w1 - w0.
    shape = (3, 3, 1)
    model = linear_model(shape, 2, seed=3)
    w, _ = (v.numpy() for v in model.layers[-1].weights)
    v = w[:, 1] - w[:, 0]
    x = np.full((1, *shape), 0.5, np.float32)
    eps = 0.05  # small enough that [0, 1] never binds
    best = eps * (np.sign(v) if norm == "linf" else v / np.linalg.norm(v))
    # A step as long as eps: from any start on the sphere, each l2 step halves the angle to v.
    x_adv = pgd(model, x, np.zeros(1, np.int32), Threat(norm=norm, eps=eps, steps=40, step_size=eps)).numpy()
    margin = (x_adv - x).reshape(-1) @ v
    assert margin == pytest.approx(best @ v, rel=1e-4)


def test_restarts_never_weaken():
    shape = (6, 6, 1)
    model = conv_model(shape, 4, seed=5)
    rng = np.random.default_rng(2)
    x = tf.constant(rng.uniform(size=(32, *shape)), tf.float32)
    y = tf.argmax(model(x), -1, output_type=tf.int32)
    seed = tf.constant([7, 7], tf.int64)
    base = Threat(norm="l2", eps=0.3, steps=3)
    one = pgd(model, x, y, base, seed=seed)
    many = pgd(model, x, y, Threat(norm="l2", eps=0.3, steps=3, restarts=4), seed=seed)

    def loss_and_success(xa):
        logits = model(xa)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits).numpy()
        return loss, (tf.argmax(logits, -1, output_type=tf.int32) != y).numpy()

    loss1, ok1 = loss_and_success(one)
    lossk, okk = loss_and_success(many)
    clean_loss, _ = loss_and_success(x)
    assert np.all(loss1 > clean_loss)  # the attack raises every loss (none is fooled at this eps: a no-op would pass)
    assert np.all(okk >= ok1)
    both_failed = ~ok1 & ~okk
    assert np.all(lossk[both_failed] >= loss1[both_failed] - 1e-5)


def test_pgd_does_not_retrace_when_eps_or_long_steps_change():
    from advtf.attacks import iterative

    model = linear_model((4, 4, 1), 3)
    x = tf.random.uniform((2, 4, 4, 1))
    y = tf.constant([0, 1])
    long_steps = iterative.UNROLL_MAX_STEPS + 1
    pgd(model, x, y, Threat(norm="linf", eps=0.1, steps=long_steps, restarts=2))
    before = iterative._compiled.experimental_get_tracing_count()
    pgd(model, x, y, Threat(norm="linf", eps=0.3, steps=long_steps + 7, step_size=0.01, restarts=2))
    assert iterative._compiled.experimental_get_tracing_count() == before
    # Short attacks are unrolled: one trace per step count, none per eps or step size.
    pgd(model, x, y, Threat(norm="l2", eps=0.1, steps=3))
    before = iterative._single.experimental_get_tracing_count()
    pgd(model, x, y, Threat(norm="l2", eps=0.7, steps=3, step_size=0.2))
    assert iterative._single.experimental_get_tracing_count() == before


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_unrolled_and_tensor_loops_agree(norm, monkeypatch):
    from advtf.attacks import iterative

    model = conv_model((6, 6, 1), 4, seed=2)
    x = tf.random.stateless_uniform((5, 6, 6, 1), [1, 2])
    y = tf.constant([0, 1, 2, 3, 0])
    threat = Threat(norm=norm, eps=0.2, steps=4)
    seed = tf.constant([3, 4], tf.int64)
    unrolled = pgd(model, x, y, threat, seed=seed).numpy()
    monkeypatch.setattr(iterative, "UNROLL_MAX_STEPS", 0)
    looped = pgd(model, x, y, threat, seed=seed).numpy()
    np.testing.assert_allclose(unrolled, looped, atol=1e-6)


def test_l2_pgd_reaches_the_sphere_when_the_box_binds():
    # Clip to the box before projecting: the result lies on the eps-sphere even where pixels saturate.
    model = linear_model((4, 4, 1), 2, seed=1)
    x = tf.constant(np.where(np.arange(16).reshape(1, 4, 4, 1) % 2, 1.0, 0.0), tf.float32)
    x_adv = pgd(model, x, tf.constant([0]), Threat(norm="l2", eps=0.5, steps=10, random_start=False))
    assert per_example_norm(x_adv - x, "l2").numpy()[0] == pytest.approx(0.5, rel=1e-5)


@pytest.mark.parametrize("kwargs", [dict(eps=0), dict(eps=-1), dict(steps=0), dict(restarts=0),
                                    dict(norm="l7"), dict(step_size=0)])
def test_threat_rejects_bad_budgets(kwargs):
    with pytest.raises(UserError):
        Threat(**kwargs)


def test_parse_number_accepts_fractions():
    from advtf.attacks import parse_number

    assert parse_number("8/255") == pytest.approx(8 / 255)
    assert parse_number("0.5") == 0.5
    with pytest.raises(UserError):
        parse_number("__import__('os')")
