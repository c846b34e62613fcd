"""``advtf.analysis.robust_table``: the accuracy matrix against numpy, and the borrowed-split guard."""

import numpy as np
import pytest
import tensorflow as tf
from standins import predict, random_set, selector

from advtf.analysis.robust_table import accuracy_matrix, count_hits, own_split
from advtf.errors import UserError

PERMS = {"identity": [0, 1, 2, 3], "shifted": [1, 2, 3, 0]}


def test_count_hits():
    assert count_hits([0, 1, 2, 2], [0, 1, 1, 2]) == 3
    assert count_hits([0, 1, 2, 2], [0, 1, 1, 2], equal=False) == 1


def test_accuracy_matrix_equals_numpy():
    models = {name: selector(perm) for name, perm in PERMS.items()}
    models["always-2"] = selector(None, constant=2)
    sets = {"a": random_set(37, 0), "b": random_set(20, 1)}  # 37 = 5 batches of 8 with a partial one
    batches = {t: tf.data.Dataset.from_tensor_slices(xy).batch(8) for t, xy in sets.items()}
    bar = _Counter()
    result = accuracy_matrix(models, batches, progress=bar)
    assert result["n"] == {"a": 37, "b": 20} and bar.count == 57
    assert list(result["accuracy"]) == ["identity", "shifted", "always-2"]
    for t, (x, y) in sets.items():
        for name, perm in PERMS.items():
            assert result["accuracy"][name][t] == pytest.approx(np.mean(predict(perm, x) == y))
        assert result["accuracy"]["always-2"][t] == pytest.approx(np.mean(y == 2))


def test_empty_test_set_is_refused():
    empty = tf.data.Dataset.from_tensor_slices(random_set(0, 0)).batch(4)
    with pytest.raises(UserError, match="empty"):
        accuracy_matrix({"m": selector(PERMS["identity"])}, {"t": empty})


def test_a_split_borrowed_from_the_source_is_refused(tmp_path):
    from advtf.data import DatasetInfo, load_dataset, write_saved_dataset

    images = np.zeros((4, 16, 16, 1), np.float32)
    info = DatasetInfo(name="only-train", num_classes=10, class_names=tuple(map(str, range(10))),
                       image_shape=(16, 16, 1), mean=(0.5,), std=(0.25,), natural_images=False, source="test")
    ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": np.zeros(4, np.int32)})
    write_saved_dataset(tmp_path / "set", {"train": ds}, kind="robustified", info=info,
                        source={"dataset": "digits"}, parameters={})
    splits = load_dataset(str(tmp_path / "set"))
    assert splits.test is not None  # filled from digits by the loader
    with pytest.raises(UserError, match="no test split of its own"):
        own_split(splits, "test", "R")
    assert own_split(splits, "train", "R") is splits.train


class _Counter:
    count = 0

    def update(self, n):
        self.count += n

