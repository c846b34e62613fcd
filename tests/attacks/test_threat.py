"""Projections, norms, targets and per-example outcomes against numpy."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from advtf.attacks import NORMS, attack_outcome, choose_targets, clip_to_threat, per_example_norm
from advtf.attacks.threat import project
from advtf.errors import UserError


def l1_projection_by_bisection(v, eps):
    """Projection onto the l1 ball: soft-threshold at the theta where the l1 norm equals eps."""
    if np.abs(v).sum() <= eps:
        return v
    lo, hi = 0.0, float(np.abs(v).max())
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.maximum(np.abs(v) - mid, 0).sum() > eps:
            lo = mid
        else:
            hi = mid
    return np.sign(v) * np.maximum(np.abs(v) - hi, 0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), eps=st.floats(0.01, 20.0), side=st.integers(1, 6))
def test_l1_projection_matches_bisection(seed, eps, side):
    v = np.random.default_rng(seed).normal(size=(3, side, side, 2)).astype(np.float64)
    got = project(tf.constant(v, tf.float32), tf.constant(eps, tf.float32), "l1").numpy()
    for i in range(3):
        expected = l1_projection_by_bisection(v[i].ravel(), eps).reshape(v[i].shape)
        np.testing.assert_allclose(got[i], expected, atol=2e-5 * max(1.0, eps))
        assert np.abs(got[i]).sum() <= eps + 1e-6


@pytest.mark.parametrize("norm", NORMS)
def test_clip_to_threat_holds_both_constraints(norm):
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(5, 4, 4, 3)).astype(np.float32)
    far = x + rng.normal(scale=3.0, size=x.shape).astype(np.float32)
    out = clip_to_threat(tf.constant(x), tf.constant(far), 0.7, norm).numpy()
    assert out.min() >= 0 and out.max() <= 1
    assert np.all(per_example_norm(out - x, norm).numpy() <= 0.7 + 1e-6)
    inside = x + 0.01 * np.sign(rng.normal(size=x.shape)).astype(np.float32) / 48
    inside = np.clip(inside, 0, 1)
    np.testing.assert_allclose(clip_to_threat(tf.constant(x), tf.constant(inside), 0.7, norm).numpy(), inside,
                               atol=1e-7)


def test_per_example_norms_against_numpy():
    d = np.zeros((2, 3, 3, 1), np.float32)
    d[0, 0, 0, 0], d[0, 1, 2, 0] = 0.3, -0.4
    d[1, 2, 2, 0] = 1e-8  # float noise does not count towards l0
    expected = {"l0": [2, 0], "l1": [0.7, 1e-8], "l2": [0.5, 1e-8], "linf": [0.4, 1e-8]}
    for norm, values in expected.items():
        np.testing.assert_allclose(per_example_norm(tf.constant(d), norm).numpy(), values, rtol=1e-5, atol=1e-9)


def test_targets():
    y = tf.constant(np.arange(1000) % 10, tf.int32)
    random = choose_targets(y, 10, "random", seed=tf.constant([1, 2], tf.int64)).numpy()
    assert np.all(random != y.numpy()) and set(random) == set(range(10))
    for label in range(10):  # every other class is drawn for every label
        assert set(random[y.numpy() == label]) == set(range(10)) - {label}
    np.testing.assert_array_equal(choose_targets(y, 10, "next").numpy(), (y.numpy() + 1) % 10)
    np.testing.assert_array_equal(choose_targets(y, 10, "given", given=4).numpy(), np.full(1000, 4))
    again = choose_targets(y, 10, "random", seed=tf.constant([1, 2], tf.int64)).numpy()
    np.testing.assert_array_equal(random, again)


@pytest.mark.parametrize("kwargs, words", [
    (dict(num_classes=1, mode="next"), "at least two classes"),
    (dict(num_classes=10, mode="given"), "--target-class"),
    (dict(num_classes=10, mode="given", given=10), "outside"),
    (dict(num_classes=10, mode="sideways"), "unknown target mode"),
])
def test_bad_targets(kwargs, words):
    with pytest.raises(UserError, match=words):
        choose_targets(tf.constant([0, 1]), **kwargs)


def test_outcome_on_a_hand_made_model():
    import keras

    # logits = [sum(x), 0, -sum(x)]: class 0 iff sum(x) > 0 ... class 2 iff sum(x) < 0.
    inputs = keras.Input((2, 2, 1))
    s = keras.layers.Flatten()(inputs)
    logits = keras.layers.Dense(3, use_bias=False, kernel_initializer=keras.initializers.Constant(
        np.array([[1.0, 0.0, -1.0]] * 4)))(s)
    model = keras.Model(inputs, logits)
    x = np.full((2, 2, 2, 1), 0.5, np.float32)
    x_adv = x.copy()
    x_adv[1] = 0.0  # sum 0: all logits 0, argmax picks class 0 -> still class 0; make it negative instead
    x_adv[1, 0, 0, 0] = -0.1
    out = attack_outcome(model, x, x_adv, np.array([0, 0]))
    assert list(out["clean_prediction"].numpy()) == [0, 0]
    assert list(out["adversarial_prediction"].numpy()) == [0, 2]
    assert list(out["success"].numpy()) == [False, True]
    assert out["l0"].numpy()[1] == 4 and out["linf"].numpy()[1] == pytest.approx(0.6)
    targeted = attack_outcome(model, x, x_adv, np.array([0, 0]), targeted=True, target=np.array([1, 2]))
    assert list(targeted["success"].numpy()) == [False, True]
