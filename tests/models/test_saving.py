"""`.keras` round trips (safe mode), load errors, input_fits."""

import zipfile

import numpy as np
import pytest

from advtf.errors import UserError
from advtf.models import (
    create_model,
    endpoints,
    feature_extractor,
    input_fits,
    load_model,
    module_layers,
    save_model,
)

CASES = [
    ("resnet20v2", (16, 16, 3), 0.25),
    ("resnet18", (16, 16, 1), 0.0625),
    ("resnet50", (16, 16, 3), 0.0625),
    ("vgg16_bn", (32, 32, 3), 0.0625),
    ("mobilenet_v2", (32, 32, 1), 0.35),
]


@pytest.mark.parametrize("name, shape, width", CASES)
def test_round_trip_is_identical(tmp_path, name, shape, width):
    model = create_model(
        name,
        input_shape=shape,
        num_classes=3,
        width=width,
        seed=4,
        mean=[0.3] * shape[2] if name != "mobilenet_v2" else None,
    )
    path = save_model(model, tmp_path / "sub" / "model.keras")
    loaded = load_model(path)
    x = np.random.default_rng(4).random((2, *shape), dtype=np.float32)
    assert loaded.name == name
    np.testing.assert_array_equal(model(x), loaded(x))
    assert list(endpoints(loaded)) == list(endpoints(model))
    names = list(endpoints(model))
    before, after = feature_extractor(model, names)(x), feature_extractor(loaded, names)(x)
    for key in names:
        np.testing.assert_array_equal(before[key], after[key])
    assert [[layer.name for layer in m] for m in module_layers(loaded)] == [
        [layer.name for layer in m] for m in module_layers(model)
    ]
    assert load_model(tmp_path / "sub").name == name  # a run directory holding model.keras


def test_load_errors(tmp_path):
    with pytest.raises(
        UserError, match=r"cannot load model '.*missing.keras': no such file; pass a \.keras"
    ):
        load_model(tmp_path / "missing.keras")
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"\x00not a zip at all" * 10)
    with pytest.raises(
        UserError, match="not a .keras zip archive; pass a .keras file written by `advtf train`"
    ):
        load_model(garbage)
    empty_zip = tmp_path / "empty.keras"
    with zipfile.ZipFile(empty_zip, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(UserError, match="corrupt or incompatible"):
        load_model(empty_zip)
    wrong_suffix = tmp_path / "model.pt"
    wrong_suffix.write_bytes(b"x")
    with pytest.raises(UserError, match="not a .keras zip archive"):
        load_model(wrong_suffix)


def test_save_needs_keras_suffix(tmp_path):
    model = create_model("resnet20v2", input_shape=(8, 8, 3), num_classes=2, width=0.125)
    with pytest.raises(UserError, match="must end in .keras"):
        save_model(model, tmp_path / "model.h5")


def test_input_fits():
    model = create_model("resnet20v2", input_shape=(32, 32, 3), num_classes=2, width=0.125)
    input_fits(model, (32, 32, 3))
    input_fits(model, (None, 32, 32, 3))
    with pytest.raises(UserError, match="expects 32×32×3 images but the dataset gives 28×28×1"):
        input_fits(model, (28, 28, 1))


# --- untrusted model files: nothing in a crafted archive may run -------------------------------


def _tiny_sequential():
    import keras

    return keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(2, name="dense")], name="tiny")


def _rewrite_config(source, target, edit):
    """Copies the `.keras` archive `source` to `target` with config.json passed through `edit`."""
    import json

    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                data = json.dumps(edit(json.loads(data))).encode()
            dst.writestr(item, data)
    return target


def _one_line_refusal(path, match):
    with pytest.raises(UserError, match=match) as caught:
        load_model(path)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_lambda_layer_is_refused_and_never_runs(tmp_path, monkeypatch):
    import keras

    marker = tmp_path / "lambda_ran"
    monkeypatch.setenv("ADVTF_TEST_MARKER", str(marker))
    # A lambda (Keras marshals its bytecode) that would leave a file behind if Keras ever called it.
    payload = lambda x: (open(__import__("os").environ["ADVTF_TEST_MARKER"], "w").write("ran"), x)[1]  # noqa: E731

    clean = save_model(_tiny_sequential(), tmp_path / "clean.keras")
    lambda_config = keras.saving.serialize_keras_object(keras.layers.Lambda(payload, name="evil"))
    assert lambda_config["config"]["function"]["class_name"] == "__lambda__"  # marshalled bytecode

    def insert_lambda(config):
        config["config"]["layers"].insert(1, lambda_config)
        return config

    crafted = _rewrite_config(clean, tmp_path / "crafted.keras", insert_lambda)
    message = _one_line_refusal(crafted, "refused, the archive asks to run Python code")
    assert "Lambda" in message and not marker.exists()
    # The payload is live: Keras without safe mode builds the model and runs it.
    keras.saving.load_model(crafted, compile=False, safe_mode=False)
    assert marker.read_text() == "ran"


