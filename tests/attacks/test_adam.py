"""The shared Adam of the attacks against an independent NumPy Adam (Kingma & Ba 2015, Algorithm 1)."""

import numpy as np
import pytest
import tensorflow as tf

from advtf.attacks.adam import adam_init, adam_reset, adam_step


def numpy_adam(theta, grad_fn, steps, lr, b1=0.9, b2=0.999, eps=1e-8):
    """Algorithm 1 of Kingma & Ba (2015), written out in float64 NumPy; returns every iterate."""
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    out = []
    for t in range(1, steps + 1):
        g = grad_fn(theta)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(theta.copy())
    return out


def quad_grad(a, c):
    """Gradient of the per-example quadratic 0.5 * a * (theta - c)^2 (elementwise curvatures)."""
    return lambda theta: a * (theta - c)


@pytest.mark.parametrize("lr", [0.1, 0.01])
def test_matches_numpy_adam_over_several_steps(lr):
    rng = np.random.default_rng(0)
    theta0 = rng.normal(size=(3, 4, 4, 2))
    a = rng.uniform(0.1, 5.0, size=theta0.shape)
    c = rng.normal(size=theta0.shape)
    grad = quad_grad(a, c)
    expected = numpy_adam(theta0, grad, steps=12, lr=lr)

    var = tf.constant(theta0, tf.float64)
    m, v = adam_init(var)
    for t in range(1, 13):
        g = tf.constant(grad(var.numpy()), tf.float64)
        var, m, v = adam_step(var, g, m, v, tf.constant(t), lr)
        np.testing.assert_allclose(var.numpy(), expected[t - 1], rtol=1e-12, atol=1e-12)


def test_first_step_moves_every_coordinate_by_lr():
    # Hand-made: at t = 1, m_hat = g and v_hat = g^2, so the step is lr * sign(g) (up to eps).
    var = tf.constant([[1.0, -2.0, 0.5]], tf.float64)
    g = tf.constant([[3.0, -0.001, 40.0]], tf.float64)
    m, v = adam_init(var)
    new, m, v = adam_step(var, g, m, v, 1, 0.1)
    np.testing.assert_allclose(new.numpy(), [[0.9, -1.9, 0.4]], rtol=0, atol=1e-6)
    np.testing.assert_allclose(m.numpy(), 0.1 * g.numpy())
    np.testing.assert_allclose(v.numpy(), 0.001 * g.numpy() ** 2)


def test_per_example_step_counts_and_reset():
    """Example 1 reset after 3 steps follows a fresh NumPy Adam; example 0 continues unchanged."""
    rng = np.random.default_rng(1)
    theta0 = rng.normal(size=(2, 5))
    a = rng.uniform(0.5, 2.0, size=theta0.shape)
    c = rng.normal(size=theta0.shape)
    grad = quad_grad(a, c)
    var = tf.constant(theta0, tf.float64)
    m, v = adam_init(var)
    t = tf.zeros([2], tf.int32)
    for _ in range(3):
        t = t + 1
        var, m, v = adam_step(var, tf.constant(grad(var.numpy())), m, v, t, 0.05)
    after3 = var.numpy().copy()
    m, v, t = adam_reset(tf.constant([False, True]), m, v, t)
    assert t.numpy().tolist() == [3, 0]
    for _ in range(4):
        t = t + 1
        var, m, v = adam_step(var, tf.constant(grad(var.numpy())), m, v, t, 0.05)
    uninterrupted = numpy_adam(theta0[:1], lambda th: grad(np.vstack([th, th]))[:1], 7, 0.05)[-1]
    fresh = numpy_adam(after3[1:], lambda th: grad(np.vstack([th, th]))[1:], 4, 0.05)[-1]
    np.testing.assert_allclose(var.numpy()[0], uninterrupted[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(var.numpy()[1], fresh[0], rtol=1e-12, atol=1e-12)


def test_descends_a_quadratic_inside_a_compiled_loop():
    """Used as loop state in tf.function (as C&W does), Adam reaches the minimiser."""
    c = tf.constant([[0.3, -0.7], [2.0, 1.0]])

    @tf.function
    def run(var):
        m, v = adam_init(var)
        for i in tf.range(500):
            var, m, v = adam_step(var, var - c, m, v, i + 1, 0.05)
        return var

    np.testing.assert_allclose(run(tf.zeros([2, 2])).numpy(), c.numpy(), atol=1e-2)
