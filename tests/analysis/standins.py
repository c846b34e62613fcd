"""Stand-in classifiers whose predictions numpy can compute: pixel k votes for class perm[k]."""

import keras
import numpy as np

SHAPE = (4, 4, 1)
K = 4


def selector(perm, *, constant=None):
    """Logits = the first K pixels routed to classes ``perm`` (or, with ``constant``, always that class)."""
    inputs = keras.Input(SHAPE)
    dense = keras.layers.Dense(K)
    outputs = dense(keras.layers.Flatten()(inputs))
    kernel = np.zeros((int(np.prod(SHAPE)), K), np.float32)
    bias = np.zeros(K, np.float32)
    if constant is None:
        kernel[np.arange(K), perm] = 1.0
    else:
        bias[constant] = 1.0
    dense.set_weights([kernel, bias])
    return keras.Model(inputs, outputs)


def predict(perm, images, *, constant=None):
    """What :func:`selector` predicts, in numpy (argmax over its logits, so ties break alike)."""
    if constant is not None:
        return np.full(len(images), constant)
    logits = np.zeros((len(images), K), np.float32)
    logits[:, perm] = images.reshape(len(images), -1)[:, :K]
    return np.argmax(logits, axis=1)


def random_set(n, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(n, *SHAPE)).astype(np.float32), rng.integers(0, K, n).astype(np.int32)