@pytest.mark.parametrize("module, function", [("os", "system"), ("advtf_h6_payload", "touch"),
                                              ("keras.utils", "get_file")])
def test_non_keras_function_is_refused_and_never_imported(tmp_path, monkeypatch, module, function):
    import sys

    marker = tmp_path / "payload_ran"
    (tmp_path / "advtf_h6_payload.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\n"
        f"def touch(x):\n    open({str(marker)!r}, 'w').write('called')\n    return x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "advtf_h6_payload", raising=False)
    clean = save_model(_tiny_sequential(), tmp_path / "clean.keras")

    def set_activation(config):
        dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
        dense["config"]["activation"] = {"module": module, "class_name": "function", "config": function,
                                         "registered_name": function}
        return config

    crafted = _rewrite_config(clean, tmp_path / "crafted.keras", set_activation)
    message = _one_line_refusal(crafted, "refused, the archive asks to run Python code")
    assert f"{module}.{function}" in message
    assert not marker.exists() and "advtf_h6_payload" not in sys.modules
    if module == "advtf_h6_payload":  # the payload is live: importing it leaves the marker
        import importlib

        importlib.import_module(module)
        assert marker.read_text() == "imported"


def test_custom_object_and_member_paths_are_refused(tmp_path):
    clean = save_model(_tiny_sequential(), tmp_path / "clean.keras")

    def foreign_layer(config):
        config["config"]["layers"][1].update(module="evil.layers", registered_name="evil>Dense")
        return config

    crafted = _rewrite_config(clean, tmp_path / "foreign.keras", foreign_layer)
    assert "evil.layers.Dense" in _one_line_refusal(crafted, "asks to run Python code")
    escaping = tmp_path / "escaping.keras"
    with zipfile.ZipFile(clean) as src, zipfile.ZipFile(escaping, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        dst.writestr("../../outside.txt", "x")
    _one_line_refusal(escaping, r"holds a member path leaving it \('../../outside.txt'\)")


def test_legacy_hdf5_models_are_refused(tmp_path):
    import shutil

    import keras

    model = _tiny_sequential()
    legacy = tmp_path / "model.h5"
    model.save(legacy)  # Keras' legacy HDF5 format: safe_mode does not apply to it
    assert legacy.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    assert keras.saving.load_model(legacy, compile=False) is not None  # Keras itself would load it
    _one_line_refusal(legacy, "legacy HDF5 model files are refused because Keras ignores safe_mode")
    renamed = shutil.copy(legacy, tmp_path / "renamed.keras")
    _one_line_refusal(renamed, "legacy HDF5 model files are refused")
    hdf5_suffix = tmp_path / "model.hdf5"
    hdf5_suffix.write_bytes(b"anything")
    _one_line_refusal(hdf5_suffix, "legacy HDF5 model files are refused")
    user_block = tmp_path / "user_block.keras"  # HDF5 may put its superblock at 512, 1024, ...
    user_block.write_bytes(b"\0" * 512 + b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    _one_line_refusal(user_block, "legacy HDF5 model files are refused")


def test_run_weights_load_only_from_inside_the_run(tmp_path):
    from advtf.models.saving import load_run_weights

    model, other = _tiny_sequential(), _tiny_sequential()
    run = tmp_path / "run"
    run.mkdir()
    model.save_weights(run / "initial.weights.h5")
    load_run_weights(other, run, "initial.weights.h5")
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.save_weights(tmp_path / "elsewhere.weights.h5")
    (run / "linked.weights.h5").symlink_to(tmp_path / "elsewhere.weights.h5")
    with pytest.raises(UserError, match="points outside the run directory"):
        load_run_weights(other, run, "linked.weights.h5")
    with pytest.raises(UserError, match="points outside the run directory"):
        load_run_weights(other, run, "../elsewhere.weights.h5")
    create_model("resnet20v2", input_shape=(8, 8, 3), num_classes=2, width=0.125).save_weights(
        run / "wrong.weights.h5")
    with pytest.raises(UserError, match="does not fit the model"):
        load_run_weights(other, run, "wrong.weights.h5")
