"""scikit-learn digits: the zero-download dataset."""

import numpy as np

from advtf.data import load_dataset


def test_digits_shapes_range_and_split():
    splits = load_dataset("digits")
    assert splits.sizes == {"train": 1437, "validation": 0, "test": 360}
    x = np.stack([x for x, _ in splits.test.as_numpy_iterator()])
    y = np.array([y for _, y in splits.test.as_numpy_iterator()])
    assert x.shape == (360, 16, 16, 1) and x.dtype == np.float32 and y.dtype == np.int32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert np.bincount(y, minlength=10).min() >= 35  # stratified
    assert splits.info.num_classes == 10 and splits.info.source == "sklearn.datasets.load_digits"


def test_digits_split_does_not_depend_on_seed_and_resizes():
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=5, image_size=8)
    ya = [int(y) for _, y in a.test]
    yb = [int(y) for _, y in b.test]
    assert ya == yb
    assert b.info.image_shape == (8, 8, 1) and next(iter(b.test))[0].shape == (8, 8, 1)
