"""Seeded subsets and validation carving, on a registered dataset whose labels are positions."""

import numpy as np
import pytest
import tensorflow as tf

from advtf.data import list_datasets, load_dataset
from advtf.data.subsets import KEEP, VALIDATION, carve_validation, select, subset_codes, validation_count
from advtf.errors import UserError


def labels(ds):
    return [int(y) for _, y in ds]


def test_subset_same_seed_same_examples_in_source_order(indexed):
    a = load_dataset(indexed, train_subset=20, test_subset=10, seed=1)
    b = load_dataset(indexed, train_subset=20, test_subset=10, seed=1)
    c = load_dataset(indexed, train_subset=20, test_subset=10, seed=2)
    assert labels(a.train) == labels(b.train) and labels(a.test) == labels(b.test)
    assert labels(a.train) != labels(c.train)
    assert labels(a.train) == sorted(labels(a.train)) and len(set(labels(a.train))) == 20
    assert all(1000 <= y < 1050 for y in labels(a.test))
    assert a.sizes == {"train": 20, "validation": 0, "test": 10}
    assert int(a.train.cardinality()) == 20 and int(a.test.cardinality()) == 10


def test_test_subset_does_not_change_train_subset(indexed):
    a = load_dataset(indexed, train_subset=20, test_subset=10, seed=1)
    b = load_dataset(indexed, train_subset=20, test_subset=30, seed=1)
    assert labels(a.train) == labels(b.train)


@pytest.mark.parametrize("validation, expected", [(0.25, 10), (7, 7), (7.0, 7)])
def test_validation_is_disjoint_deterministic_and_sized(indexed, validation, expected):
    a = load_dataset(indexed, train_subset=40, validation=validation, seed=3)
    b = load_dataset(indexed, train_subset=40, validation=validation, seed=3)
    full = set(labels(load_dataset(indexed, train_subset=40, seed=3).train))
    train, val = labels(a.train), labels(a.validation)
    assert (len(val), len(train)) == (expected, 40 - expected)
    assert not set(train) & set(val) and set(train) | set(val) == full
    assert val == labels(b.validation) and train == labels(b.train)
    assert a.sizes == {"train": 40 - expected, "validation": expected, "test": 50}
    assert a.fingerprint["validation"] == validation and a.fingerprint["seed"] == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"train_subset": 201}, "exceeds the 200 examples"),
        ({"test_subset": 0}, "positive integer"),
        ({"train_subset": 2.5}, "positive integer"),
        ({"validation": 1.5}, "neither a fraction"),
        ({"validation": -0.1}, "fraction in"),
        ({"train_subset": 10, "validation": 10}, "leaves no training"),
    ],
)
def test_bad_sizes_are_user_errors(indexed, kwargs, message):
    with pytest.raises(UserError, match=message):
        load_dataset(indexed, **kwargs)


def test_select_and_codes_on_a_range():
    codes = carve_validation(subset_codes(100, 30, seed=0, role="train", what="x"), 5, seed=0)
    ds = tf.data.Dataset.range(100)
    kept = list(select(ds, codes, KEEP).as_numpy_iterator())
    val = list(select(ds, codes, VALIDATION).as_numpy_iterator())
    assert (len(kept), len(val)) == (25, 5) and not set(kept) & set(val)
    np.testing.assert_array_equal(kept, np.flatnonzero(codes == KEEP))
    assert validation_count(0.1, 25) == 2 and validation_count(0, 25) == 0


def test_unknown_name_lists_registered_ones(indexed):
    with pytest.raises(UserError, match=r"unknown dataset 'nope'; choose one of: .*fashion_mnist.*indexed"):
        load_dataset("nope")
    with pytest.raises(UserError, match="does not exist"):
        load_dataset("./no/such/dir")
    row = {"name": "indexed", "description": "test data", "available": True, "where": "built in"}
    assert row in list_datasets()


def test_plain_directory_is_not_a_dataset(tmp_path):
    with pytest.raises(UserError, match="not a saved dataset"):
        load_dataset(str(tmp_path))


def test_select_handles_variable_shapes():
    ds = tf.data.Dataset.from_generator(
        lambda: (np.full((i + 1,), i, np.int32) for i in range(6)),
        output_signature=tf.TensorSpec((None,), tf.int32),
    )
    codes = np.array([KEEP, 0, KEEP, 0, 0, KEEP], dtype=np.int8)
    picked = select(ds, codes, KEEP)
    assert [x.tolist() for x in picked.as_numpy_iterator()] == [[0], [2, 2, 2], [5] * 6]
    assert int(picked.cardinality()) == 3
