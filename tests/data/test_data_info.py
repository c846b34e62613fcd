"""DatasetInfo JSON round trip and DataSplits.require."""

import json

import pytest

from advtf.data import DatasetInfo, DataSplits
from advtf.errors import UserError

INFO = DatasetInfo(
    name="x", num_classes=2, class_names=("a", "b"), image_shape=(4, 4, 3),
    mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6), natural_images=True, source="memory",
)  # fmt: skip


def test_json_round_trip():
    d = json.loads(json.dumps(INFO.to_json()))
    assert d["image_shape"] == [4, 4, 3]
    assert DatasetInfo.from_json(d) == INFO


def test_missing_field_is_a_user_error():
    d = INFO.to_json()
    del d["std"]
    with pytest.raises(UserError, match="missing std"):
        DatasetInfo.from_json(d)


def test_require_names_the_absent_split():
    splits = DataSplits(INFO, None, None, None, {"train": 0, "validation": 0, "test": 0}, {})
    with pytest.raises(UserError, match="x has no train split"):
        splits.require("train")
