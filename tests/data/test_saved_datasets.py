"""Saved datasets: round trip with extra fields, tamper and path-escape detection, source fill-in."""

import json

import numpy as np
import pytest
import tensorflow as tf

from advtf.data import is_saved_dataset, load_dataset, load_saved_elements, save_dataset, write_saved_dataset
from advtf.errors import UserError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", test_subset=12, seed=0)


def as_dicts(ds, flip_labels=False):
    def to_dict(i, pair):
        x, y = pair
        return {
            "image": 1.0 - x,
            "label": (9 - y) if flip_labels else y,
            "target": tf.cast((y + 1) % 10, tf.int32),
            "seed_index": tf.cast(i, tf.int32),
        }

    return ds.enumerate().map(to_dict)


@pytest.fixture
def adversarial(tmp_path, digits):
    """A saved test-only set whose source is the digits dataset."""
    directory = tmp_path / "adv"
    write_saved_dataset(
        directory, {"test": as_dicts(digits.test)}, kind="adversarial", info=digits.info,
        source={"dataset": "digits", "model_sha256": "abc"}, parameters={"eps": 0.1},
    )  # fmt: skip
    return directory


def test_round_trip_with_extra_fields(adversarial, digits):
    section = json.loads((adversarial / "manifest.json").read_text())["dataset"]
    assert section["kind"] == "adversarial" and section["format"] == "tf.data.Dataset.save"
    entry = section["splits"]["test"]
    assert entry["count"] == 12 and entry["path"] == "test" and entry["sha256"]
    assert entry["element_spec"]["image"] == {"shape": [16, 16, 1], "dtype": "float32"}
    assert is_saved_dataset(adversarial) and not is_saved_dataset(adversarial / "test")

    splits = load_dataset(str(adversarial))
    original = [x for x, _ in digits.test.as_numpy_iterator()]
    saved = list(splits.test.as_numpy_iterator())
    np.testing.assert_allclose([x for x, _ in saved], 1.0 - np.stack(original))
    assert saved[0][1].dtype == np.int32 and saved[0][0].dtype == np.float32
    assert splits.sizes == {"train": 1437, "validation": 0, "test": 12}  # train from the source
    assert splits.info.name == "saved:adv" and splits.info.num_classes == 10
    assert splits.fingerprint["manifest_sha256"] and splits.fingerprint["filled_from"]["splits"] == ["train"]

    elements = list(load_saved_elements(adversarial, "test").as_numpy_iterator())
    assert [int(e["seed_index"]) for e in elements] == list(range(12))
    assert set(elements[0]) == {"image", "label", "target", "seed_index"}


def test_existing_manifest_keys_are_kept(tmp_path, digits):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text(json.dumps({"command": "advtf attack", "wall_time": 3}))
    write_saved_dataset(
        tmp_path / "run", {"train": as_dicts(digits.test)}, kind="relabeled", info=digits.info,
        source={}, parameters={},
    )  # fmt: skip
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["command"] == "advtf attack" and "dataset" in manifest


def _shard(directory, split="test"):
    return next(p for p in (directory / split).rglob("*") if p.is_file() and p.suffix == ".snapshot")


def test_modified_file_is_detected(adversarial):
    shard = _shard(adversarial)
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(UserError, match="corrupt or modified; re-create it"):
        load_dataset(str(adversarial))


def test_missing_and_extra_files_are_detected(adversarial):
    (adversarial / "test" / "stray.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="unexpected files"):
        load_saved_elements(adversarial, "test")
    (adversarial / "test" / "stray.bin").unlink()
    _shard(adversarial).unlink()
    with pytest.raises(UserError, match="is missing"):
        load_saved_elements(adversarial, "test")


@pytest.mark.parametrize("field", ["path", "sha256"])
def test_paths_may_not_escape_the_directory(adversarial, tmp_path, field):
    manifest_path = adversarial / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entry = manifest["dataset"]["splits"]["test"]
    if field == "path":
        entry["path"] = "../x"
    else:
        entry["sha256"] = {"../../outside.txt": "0" * 64}
    (tmp_path / "outside.txt").write_text("secret")
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="escapes"):
        load_dataset(str(adversarial))


def test_train_only_set_without_source(tmp_path, digits):
    directory = tmp_path / "relabeled"
    write_saved_dataset(
        directory, {"train": as_dicts(digits.test, flip_labels=True)}, kind="relabeled",
        info=digits.info, source={}, parameters={},
    )  # fmt: skip
    splits = load_dataset(str(directory), train_subset=10, validation=2, seed=1)
    assert splits.test is None and splits.sizes == {"train": 8, "validation": 2, "test": 0}
    want = {9 - int(y) for _, y in digits.test}
    assert {int(y) for _, y in splits.train} | {int(y) for _, y in splits.validation} <= want
    with pytest.raises(UserError, match="has no test split"):
        splits.require("test")
    with pytest.raises(UserError, match="no test split to take a subset"):
        load_dataset(str(directory), test_subset=3)
    with pytest.raises(UserError, match="holds 16x16 images"):
        load_dataset(str(directory), image_size=32)


def test_saved_set_can_be_the_source_of_another(tmp_path, adversarial, digits):
    directory = tmp_path / "second"
    write_saved_dataset(
        directory, {"train": as_dicts(digits.test)}, kind="relabeled", info=digits.info,
        source={"dataset": str(adversarial)}, parameters={},
    )  # fmt: skip
    splits = load_dataset(str(directory))
    assert splits.sizes["test"] == 12 and splits.fingerprint["filled_from"]["dataset"] == "saved:adv"


def test_elements_must_be_dicts_with_image_and_label(tmp_path, digits):
    with pytest.raises(ValueError, match="dicts with 'image' and 'label'"):
        save_dataset(tmp_path, {"test": digits.test}, kind="x", info=digits.info, source={}, parameters={})
