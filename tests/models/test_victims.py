"""keras.applications victims wrapped to the advtf contract (weights=None on small inputs)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from advtf.errors import UserError
from advtf.models import create_model, endpoints, module_layers


def _layer_output(model, name, x):
    return keras.Model(model.input, model.get_layer(name).output)(x).numpy()


def _check_contract(model, shape, modules=6):
    x = np.random.default_rng(5).random((1, *shape), dtype=np.float32)
    logits = model(x, training=False).numpy()
    assert logits.shape == (1, 10) and np.isfinite(logits).all()
    names = list(endpoints(model))
    assert names == [f"m{k}" for k in range(modules)] + ["representation"]
    parts = module_layers(model)
    seen = [layer.name for part in parts for layer in part]
    assert len(seen) == len(set(seen))
    assert {layer.name for layer in model.layers if layer.trainable_weights} <= set(seen)
    assert all(any(layer.weights for layer in part) for part in parts)
    return x


def test_mobilenet_v2_tiny_width_and_tf_preprocessing():
    model = create_model("mobilenet_v2", input_shape=(32, 32, 3), num_classes=10, width=0.35)
    x = _check_contract(model, (32, 32, 3))
    assert model.name == "mobilenet_v2"
    assert [layer.name for layer in model.layers[:3]] == ["image", "preprocess", "Conv1"]
    expected = keras.applications.mobilenet_v2.preprocess_input(x * 255.0)
    np.testing.assert_allclose(_layer_output(model, "preprocess", x), expected, atol=1e-5)
    shapes = {k: tuple(v.shape[1:3]) for k, v in endpoints(model).items() if k != "representation"}
    assert [s for k, s in shapes.items() if k != "m5"] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]


def test_vgg16_grayscale_resized_caffe_preprocessing():
    model = create_model("vgg16", input_shape=(28, 28, 1), num_classes=10)
    x = _check_contract(model, (28, 28, 1))
    assert [layer.name for layer in model.layers[:5]] == [
        "image",
        "to_rgb",
        "resize",
        "to_bgr",
        "preprocess",
    ]
    rgb = _layer_output(model, "resize", x)
    assert rgb.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    expected = keras.applications.vgg16.preprocess_input(rgb * 255.0)
    np.testing.assert_allclose(_layer_output(model, "preprocess", x), expected, atol=1e-3)
    image = tf.constant(x)
    with tf.GradientTape() as tape:  # attacks differentiate through the resize
        tape.watch(image)
        loss = tf.reduce_sum(model(image, training=False)[:, 0])
    grad = tape.gradient(loss, image).numpy()
    assert grad.shape == x.shape and np.isfinite(grad).all() and np.abs(grad).max() > 0


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined")
def test_victim_warnings_and_errors(monkeypatch):
    with pytest.warns(UserWarning, match="mean/std ignored"):
        create_model("mobilenet_v2", input_shape=(32, 32, 3), num_classes=2, width=0.35, mean=0.4)
    with pytest.raises(UserError, match="need 1- or 3-channel images"):
        create_model("mobilenet_v2", input_shape=(32, 32, 2), num_classes=2, width=0.35)
    with pytest.raises(UserError, match="cannot build 'mobilenet_v2'.*alpha"):
        create_model(
            "mobilenet_v2", input_shape=(32, 32, 3), num_classes=2, width=0.3, weights="imagenet"
        )

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example: None -- offline")

    monkeypatch.setattr(keras.src.applications.mobilenet_v2.file_utils, "get_file", offline)
    with pytest.raises(UserError, match="cannot download ImageNet weights for 'mobilenet_v2'"):
        create_model("mobilenet_v2", input_shape=(32, 32, 3), num_classes=2, weights="imagenet")


def test_victim_seed_is_reproducible():
    a = create_model("mobilenet_v2", input_shape=(32, 32, 3), num_classes=2, width=0.35, seed=9)
    b = create_model("mobilenet_v2", input_shape=(32, 32, 3), num_classes=2, width=0.35, seed=9)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, min_size",
    [
        ("densenet121", 32),
        ("inception_v3", 75),
        ("xception", 75),
        ("resnet50_v2", 32),
        ("resnet50v2", 32),
    ],
)
def test_heavy_victims_build_and_forward(name, min_size):
    with pytest.warns(UserWarning, match="width=0.5 ignored"):
        model = create_model(name, input_shape=(32, 32, 3), num_classes=10, width=0.5)
    x = _check_contract(model, (32, 32, 3))
    first = [layer.name for layer in model.layers[:4]]
    assert ("resize" in first) == (min_size > 32)
    if name == "densenet121":  # 'torch' mode
        expected = keras.applications.densenet.preprocess_input(x * 255.0)
        np.testing.assert_allclose(_layer_output(model, "preprocess", x), expected, atol=1e-4)
    if name == "resnet50v2":  # advtf normalisation, default 0.5 / 0.5 == the 'tf' mode
        assert first[1] == "normalize"


@pytest.mark.slow
def test_inception_round_trip(tmp_path):
    from advtf.models import load_model, save_model

    model = create_model("inception_v3", input_shape=(32, 32, 1), num_classes=10)
    loaded = load_model(save_model(model, tmp_path / "m.keras"))
    x = np.random.default_rng(6).random((1, 32, 32, 1), dtype=np.float32)
    np.testing.assert_allclose(model(x), loaded(x), atol=1e-6)
    assert list(endpoints(loaded)) == list(endpoints(model))
