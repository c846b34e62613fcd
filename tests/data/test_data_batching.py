"""make_batches: shapes, order, seeded shuffling and crop + flip augmentation."""

import numpy as np
import pytest
import tensorflow as tf

from advtf.data import load_dataset, make_batches
from advtf.data.batching import _buffer_size, augment_batch
from advtf.errors import UserError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", train_subset=70, seed=0)


def collect(ds):
    batches = list(ds.as_numpy_iterator())
    return [x for x, _ in batches], np.concatenate([y for _, y in batches])


def test_evaluation_batches_keep_order_and_shapes(digits):
    xs, ys = collect(make_batches(digits.train, 32, training=False))
    assert [x.shape for x in xs] == [(32, 16, 16, 1), (32, 16, 16, 1), (6, 16, 16, 1)]
    assert ys.tolist() == [int(y) for _, y in digits.train]
    xs, _ = collect(make_batches(digits.train, 32, training=False, drop_remainder=True))
    assert len(xs) == 2


def test_training_shuffle_is_seeded_and_reshuffles_each_epoch(digits):
    ds = make_batches(digits.train, 16, training=True, seed=1)
    _, first = collect(ds)
    _, second = collect(ds)
    _, again = collect(make_batches(digits.train, 16, training=True, seed=1))
    assert sorted(first.tolist()) == sorted(second.tolist()) == sorted(int(y) for _, y in digits.train)
    assert first.tolist() != second.tolist() and first.tolist() == again.tolist()


def test_augmentation_keeps_shape_range_and_is_reproducible(digits):
    xs, _ = collect(make_batches(digits.train, 32, training=True, augment=True, seed=2))
    xs2, _ = collect(make_batches(digits.train, 32, training=True, augment=True, seed=2))
    plain, _ = collect(make_batches(digits.train, 32, training=True, augment=False, seed=2))
    assert [x.shape for x in xs] == [x.shape for x in plain]
    assert all(x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0 for x in xs)
    np.testing.assert_array_equal(xs[0], xs2[0])
    assert not np.array_equal(xs[0], plain[0])


def test_augment_batch_is_a_shifted_or_flipped_crop():
    image = np.random.default_rng(0).random((8, 10, 10, 3)).astype(np.float32)
    out = augment_batch(tf.constant(image), tf.constant(5, tf.int64)).numpy()
    padded = np.pad(image, [(0, 0), (4, 4), (4, 4), (0, 0)], mode="reflect")
    for i in range(8):
        crops = [padded[i, r : r + 10, c : c + 10] for r in range(9) for c in range(9)]
        assert any(np.array_equal(out[i], c) or np.array_equal(out[i], c[:, ::-1]) for c in crops)
    constant = augment_batch(tf.fill((2, 6, 6, 1), 0.5), tf.constant(1, tf.int64)).numpy()
    assert np.all(constant == 0.5)


def test_bad_batch_size_and_bounded_buffer():
    with pytest.raises(UserError, match="batch size"):
        make_batches(tf.data.Dataset.range(3), 0, training=False)
    big = tf.data.Dataset.from_tensors((tf.zeros((160, 160, 3)), 0))
    small = tf.data.Dataset.from_tensors((tf.zeros((28, 28, 1)), 0))
    assert _buffer_size(big) < 10_000 and _buffer_size(small) == 10_000
