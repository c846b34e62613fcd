"""A frozen copy of the norm-ball code as it was before the per-ball objects (advtf 2026-12-01).

The reference the refactored geometry and loops must reproduce bit for bit: tests compare the
library against these functions, never against the library's own helpers.
"""

import tensorflow as tf

TINY = 1e-12
L0_TOLERANCE = 1e-6


def batch_norm(v, norm):
    axes = list(range(1, len(v.shape)))
    if norm == "linf":
        return tf.reduce_max(tf.abs(v), axis=axes, keepdims=True)
    if norm == "l1":
        return tf.reduce_sum(tf.abs(v), axis=axes, keepdims=True)
    if norm == "l0":
        return tf.reduce_sum(tf.cast(tf.abs(v) > L0_TOLERANCE, v.dtype), axis=axes, keepdims=True)
    return tf.sqrt(tf.reduce_sum(tf.square(v), axis=axes, keepdims=True))


def per_example_norm(v, norm):
    return tf.reshape(batch_norm(v, norm), [-1])


def ascent_direction(grad, norm):
    if norm == "linf":
        return tf.sign(grad)
    return grad / (batch_norm(grad, "l2") + TINY)


def project(delta, eps, norm):
    if norm == "linf":
        return tf.clip_by_value(delta, -eps, eps)
    if norm == "l1":
        return project_l1(delta, eps)
    scale = tf.minimum(1.0, eps / (batch_norm(delta, "l2") + TINY))
    return delta * scale


def project_l1(delta, eps):
    shape = tf.shape(delta)
    v = tf.reshape(delta, [shape[0], -1])
    a = tf.abs(v)
    u = tf.sort(a, axis=1, direction="DESCENDING")
    css = tf.cumsum(u, axis=1)
    j = tf.cast(tf.range(1, tf.shape(v)[1] + 1), v.dtype)
    positive = u - (css - eps) / j > 0
    rho = tf.maximum(tf.reduce_sum(tf.cast(positive, tf.int32), axis=1), 1)
    css_rho = tf.gather(css, rho - 1, batch_dims=1)
    theta = tf.maximum((css_rho - eps) / tf.cast(rho, v.dtype), 0.0)
    inside = tf.reduce_sum(a, axis=1) <= eps
    theta = tf.where(inside, tf.zeros_like(theta), theta)
    w = tf.sign(v) * tf.maximum(a - theta[:, None], 0.0)
    total = tf.reduce_sum(tf.abs(w), axis=1, keepdims=True)
    w = w * tf.minimum(1.0, eps * (1.0 - 1e-6) / (total + TINY))
    return tf.reshape(w, shape)


def random_start(shape, eps, norm, seed, mask=None):
    if mask is not None:
        mask = tf.reshape(tf.broadcast_to(tf.cast(mask, tf.float32), shape), shape)
    if norm == "linf":
        noise = tf.random.stateless_uniform(shape, seed, minval=-1.0, maxval=1.0) * eps
        return noise if mask is None else noise * mask
    direction = tf.random.stateless_normal(shape, seed)
    if mask is None:
        dim = tf.cast(tf.reduce_prod(shape[1:]), tf.float32)
    else:
        direction = direction * mask
        dim = tf.maximum(tf.reduce_sum(mask, axis=list(range(1, len(direction.shape))), keepdims=True), 1.0)
    direction = direction / (batch_norm(direction, "l2") + TINY)
    u = tf.random.stateless_uniform([shape[0], 1, 1, 1], seed + 1)
    return direction * eps * tf.pow(u, 1.0 / dim)
