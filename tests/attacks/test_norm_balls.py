"""The norm balls (linf, l2, l1; l0 as a measure): projections, steps, starts and measures.

Fixed inputs are checked against closed forms in numpy (l2: delta * min(1, eps/||delta||); linf:
clipping; l1: Duchi et al. 2008's sort-based projection written here) and, bit for bit, against
a frozen copy of the code before the per-ball objects (frozen_geometry.py). Property tests check
that every projection lands in its ball and is idempotent and every random start lies in the
ball and in its mask.
"""

import numpy as np
import pytest
import tensorflow as tf
from frozen_geometry import ascent_direction as old_ascent
from frozen_geometry import per_example_norm as old_norm
from frozen_geometry import project as old_project
from frozen_geometry import random_start as old_start
from hypothesis import given, settings
from hypothesis import strategies as st

from advtf.attacks import threat as threats

SHAPES = [(3, 4, 4, 1), (2, 5, 3, 3), (4, 1, 1, 2)]
EPS = [1e-3, 0.05, 0.5, 3.0]


def duchi_l1_projection(v: np.ndarray, eps: float) -> np.ndarray:
    """Duchi et al. (2008), Fig. 1: soft-threshold at theta from the sorted magnitudes (float64)."""
    a = np.abs(v).ravel()
    if a.sum() <= eps:
        return v.copy()
    u = np.sort(a)[::-1]
    css = np.cumsum(u)
    rho = np.nonzero(u * np.arange(1, len(u) + 1) > css - eps)[0][-1]
    theta = (css[rho] - eps) / (rho + 1.0)
    return np.sign(v) * np.maximum(np.abs(v) - theta, 0.0)


def fixed_delta(shape, seed=0, scale=1.0):
    """A deterministic perturbation batch with a zero example and some exact ties."""
    d = np.random.default_rng(seed).normal(scale=scale, size=shape).astype(np.float32)
    d[0] = 0.0
    if d.shape[0] > 2:
        d[2].flat[:2] = [0.25, -0.25]
    return d


def numpy_norms(d: np.ndarray) -> dict:
    flat = d.reshape(len(d), -1).astype(np.float64)
    return {"linf": np.abs(flat).max(1), "l2": np.sqrt((flat ** 2).sum(1)), "l1": np.abs(flat).sum(1),
            "l0": (np.abs(flat) > 1e-6).sum(1)}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("eps", EPS)
def test_projections_match_closed_forms_and_the_old_code_bit_for_bit(shape, eps):
    for scale in (0.01, 1.0, 10.0):
        d = fixed_delta(shape, seed=len(shape) + int(eps * 100), scale=scale)
        dt, et = tf.constant(d), tf.constant(eps, tf.float32)
        linf = threats.project(dt, et, "linf").numpy()
        np.testing.assert_array_equal(linf, np.clip(d, -np.float32(eps), np.float32(eps)))
        l2 = threats.project(dt, et, "l2").numpy()
        n = numpy_norms(d)["l2"]
        expected = d * np.minimum(1.0, eps / (n + 1e-12))[:, None, None, None]
        np.testing.assert_allclose(l2, expected, rtol=2e-6, atol=1e-9)
        l1 = threats.project(dt, et, "l1").numpy()
        for i in range(len(d)):
            np.testing.assert_allclose(l1[i], duchi_l1_projection(d[i].astype(np.float64), eps), rtol=2e-5,
                                       atol=2e-6 * max(eps, 1.0))
        for norm in ("linf", "l2", "l1"):
            np.testing.assert_array_equal(threats.project(dt, et, norm).numpy(), old_project(dt, et, norm).numpy())


@pytest.mark.parametrize("shape", SHAPES)
def test_measures_match_numpy_and_the_old_code(shape):
    d = fixed_delta(shape, seed=3)
    d.flat[-1] = 5e-7  # float noise: not an l0 entry
    expected = numpy_norms(d)
    for norm in ("linf", "l2", "l1", "l0"):
        got = threats.per_example_norm(tf.constant(d), norm).numpy()
        assert got.shape == (len(d),)
        np.testing.assert_allclose(got, expected[norm], rtol=1e-6, atol=1e-12)
        np.testing.assert_array_equal(got, old_norm(tf.constant(d), norm).numpy())


@pytest.mark.parametrize("shape", SHAPES)
def test_ascent_directions_match_closed_forms_and_the_old_code(shape):
    g = fixed_delta(shape, seed=5)
    gt = tf.constant(g)
    np.testing.assert_array_equal(threats.ascent_direction(gt, "linf").numpy(), np.sign(g))
    n = numpy_norms(g)["l2"][:, None, None, None]
    np.testing.assert_allclose(threats.ascent_direction(gt, "l2").numpy(), g / (n + 1e-12), rtol=2e-6, atol=1e-12)
    for norm in ("linf", "l2"):
        np.testing.assert_array_equal(threats.ascent_direction(gt, norm).numpy(), old_ascent(gt, norm).numpy())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("masked", [False, True])
def test_random_starts_are_the_old_draws(shape, masked):
    seed = tf.constant([7, 11], tf.int64)
    mask = None
    if masked:
        mask = tf.constant(np.random.default_rng(1).integers(0, 2, size=shape[:3] + (1,)), tf.float32)
    eps = tf.constant(0.3)
    linf = threats.random_start(tf.constant(shape), eps, "linf", seed, mask).numpy()
    expected = tf.random.stateless_uniform(shape, seed, minval=-1.0, maxval=1.0).numpy() * np.float32(0.3)
    if masked:
        expected = expected * np.broadcast_to(mask.numpy(), shape)
    np.testing.assert_array_equal(linf, expected)
    for norm in ("linf", "l2"):
        np.testing.assert_array_equal(threats.random_start(tf.constant(shape), eps, norm, seed, mask).numpy(),
                                      old_start(tf.constant(shape), eps, norm, seed, mask).numpy())
