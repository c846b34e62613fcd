"""Precise BN: moving statistics become the average of the batch statistics, on one or two replicas."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from advtf.training.batch_norm import recalibrate_batch_norm


def _bn_model():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="dense", kernel_initializer=keras.initializers.GlorotUniform(0))(inputs)
    x = keras.layers.BatchNormalization(momentum=0.999, name="bn")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x))


def _batches(rng, n=5, size=16):
    x = rng.normal(loc=3.0, scale=2.0, size=(n * size, 4)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((x, np.zeros(n * size, np.int32))).batch(size), x


def _expected(model, x, n, size):
    h = x @ model.get_layer("dense").kernel.numpy() + model.get_layer("dense").bias.numpy()
    parts = h.reshape(n, size, -1)
    return parts.mean(axis=1).mean(axis=0), parts.var(axis=1).mean(axis=0)


def test_moving_statistics_become_the_average_of_batch_statistics(rng):
    model = _bn_model()
    batches, x = _batches(rng)
    assert recalibrate_batch_norm(model, batches, count=5) == 5
    mean, var = _expected(model, x, 5, 16)
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), var, rtol=1e-3, atol=1e-5)
    assert bn.momentum == pytest.approx(0.999)


def test_recalibration_under_two_replicas_matches_one_device(rng, two_cpu_strategy):
    batches, x = _batches(rng)
    with two_cpu_strategy.scope():
        model = _bn_model()
    recalibrate_batch_norm(model, batches, count=5, strategy=two_cpu_strategy)
    mean, _ = _expected(model, x, 5, 16)
    np.testing.assert_allclose(model.get_layer("bn").moving_mean.numpy(), mean, rtol=1e-4, atol=1e-5)


def test_a_model_without_batch_norm_is_left_alone(rng):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    batches, _ = _batches(rng)
    assert recalibrate_batch_norm(model, batches, count=3) == 0
