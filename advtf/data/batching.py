"""Batching for training and evaluation: seeded shuffle, crop + flip augmentation, prefetch."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advtf.errors import UserError

SHUFFLE_BUFFER = 10_000
SHUFFLE_BUDGET_BYTES = 256 * 2**20  # keeps the buffer of large images (e.g. 160x160) bounded
PAD = 4


def _buffer_size(ds: tf.data.Dataset) -> int:
    """Shuffle buffer: 10,000 elements, fewer when images are large (256 MiB at most)."""
    shape = tf.nest.flatten(ds.element_spec)[0].shape
    if not shape.is_fully_defined():
        return SHUFFLE_BUFFER
    element_bytes = 4 * int(np.prod(shape.as_list()))
    return int(max(256, min(SHUFFLE_BUFFER, SHUFFLE_BUDGET_BYTES // max(element_bytes, 1))))


def augment_batch(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Random crop after 4-px reflect padding, then random horizontal flip, per image.

    Vectorised over the batch: per-image offsets index the padded batch with ``tf.gather``.

    Args:
        images: ``[batch, H, W, C]`` float images.
        seed: Scalar int64; drives stateless random ops so runs are reproducible.
    """
    height, width = images.shape[1], images.shape[2]
    mode = "REFLECT" if min(height, width) > PAD else "CONSTANT"
    padded = tf.pad(images, [[0, 0], [PAD, PAD], [PAD, PAD], [0, 0]], mode=mode)
    batch = tf.shape(images)[0]
    offsets = tf.random.stateless_uniform(
        [batch, 2], seed=tf.stack([seed, 1]), maxval=2 * PAD + 1, dtype=tf.int32
    )
    rows = offsets[:, :1] + tf.range(height)[None, :]
    cols = offsets[:, 1:] + tf.range(width)[None, :]
    cropped = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    flip = tf.random.stateless_uniform([batch], seed=tf.stack([seed, 2])) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(cropped, axis=[2]), cropped)


def make_batches(
    ds: tf.data.Dataset,
    batch_size: int,
    *,
    training: bool,
    augment: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches ``(image, label)`` elements for training or evaluation.

    Args:
        ds: Unbatched ``(image, label)`` dataset, e.g. ``load_dataset(...).train``.
        batch_size: Examples per batch.
        training: Shuffle (seeded, reshuffled every epoch, bounded buffer) and allow
            augmentation; False keeps the order.
        augment: Random crop (4-px reflect padding) + horizontal flip; applies only when training.
        seed: Seed of the shuffle and the augmentation.
        drop_remainder: Drop the last incomplete batch (useful under tf.distribute).

    Raises:
        UserError: ``batch_size`` is not a positive integer.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise UserError(f"batch size must be a positive integer, got {batch_size!r}; fix --batch-size")
    if training:
        ds = ds.shuffle(_buffer_size(ds), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    if training and augment:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda batch, s: (augment_batch(batch[0], s), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.prefetch(tf.data.AUTOTUNE)


def split_arrays(ds: tf.data.Dataset, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """All ``(image, label)`` pairs of an unbatched split as numpy arrays, in order.

    For analyses that need random access to a split (e.g. robustification's seed images);
    a split of N images of shape S takes N * prod(S) * 4 bytes.
    """
    images, labels = [], []
    for x, y in ds.batch(batch_size).prefetch(2):
        images.append(x.numpy())
        labels.append(y.numpy())
    if not images:
        shape = tuple(tf.nest.flatten(ds.element_spec)[0].shape)
        return np.zeros((0, *shape), np.float32), np.zeros((0,), np.int32)
    return np.concatenate(images).astype(np.float32), np.concatenate(labels).astype(np.int32)
