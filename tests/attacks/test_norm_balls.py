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


def test_apgd_direction_is_the_old_rescaled_formula_and_survives_huge_gradients():
    from advtf.attacks.apgd import _direction

    for scale in (1.0, 1e-20, 1e30):
        g = tf.constant(fixed_delta((3, 4, 4, 2), seed=9) * np.float32(scale))
        np.testing.assert_array_equal(_direction(g, "linf").numpy(), np.sign(g.numpy()))
        s = tf.reduce_max(tf.abs(g), axis=[1, 2, 3], keepdims=True)
        r = g / (s + 1e-12)
        old = r / (tf.sqrt(tf.reduce_sum(tf.square(r), axis=[1, 2, 3], keepdims=True)) + 1e-12)
        got = _direction(g, "l2").numpy()
        np.testing.assert_array_equal(got, old.numpy())
        assert np.all(np.isfinite(got))
        if scale >= 1:  # (tiny gradients fall below the 1e-12 guard: shorter than unit, as before)
            np.testing.assert_allclose(np.sqrt((got[1:] ** 2).sum(axis=(1, 2, 3))), 1.0, rtol=1e-5)


def test_balls_are_looked_up_by_name_with_a_did_you_mean():
    from advtf.errors import UserError

    assert [threats.ball(n).name for n in ("linf", "l2", "l1", "l0")] == ["linf", "l2", "l1", "l0"]
    with pytest.raises(UserError, match="did you mean l2"):
        threats.ball("l22")
    with pytest.raises(NotImplementedError, match="only a measure"):
        threats.ball("l0").project(tf.zeros([1, 2, 2, 1]), tf.constant(1.0))


DUAL = {"linf": "l1", "l2": "l2", "l1": "linf"}  # <d, g> over the unit ball is the dual norm of g


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_ascent_direction_is_the_steepest_of_unit_norm(norm):
    g = fixed_delta((4, 3, 3, 2), seed=11)
    d = threats.ball(norm).ascent_direction(tf.constant(g)).numpy()
    np.testing.assert_array_equal(d[0], 0.0)  # no gradient, no step
    np.testing.assert_allclose(numpy_norms(d[1:])[norm], 1.0, rtol=1e-6)
    inner = (d * g).reshape(4, -1).sum(1)[1:]
    np.testing.assert_allclose(inner, numpy_norms(g[1:])[DUAL[norm]], rtol=1e-5)


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
@settings(max_examples=30)
@given(seed=st.integers(0, 2**16), eps=st.floats(1e-3, 30.0), side=st.integers(1, 7), scale=st.floats(1e-3, 30.0))
def test_projections_land_in_the_ball_and_are_idempotent(norm, seed, eps, side, scale):
    b = threats.ball(norm)
    d = np.random.default_rng(seed).normal(scale=scale, size=(3, side, side, 2)).astype(np.float32)
    et = tf.constant(eps, tf.float32)
    p = b.project(tf.constant(d), et)
    assert np.all(b.measure(p).numpy() <= eps * (1 + 1e-6) + 1e-7)
    np.testing.assert_allclose(b.project(p, et).numpy(), p.numpy(), rtol=3e-6, atol=1e-7 * eps)
    inside = numpy_norms(d)[norm] <= eps * (1 - 1e-5)
    np.testing.assert_allclose(p.numpy()[inside], d[inside], rtol=1e-6, atol=1e-9)  # inside: left alone


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
@settings(max_examples=30)
@given(seed=st.integers(0, 2**16), eps=st.floats(1e-3, 30.0), side=st.integers(1, 7), masked=st.booleans())
def test_random_starts_lie_in_the_ball_and_the_mask(norm, seed, eps, side, masked):
    shape = (4, side, side, 3)
    mask = np.random.default_rng(seed).integers(0, 2, size=(4, side, side, 1)).astype(np.float32) if masked else None
    start = threats.ball(norm).random_start(tf.constant(shape), tf.constant(eps, tf.float32),
                                            tf.constant([seed, 3], tf.int64), mask).numpy()
    assert start.shape == shape and np.all(np.isfinite(start))
    assert np.all(numpy_norms(start)[norm] <= eps * (1 + 1e-6))
    if masked:
        assert np.all(start[np.broadcast_to(mask, shape) == 0] == 0)


def test_l1_random_start_is_uniform_in_the_cross_polytope():
    """In d = 2 the l1 ball is a square of area 2 eps^2: each quadrant's triangle gets a quarter and
    the l1 norm's distribution is P(|v|_1 <= r) = (r/eps)^2."""
    n, eps = 20000, 0.5
    v = threats.ball("l1").random_start(tf.constant([n, 1, 1, 2]), tf.constant(eps), tf.constant([1, 2], tf.int64))
    v = v.numpy().reshape(n, 2)
    quadrant = (v[:, 0] > 0) * 2 + (v[:, 1] > 0)
    np.testing.assert_allclose(np.bincount(quadrant, minlength=4) / n, 0.25, atol=0.015)
    r = np.abs(v).sum(1) / eps
    for q in (0.25, 0.5, 0.75):
        assert abs(np.mean(r <= q) - q ** 2) < 0.015
