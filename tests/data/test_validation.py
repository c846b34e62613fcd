"""Dataset values are checked at load by every command: NaN/inf, pixels outside [0, 1], labels outside [0, K)."""

import numpy as np
import pytest
import tensorflow as tf

from advtf.data import load_dataset, load_saved_elements, registry, write_saved_dataset
from advtf.data.checks import check_values, checked, data_check_error
from advtf.data.registry import RawSplits, register_dataset
from advtf.errors import UserError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", test_subset=12, seed=0)


def _arrays(digits):
    x = np.stack([x for x, _ in digits.test.as_numpy_iterator()])
    y = np.array([y for _, y in digits.test.as_numpy_iterator()], np.int32)
    return x, y


def _save(directory, digits, x, y):
    ds = tf.data.Dataset.from_tensor_slices({"image": x, "label": y})
    write_saved_dataset(directory, {"test": ds}, kind="adversarial", info=digits.info, source={}, parameters={})
    return directory


def _nan(x, y):
    x[3, 2, 5, 0], x[7, 0, 0, 0] = np.nan, np.inf
    return x, y


def _too_bright(x, y):
    x[4, 1, 1, 0] = 1.5
    return x, y


def _negative(x, y):
    x[0, 0, 0, 0], x[1, 0, 0, 0] = -0.25, -0.5
    return x, y


def _label_ten(x, y):
    y[2] = 10
    return x, y


def _label_negative(x, y):
    y[5] = -1
    return x, y


BROKEN = [
    ("nan", _nan, "split test of saved dataset .*: 2 image\\(s\\) contain NaN or inf pixels; fix the source data "
     "and re-create the dataset"),
    ("1.5", _too_bright, "1 image\\(s\\) have pixels outside \\[0, 1\\] \\(from 0 to 1.5\\); scale images to "
     "\\[0, 1\\] and re-create the dataset"),
    ("negative", _negative, "2 image\\(s\\) have pixels outside \\[0, 1\\] \\(from -0.5 to 1\\); scale images"),
    ("label 10", _label_ten, "1 label\\(s\\) outside \\[0, 10\\) for 10 classes \\(labels from 0 to 10\\); "
     "fix the labels and re-create the dataset"),
    ("label -1", _label_negative, "1 label\\(s\\) outside \\[0, 10\\) for 10 classes \\(labels from -1 to [0-9]\\)"),
]


@pytest.mark.parametrize("case, spoil, message", BROKEN, ids=[c[0] for c in BROKEN])
def test_saved_dataset_with_bad_values_is_refused(tmp_path, digits, case, spoil, message):
    x, y = _arrays(digits)
    assert np.isfinite(x).all() and x.min() == 0 and x.max() == 1 and set(y) <= set(range(10))  # clean before
    directory = _save(tmp_path / "bad", digits, *spoil(x.copy(), y.copy()))
    for load in (lambda: load_dataset(str(directory)), lambda: load_saved_elements(directory, "test")):
        with pytest.raises(UserError, match=message) as caught:
            load()
        assert "\n" not in str(caught.value)


def test_clean_saved_dataset_loads_unchanged(tmp_path, digits):
    x, y = _arrays(digits)
    directory = _save(tmp_path / "ok", digits, x, y)
    loaded = list(load_dataset(str(directory)).test.as_numpy_iterator())
    np.testing.assert_array_equal(np.stack([a for a, _ in loaded]), x)
    np.testing.assert_array_equal([b for _, b in loaded], y)


