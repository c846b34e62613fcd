"""Recomputing BatchNormalization statistics with the final weights ("precise BN", Wu & Johnson 2021).

Moving averages lag behind weights that change fast: after a short run (a few hundred steps)
they can be far from the statistics the final weights produce, and a model that is accurate in
training mode predicts one class in inference mode (keras.applications' MobileNetV2, momentum
0.999, on Fashion-MNIST: 0.10 test accuracy vs 0.74; recomputed statistics: 0.72). This pass
replaces each moving mean and variance by their cumulative average over ``count`` training
batches, computed with the final weights.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]


def recalibrate_batch_norm(model: keras.Model, batches: tf.data.Dataset, count: int,
                           strategy: tf.distribute.Strategy | None = None) -> int:
    """Sets every BatchNormalization layer's moving statistics to their average over ``count`` batches.

    Weights other than the moving statistics are untouched; each layer's momentum is restored.
    Under a strategy, every replica sees the same batch, so the mirrored statistics stay equal.

    Returns:
        The number of batches used (fewer when ``batches`` runs out; 0 without BN layers).
    """
    layers = batch_norm_layers(model)
    if not layers or count < 1:
        return 0
    momenta = [layer.momentum for layer in layers]
    strategy = strategy or tf.distribute.get_strategy()
    used = 0
    try:
        for k, (x, _) in enumerate(batches.take(count)):
            for layer in layers:  # momentum k/(k+1): a cumulative average of the batch statistics
                layer.momentum = k / (k + 1.0)
            strategy.run(lambda images: model(images, training=True), args=(x,))
            used += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return used
