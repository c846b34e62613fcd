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


# --- malformed manifests: one-line UserError, never KeyError/TypeError --------------------------


def _set(*keys, value):
    """An edit setting manifest[keys...] = value (value None deletes the key)."""
    def edit(manifest):
        node = manifest
        for key in keys[:-1]:
            node = node[key]
        if value is None:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
        return manifest

    return edit


def _bad_hash(manifest):
    files = manifest["dataset"]["splits"]["test"]["sha256"]
    files[next(iter(files))] = "z" * 64
    return manifest


def _absolute_file(manifest):
    manifest["dataset"]["splits"]["test"]["sha256"] = {"/etc/hostname": "0" * 64}
    return manifest


def _renamed_split(manifest):
    splits = manifest["dataset"]["splits"]
    splits["../test"] = splits.pop("test")
    return manifest


SPLIT = ("dataset", "splits", "test")
MALFORMED = [
    ("count as string", _set(*SPLIT, "count", value="12"), "count '12', not a non-negative integer"),
    ("negative count", _set(*SPLIT, "count", value=-1), "count -1, not a non-negative integer"),
    ("fractional count", _set(*SPLIT, "count", value=12.5), "count 12.5, not a non-negative integer"),
    ("count not the real one", _set(*SPLIT, "count", value=13), "holds 12 examples but its manifest says 13"),
    ("splits not a dict", _set("dataset", "splits", value=["test"]), "no 'dataset' section with 'splits'"),
    ("entry not a dict", _set("dataset", "splits", "test", value="test"), "split test is 'test', not an object"),
    ("sha256 not hex", _bad_hash, "has sha256 'zzzz"),
    ("sha256 not a dict", _set(*SPLIT, "sha256", value=["abc"]), "not a non-empty object of file -> digest"),
    ("path with ..", _set(*SPLIT, "path", value="../test"), "escapes the directory"),
    ("absolute path", _set(*SPLIT, "path", value="/tmp"), "escapes the directory"),
    ("absolute file", _absolute_file, "'/etc/hostname' escapes the directory"),
    ("path not a string", _set(*SPLIT, "path", value=3), "split test path is 3, not a relative path"),
    ("missing count", _set(*SPLIT, "count", value=None), "split test lacks count"),
    ("missing sha256", _set(*SPLIT, "sha256", value=None), "split test lacks sha256"),
    ("split name", _renamed_split, "split name '../test' is not a simple identifier"),
    ("missing info", _set("dataset", "info", value=None), "info is None, not an object"),
    ("num_classes as string", _set("dataset", "info", "num_classes", value="ten"), "num_classes is 'ten'"),
    ("class names", _set("dataset", "info", "class_names", value=["a"]), "class_names is ['a'], not 10 names"),
    ("image shape", _set("dataset", "info", "image_shape", value=[16, "16", 1]), "image_shape is [16, '16', 1]"),
    ("shape not the real one", _set("dataset", "info", "image_shape", value=[8, 8, 1]),
     "not float (8, 8, 1) as its manifest says"),
    ("mean per channel", _set("dataset", "info", "mean", value=[0.1, 0.2]), "info mean is [0.1, 0.2], not 1 finite"),
    ("source not a dict", _set("dataset", "source", value="digits"), "source is 'digits', not an object"),
    ("source dataset", _set("dataset", "source", "dataset", value=7), "source dataset is 7"),
    ("manifest a list", lambda manifest: [manifest], "no 'dataset' section"),
]


def test_absurdly_nested_manifest_is_a_user_error(adversarial):
    (adversarial / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UserError, match="is a directory but not a saved dataset"):
        load_dataset(str(adversarial))
    with pytest.raises(UserError, match="has no readable manifest.json"):
        load_saved_elements(adversarial, "test")


def _rewrite_manifest(directory, edit):
    path = directory / "manifest.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


@pytest.mark.parametrize("case, edit, message", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_manifest_is_a_one_line_user_error(adversarial, case, edit, message):
    _rewrite_manifest(adversarial, edit)
    with pytest.raises(UserError) as caught:
        load_saved_elements(adversarial, "test")
    assert message in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(UserError) as caught:
        load_dataset(str(adversarial))
    if case == "manifest a list":  # load_dataset first asks whether the directory is a saved dataset at all
        message = "is a directory but not a saved dataset"
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_malformed_manifest_exits_2_from_the_cli(adversarial, tmp_path):
    from click.testing import CliRunner

    from advtf.cli.main import advtf

    _rewrite_manifest(adversarial, _set(*SPLIT, "count", value="12"))
    result = CliRunner().invoke(advtf, ["evaluate", str(tmp_path / "model.keras"), "--dataset", str(adversarial),
                                        "--out", str(tmp_path / "out"), "--quiet"])
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 2, output
    assert "count '12', not a non-negative integer" in output and "Traceback" not in output