def test_check_values_counts_like_numpy():
    """Counts and extremes across batch boundaries agree with a direct numpy computation."""
    rng = np.random.default_rng(3)
    x = rng.random((2500, 3, 3, 2), dtype=np.float32)
    y = rng.integers(0, 7, 2500).astype(np.int32)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    assert check_values(ds, 7, what="s") == 2500
    bad = rng.choice(2500, 40, replace=False)
    x[bad, 0, 0, 0] = 1 + rng.random(40, dtype=np.float32)
    expected = int(((x.reshape(2500, -1) > 1) | (x.reshape(2500, -1) < 0)).any(axis=1).sum())
    with pytest.raises(UserError, match=rf"s: {expected} image\(s\) .* \(from [0-9.e-]+ to {x.max():.4g}\)"):
        check_values(tf.data.Dataset.from_tensor_slices((x, y)), 7, what="s")
    y[[10, 1500, 2499]] = [7, 8, 7]
    x[bad, 0, 0, 0] = 0.5
    with pytest.raises(UserError, match=r"s: 3 label\(s\) outside \[0, 7\) for 7 classes \(labels from 0 to 8\)"):
        check_values(tf.data.Dataset.from_tensor_slices((x, y)), 7, what="s")


@pytest.fixture
def bad_registered(monkeypatch):
    """Registers ``bad_labels``: 2100 examples per split whose label 1500 is 10 with 10 classes."""
    monkeypatch.setattr(registry, "DATASETS", registry.DATASETS.copy())
    labels = np.arange(2100, dtype=np.int32) % 10
    labels[1500] = 10
    images = np.random.default_rng(0).random((2100, 4, 4, 1), dtype=np.float32)

    @register_dataset("bad_labels", description="test data", natural_images=False)
    def load(*, data_dir, image_size, download):
        return RawSplits(
            splits={s: tf.data.Dataset.from_tensor_slices((images, labels)) for s in ("train", "test")},
            counts={"train": 2100, "test": 2100}, class_names=tuple("abcdefghij"), image_shape=(4, 4, 1),
            mean=(0.5,), std=(0.25,), source="memory",
        )

    return "bad_labels", images, labels


def test_registered_dataset_is_checked_in_the_pipeline(bad_registered):
    name, images, labels = bad_registered
    splits = load_dataset(name)
    assert int(splits.test.cardinality()) == 2100  # the check keeps order and cardinality
    first = list(splits.test.take(1024).as_numpy_iterator())  # the first chunk is clean and passes unchanged
    np.testing.assert_array_equal(np.stack([x for x, _ in first]), images[:1024])
    np.testing.assert_array_equal([y for _, y in first], labels[:1024])
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        for _ in splits.train.batch(64):
            pass
    error = data_check_error(caught.value)
    assert isinstance(error, UserError)
    assert str(error) == ("the bad_labels train split: label(s) outside [0, 10) for 10 classes; "
                          "fix the labels and re-create the dataset")
    assert data_check_error(ValueError("x")) is None


@pytest.mark.parametrize("fixed", [True, False], ids=["fixed shape, by chunk", "any shape, one by one"])
@pytest.mark.parametrize("value, problem", [(np.nan, "contain NaN or inf"), (-np.inf, "contain NaN or inf"),
                                            (1.0001, "have pixels outside \\[0, 1\\]"),
                                            (-1e-6, "have pixels outside \\[0, 1\\]")])
def test_checked_pipeline_names_each_problem(value, problem, fixed):
    x = np.zeros((3, 2, 2, 1), np.float32)
    x[1, 1, 0, 0] = value
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(3, np.int32)))
    if not fixed:
        ds = tf.data.Dataset.from_generator(ds.as_numpy_iterator, output_signature=(
            tf.TensorSpec((None, None, 1), tf.float32), tf.TensorSpec((), tf.int32)))
    ds = checked(ds, 2, what="set")
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        list(ds.as_numpy_iterator())
    with pytest.raises(UserError, match=f"^set: image\\(s\\) {problem}.* and re-create the dataset$"):
        raise data_check_error(caught.value)
    clean = checked(tf.data.Dataset.from_tensor_slices((np.ones((3, 2, 2, 1), np.float32), np.ones(3, np.int32))),
                    2, what="set")
    assert len(list(clean.as_numpy_iterator())) == 3
