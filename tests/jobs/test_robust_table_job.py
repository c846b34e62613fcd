"""``advtf.jobs.robust_table``: the borrowed-split guard and the request's checks."""

import numpy as np
import pytest
import tensorflow as tf

from advtf.errors import UserError
from advtf.jobs.robust_table import RobustTableRequest, own_split


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


@pytest.mark.parametrize("fields, words", [
    ({"classifiers": {}}, "--classifier"),
    ({"testsets": {}}, "--testset"),
    ({"testsets": {"classifier": "digits"}}, "first column"),
    ({"split": "validation"}, "--split"),
    ({"batch_size": 0}, "--batch-size must be >= 1"),
])
def test_request_refuses_bad_values(fields, words):
    good = {"classifiers": {"a": "a.keras"}, "testsets": {"Test": "digits"}}
    with pytest.raises(UserError, match=words):
        RobustTableRequest(**{**good, **fields})
