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
    wrong_suffix = tmp_path / "model.h5"
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
