"""Refined attacks (Xu et al. 2019, Appendix 3, Eq. 11): a random start is drawn inside the pixel set S."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from advtf.adversarial import AttackRequest
from advtf.analysis.refine import refined_attack
from advtf.attacks import Threat
from advtf.attacks.threat import random_start


def _linear(shape=(8, 8, 2), classes=3, seed=0):
    rng = np.random.default_rng(seed)
    inputs = keras.Input(shape)
    dense = keras.layers.Dense(classes)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    dense.set_weights([rng.normal(size=(int(np.prod(shape)), classes)).astype(np.float32),
                       np.zeros(classes, np.float32)])
    return model


def _mask(rng, n, shape=(8, 8), share=0.3):
    mask = (rng.uniform(size=(n, *shape)) < share).astype(np.float32)
    mask[:, 0, 0] = 1  # never empty
    return mask


@pytest.mark.parametrize("name", ["pgd", "apgd-ce"])
def test_l2_random_start_refined_attack_spends_its_whole_budget_inside_s(rng, name):
    model = _linear()
    x = rng.uniform(0.3, 0.7, size=(6, 8, 8, 2)).astype(np.float32)
    # untargeted from the model's own prediction: no example counts as already fooled, so APGD
    # attacks the whole batch (the wrapper's mask is per batch row)
    y = np.argmax(model(x).numpy(), -1).astype(np.int32)
    mask = _mask(rng, 6)
    eps = 0.5  # far from the box: no pixel of x + delta reaches 0 or 1
    # Steps of 0.6 eps along a near-constant gradient leave the ball by the last step, so the
    # projection puts delta on the sphere; each projection shrinks (never removes) noise outside S.
    threat = Threat(norm="l2", eps=eps, steps=5, step_size=0.6 * eps, random_start=True)
    refined = refined_attack(model, x, y, mask, AttackRequest(name=name, threat=threat), seed=3)
    delta = refined - x
    outside = np.broadcast_to(mask[..., None] == 0, delta.shape)
    assert np.all(delta[outside] == 0)
    assert refined.min() >= 0 and refined.max() <= 1
    norms = np.sqrt(np.sum(np.square(delta), axis=(1, 2, 3)))
    assert np.all(norms <= eps * (1 + 1e-5))
    # The whole budget reaches S (with the start drawn over every pixel, noise outside S that the
    # model never sees kept ||delta_S|| below eps).
    np.testing.assert_allclose(norms, eps, rtol=1e-4)


def test_linf_random_start_refined_attack_stays_inside_s(rng):
    model = _linear()
    x = rng.uniform(0.2, 0.8, size=(4, 8, 8, 2)).astype(np.float32)
    y = rng.integers(0, 3, size=4).astype(np.int32)
    mask = _mask(rng, 4)
    threat = Threat(norm="linf", eps=0.1, steps=3, step_size=0.05, random_start=True)
    refined = refined_attack(model, x, y, mask, AttackRequest(name="pgd", threat=threat))
    delta = refined - x
    assert np.all(delta[np.broadcast_to(mask[..., None] == 0, delta.shape)] == 0)
    assert np.abs(delta).max() <= 0.1 + 1e-6
    inside = np.abs(delta[np.broadcast_to(mask[..., None] == 1, delta.shape)])
    assert np.mean(inside > 0) > 0.99 and inside.max() == pytest.approx(0.1, abs=1e-6)


def test_masked_l2_start_is_uniform_in_the_ball_of_the_allowed_entries():
    # Two allowed entries: a uniform draw from a 2-D disc of radius eps has (r / eps)^2 ~ U(0, 1).
    n, eps = 4000, 0.7
    mask = np.zeros((n, 3, 3, 1), np.float32)
    mask[:, 1, 2] = mask[:, 0, 0] = 1
    noise = random_start(tf.constant([n, 3, 3, 1]), tf.constant(eps), "l2", tf.constant([5, 9], tf.int64),
                         tf.constant(mask)).numpy()
    assert np.all(noise[mask == 0] == 0)
    radius = np.sqrt(np.sum(np.square(noise), axis=(1, 2, 3)))
    assert radius.max() <= eps * (1 + 1e-6)
    assert stats.kstest((radius / eps) ** 2, "uniform").pvalue > 1e-3
    # the unmasked draw is unchanged by an all-ones mask
    shape, seed = tf.constant([5, 4, 4, 3]), tf.constant([1, 2], tf.int64)
    np.testing.assert_allclose(random_start(shape, tf.constant(eps), "l2", seed, tf.ones([5, 4, 4, 1])).numpy(),
                               random_start(shape, tf.constant(eps), "l2", seed).numpy(), rtol=1e-5, atol=1e-7)
