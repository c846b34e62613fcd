"""Fashion-MNIST from the files of Debian's dataset-fashion-mnist package (skipped if absent)."""

from pathlib import Path

import numpy as np
import pytest

from advtf.data import list_datasets, load_dataset

SYSTEM = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not SYSTEM.is_dir(), reason="dataset-fashion-mnist not installed")


def test_full_sizes_and_info():
    splits = load_dataset("fashion_mnist")
    assert splits.sizes == {"train": 60000, "validation": 0, "test": 10000}
    assert int(splits.train.cardinality()) == 60000 and int(splits.test.cardinality()) == 10000
    info = splits.info
    assert (info.num_classes, info.image_shape, info.natural_images) == (10, (28, 28, 1), False)
    assert info.mean == (0.2860,) and info.std == (0.3530,)
    assert splits.validation is None


def test_test_subset_values_and_determinism():
    first = load_dataset("fashion_mnist", test_subset=8, seed=3)
    again = load_dataset("fashion_mnist", test_subset=8, seed=3)
    other = load_dataset("fashion_mnist", test_subset=8, seed=4)
    a, b, c = (np.stack([x for x, _ in s.test.as_numpy_iterator()]) for s in (first, again, other))
    assert a.shape == (8, 28, 28, 1) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0 and a.max() > 0.5
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    labels = [y for _, y in first.test.as_numpy_iterator()]
    assert all(y.dtype == np.int32 and 0 <= y < 10 for y in labels)


def test_listed_as_available():
    row = {r["name"]: r for r in list_datasets()}["fashion_mnist"]
    assert row["available"] and row["where"]
