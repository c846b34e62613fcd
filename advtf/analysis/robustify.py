"""Robustified datasets R_eps (Springer et al. 2021, Sec. 3.3; Ilyas et al. 2019's robust dataset).

For every ``(x, y)`` of a split, a seed image ``x0`` is drawn uniformly from the *other* images
of the same split, and gradient descent from ``x0`` looks for an image whose representation
(the model's ``representation`` endpoint, its penultimate vector) matches ``x``'s:

    d(x_r) = ||rep(x_r) - rep(x)||_2 / ||rep(x)||_2

with L2-normalised steps of fixed size, no eps bound (the paper's "infinity", Table 4: 400 steps
of 0.05 for CIFAR-10), clipped to [0, 1]. The result is labelled ``y``. Because ``x0`` is
uncorrelated with ``y``, only the model's features carry the label: with a robust model, only
robust features.

Choices where the paper is silent (after Madry et al.'s robustness library, which Ilyas et al.
used): the loss is divided by ||rep(x)|| (the same steps as the plain distance, since each step
is normalised per example; it makes distances comparable across models), and each example keeps
its iterate of lowest distance (the library's ``use_best``), so the distance never ends above
its start.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advtf.attacks.iterative import gradient_steps
from advtf.attacks.threat import ball
from advtf.errors import UserError
from advtf.models import endpoints, feature_extractor

_TINY = 1e-12


def seed_indices(n: int, seed: int) -> np.ndarray:
    """For each of ``n`` images, the index of its seed image: uniform over the others.

    Raises:
        UserError: fewer than two images (no other image to start from).
    """
    if n < 2:
        raise UserError(f"robustification needs at least two images in the split (got {n}); "
                        "raise --test-subset or use a larger split")
    rng = np.random.default_rng([int(seed), 7_010])
    shift = rng.integers(1, n, size=n)  # 1 .. n-1: never the image itself, uniform over the rest
    return ((np.arange(n) + shift) % n).astype(np.int64)


def representation_model(model):
    """The model's ``representation`` endpoint as a model of its own (UserError when it has none)."""
    try:
        available = endpoints(model)
    except UserError as e:
        raise UserError(f"cannot robustify with this model: {e}") from None
    if "representation" not in available:
        raise UserError(f"model {model.name!r} has no 'representation' endpoint (it has {', '.join(available)}); "
                        "robustify needs an advtf model with a penultimate representation layer")
    return feature_extractor(model, "representation")


def _relative_distance(extractor, x, target):
    rep = extractor(x, training=False)["representation"]
    rep = tf.reshape(rep, [tf.shape(rep)[0], -1])
    return tf.norm(rep - target, axis=1) / (tf.norm(target, axis=1) + _TINY)


def _invert(extractor, target, x0, step_size, steps):
    """Normalised gradient descent on the relative representation distance from ``x0``: the PGD
    core with this loss, no ball (only [0, 1]), unit-l2 steps and keep-the-best."""
    start = _relative_distance(extractor, x0, target)
    best, best_distance = gradient_steps(lambda x: _relative_distance(extractor, x, target), x0, steps, step_size,
                                         direction=ball("l2"), descend=True, keep_best=True, best=(x0, start))
    return best, start, best_distance


_compiled = tf.function(_invert, reduce_retracing=True)
_compiled_xla = tf.function(_invert, reduce_retracing=True, jit_compile=True)


def _target(extractor, x):
    rep = extractor(x, training=False)["representation"]
    return tf.reshape(rep, [tf.shape(rep)[0], -1])


_compiled_target = tf.function(_target, reduce_retracing=True)


def robustify_batch(extractor, x, x0, *, steps: int, step_size: float, jit: bool = False):
    """Robustified images of ``x`` starting from ``x0``.

    Args:
        extractor: :func:`representation_model` of the source model.
        x: the images whose representation is matched (B, H, W, C) in [0, 1].
        x0: the seed images, same shape.
        steps, step_size: gradient steps and their L2 length.
        jit: compile with XLA (slower on CPU).

    Returns:
        ``(x_r, distance_before, distance_after)``: images in [0, 1] and the relative
        representation distances at ``x0`` and at ``x_r`` (each (B,)).
    """
    x = tf.convert_to_tensor(x, tf.float32)
    x0 = tf.convert_to_tensor(x0, tf.float32)
    if x.shape != x0.shape:
        raise ValueError(f"images {x.shape} and seeds {x0.shape} differ in shape")
    fn = _compiled_xla if jit else _compiled
    return fn(extractor, _compiled_target(extractor, x), x0, tf.constant(step_size, tf.float32),
              tf.constant(int(steps)))
