"""Robustification: seed choice, the descent step against numpy, and real distance reduction."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from advtf.analysis.robustify import representation_model, robustify_batch, seed_indices
from advtf.errors import UserError


def test_seeds_are_never_the_image_and_uniform_over_the_others():
    n = 2001
    seeds = seed_indices(n, seed=3)
    assert seeds.shape == (n,) and seeds.min() >= 0 and seeds.max() < n
    assert not np.any(seeds == np.arange(n))
    # The offset (seed - i) mod n is uniform over 1..n-1: pool several draws, 10 equal bins.
    shifts = np.concatenate([(seed_indices(n, seed=s) - np.arange(n)) % n for s in range(10)])
    counts = np.histogram(shifts, bins=10, range=(1, n))[0]
    expected = len(shifts) / 10
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 27.9  # p = 0.001 for 9 degrees of freedom
    assert np.array_equal(seed_indices(n, seed=3), seeds)
    assert not np.array_equal(seed_indices(n, seed=4), seeds)
    assert set(seed_indices(2, seed=0)) == {0, 1} and list(seed_indices(2, seed=0)) == [1, 0]


def test_seeds_need_two_images():
    with pytest.raises(UserError, match="at least two images"):
        seed_indices(1, seed=0)


def _linear_model(weights: np.ndarray, shape=(2, 2, 1)):
    """rep(x) = W vec(x): a representation whose gradient has a closed form."""
    inputs = keras.Input(shape)
    flat = keras.layers.Flatten()(inputs)
    rep = keras.layers.Dense(weights.shape[1], use_bias=False, name="rep")(flat)
    rep = keras.layers.Identity(name="ep_representation")(rep)
    logits = keras.layers.Dense(3, name="logits")(rep)
    model = keras.Model(inputs, logits)
    model.get_layer("rep").set_weights([weights])
    return model


def test_one_step_is_the_normalised_gradient_step_of_the_relative_distance(rng):
    w = rng.normal(size=(4, 3)).astype(np.float32)
    extractor = representation_model(_linear_model(w))
    x = rng.uniform(0.2, 0.8, size=(5, 2, 2, 1)).astype(np.float32)
    x0 = rng.uniform(0.2, 0.8, size=(5, 2, 2, 1)).astype(np.float32)
    step = 0.05
    x_r, before, after = (v.numpy() for v in robustify_batch(extractor, x, x0, steps=1, step_size=step))
    target, start = x.reshape(5, -1) @ w, x0.reshape(5, -1) @ w
    residual = start - target
    d0 = np.linalg.norm(residual, axis=1) / np.linalg.norm(target, axis=1)
    grad = residual @ w.T / (np.linalg.norm(residual, axis=1, keepdims=True) * np.linalg.norm(target, axis=1,
                                                                                               keepdims=True))
    x1 = np.clip(x0.reshape(5, -1) - step * grad / np.linalg.norm(grad, axis=1, keepdims=True), 0, 1)
    d1 = np.linalg.norm(x1 @ w - target, axis=1) / np.linalg.norm(target, axis=1)
    np.testing.assert_allclose(before, d0, rtol=1e-5)
    # The better of x0 and x1 is kept, per example.
    keep_new = d1 < d0
    expected = np.where(keep_new[:, None], x1, x0.reshape(5, -1))
    np.testing.assert_allclose(x_r.reshape(5, -1), expected, atol=1e-6)
    np.testing.assert_allclose(after, np.minimum(d0, d1), rtol=1e-5)


@pytest.fixture(scope="module")
def trained_model():
    from tiny import fitted_test_cnn

    return fitted_test_cnn(test_subset=64)


def test_robustify_lowers_the_representation_distance_of_a_trained_model(trained_model):
    model, (x, y) = trained_model
    extractor = representation_model(model)
    seeds = seed_indices(len(x), seed=0)
    x_r, before, after = (v.numpy() for v in robustify_batch(extractor, x, x[seeds], steps=60, step_size=0.1))
    assert x_r.min() >= 0.0 and x_r.max() <= 1.0
    assert np.all(after <= before + 1e-6)
    assert after.mean() < 0.4 * before.mean(), (before.mean(), after.mean())
    # The reported distances are those of the returned images (independent recomputation).
    rep = lambda images: extractor(images, training=False)["representation"].numpy().reshape(len(images), -1)
    target = rep(x)
    recomputed = np.linalg.norm(rep(x_r) - target, axis=1) / np.linalg.norm(target, axis=1)
    np.testing.assert_allclose(after, recomputed, rtol=1e-3, atol=1e-5)


def test_a_model_without_a_representation_endpoint_is_a_user_error():
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    with pytest.raises(UserError, match="robustify"):
        representation_model(model)
    marked = keras.layers.Identity(name="ep_m0")(keras.layers.Flatten()(inputs))
    with pytest.raises(UserError, match="no 'representation' endpoint"):
        representation_model(keras.Model(inputs, keras.layers.Dense(2)(marked)))


def test_images_and_seeds_must_match():
    model = _linear_model(np.ones((4, 3), np.float32))
    with pytest.raises(ValueError):
        robustify_batch(representation_model(model), tf.zeros([2, 2, 2, 1]), tf.zeros([3, 2, 2, 1]), steps=1,
                        step_size=0.1)


def test_a_batch_split_over_two_replicas_gives_the_single_device_result(trained_model, two_cpu_strategy):
    from advtf.distribute.replicas import map_replicas

    model, (x, _) = trained_model
    extractor = representation_model(model)
    x, x0 = x[:9], x[9:18]  # 9 images: shards of 4 and 5

    def fn(a, b):
        return robustify_batch(extractor, a, b, steps=5, step_size=0.1)

    single = [v.numpy() for v in fn(x, x0)]
    split = map_replicas(two_cpu_strategy, fn, x, x0)
    for one, two in zip(single, split):
        np.testing.assert_allclose(one, two, atol=1e-5)


def _reference_distance(extractor, x, target):
    rep = extractor(x, training=False)["representation"]
    rep = tf.reshape(rep, [tf.shape(rep)[0], -1])
    return tf.norm(rep - target, axis=1) / (tf.norm(target, axis=1) + 1e-12)


def _reference_invert(extractor, target, x0, step_size, steps):
    """A copy of the hand-written descent before it became the PGD core (advtf 2026-12-01)."""
    x = x0
    start = _reference_distance(extractor, x0, target)
    best, best_distance = x0, start
    for _ in tf.range(steps):
        with tf.GradientTape() as tape:
            tape.watch(x)
            distance = _reference_distance(extractor, x, target)
            total = tf.reduce_sum(distance)
        grad = tape.gradient(total, x)
        better = distance < best_distance
        best = tf.where(better[:, None, None, None], x, best)
        best_distance = tf.where(better, distance, best_distance)
        norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=[1, 2, 3], keepdims=True))
        x = tf.clip_by_value(x - step_size * grad / (norm + 1e-12), 0.0, 1.0)
    distance = _reference_distance(extractor, x, target)
    better = distance < best_distance
    best = tf.where(better[:, None, None, None], x, best)
    best_distance = tf.where(better, distance, best_distance)
    return best, start, best_distance


_reference_compiled = tf.function(_reference_invert, reduce_retracing=True)


@pytest.mark.parametrize("steps", [7, 1, 0])
def test_robustify_matches_the_hand_written_descent_to_rounding(steps):
    """The PGD core scales the unit direction, ``step * (g / ||g||)``, where the hand-written loop
    scaled the gradient first, ``(step * g) / ||g||``: the two round differently in the last bit,
    so one step agrees to 1 ulp of [0.5, 1) and seven steps to a few; the start is exact."""
    from advtf.models import create_model

    model = create_model("test_cnn", input_shape=(8, 8, 1), num_classes=4, seed=2)
    extractor = representation_model(model)
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(6, 8, 8, 1)).astype(np.float32)
    x[0] = 1.0  # a saturated image: the box binds
    x0 = x[seed_indices(6, seed=1)]
    got = [v.numpy() for v in robustify_batch(extractor, x, x0, steps=steps, step_size=0.1)]
    target = tf.reshape(extractor(x, training=False)["representation"], [6, -1])
    want = [v.numpy() for v in _reference_compiled(extractor, target, tf.constant(x0), tf.constant(0.1),
                                                     tf.constant(steps))]
    np.testing.assert_array_equal(got[1], want[1])
    if steps == 0:
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[2], want[2])
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=2 ** -24 if steps == 1 else 2 ** -21)
    np.testing.assert_allclose(got[2], want[2], rtol=2e-6)
    if steps == 7:
        assert np.any(got[0] != x0) and np.all(got[2] < got[1])  # the descent moved and helped
