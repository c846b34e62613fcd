"""advtf's own families: shapes, logits, endpoints, normalisation, parameter counts."""

import keras
import numpy as np
import pytest

from advtf.models import count_params, create_model, endpoints, feature_extractor, module_layers


def _shapes(model):
    return {name: tuple(t.shape[1:]) for name, t in endpoints(model).items()}


@pytest.mark.parametrize(
    "name, size, width, expected",
    [
        (
            "resnet20v2",
            16,
            0.25,
            {
                "m0": (16, 16, 4),
                "m1": (16, 16, 16),
                "m2": (8, 8, 32),
                "m3": (4, 4, 64),
                "m4": (5,),
                "representation": (64,),
            },
        ),
        (
            "resnet56v2",
            8,
            0.125,
            {
                "m0": (8, 8, 2),
                "m1": (8, 8, 8),
                "m2": (4, 4, 16),
                "m3": (2, 2, 32),
                "m4": (5,),
                "representation": (32,),
            },
        ),
        (
            "vgg11_bn",
            32,
            0.0625,
            {
                "m0": (32, 32, 4),
                "m1": (16, 16, 8),
                "m2": (8, 8, 16),
                "m3": (4, 4, 32),
                "m4": (2, 2, 32),
                "m5": (5,),
                "representation": (32,),
            },
        ),
        (
            "vgg16_bn",
            32,
            0.0625,
            {
                "m0": (32, 32, 4),
                "m1": (16, 16, 8),
                "m2": (8, 8, 16),
                "m3": (4, 4, 32),
                "m4": (2, 2, 32),
                "m5": (5,),
                "representation": (32,),
            },
        ),
    ],
)
def test_endpoints_order_and_shapes(name, size, width, expected):
    model = create_model(name, input_shape=(size, size, 3), num_classes=5, width=width, seed=0)
    assert _shapes(model) == expected
    assert list(_shapes(model)) == list(expected)  # ordered m0..mK, representation


def test_resnet18_aliases_cifar_stem():
    model = create_model("resnet18", input_shape=(32, 32, 3), num_classes=10, width=0.125)
    shapes = _shapes(model)
    assert list(shapes) == [
        "m0",
        "m1",
        "m2",
        "m3",
        "m4",
        "m5",
        "representation",
        "conv1",
        "layer0",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
    ]
    assert shapes["conv1"] == shapes["layer0"] == shapes["layer1"] == (32, 32, 8)
    assert (shapes["layer2"], shapes["layer3"], shapes["layer4"]) == (
        (16, 16, 16),
        (8, 8, 32),
        (4, 4, 64),
    )
    assert shapes["m5"] == (10,) and shapes["representation"] == (64,)
    # conv1 is the raw conv output (before BN), layer0 after BN + ReLU
    assert model.get_layer("ep_conv1").input._keras_history[0].name == "conv1"
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    out = feature_extractor(model, ["conv1", "layer0", "layer4"])(x)
    assert out["conv1"].numpy().min() < 0 <= out["layer0"].numpy().min()


def test_resnet_imagenet_stem_from_128px():
    model = create_model("resnet18", input_shape=(128, 128, 3), num_classes=4, width=0.0625)
    shapes = _shapes(model)
    assert shapes["conv1"] == shapes["m0"] == (64, 64, 4)
    assert shapes["layer0"] == shapes["layer1"] == (32, 32, 4)
    assert shapes["layer4"] == (4, 4, 32)
    assert model.get_layer("conv1").kernel.shape[:2] == (7, 7)
    assert "maxpool" in [layer.name for layer in module_layers(model)[1]]


def test_resnet50_bottleneck_shapes():
    model = create_model("resnet50", input_shape=(32, 32, 3), num_classes=10, width=0.0625)
    shapes = _shapes(model)
    assert shapes["layer1"] == (32, 32, 16) and shapes["layer4"] == (4, 4, 128)
    assert model.get_layer("layer2_0_conv2").strides == (2, 2)  # v1.5: stride on the 3×3


@pytest.mark.parametrize("name", ["resnet20v2", "resnet18", "resnet50", "vgg11_bn"])
def test_logits_and_module_partition(name):
    model = create_model(name, input_shape=(32, 32, 3), num_classes=7, width=0.0625, seed=1)
    x = np.random.default_rng(1).random((3, 32, 32, 3), dtype=np.float32)
    logits = model(x, training=False).numpy()
    assert logits.shape == (3, 7) and np.isfinite(logits).all()
    assert not np.allclose(logits.sum(axis=1), 1.0) and (logits < 0).any()  # not softmax
    modules = module_layers(model)
    assert len(modules) == len([n for n in endpoints(model) if n.startswith("m")])
    seen = [layer.name for module in modules for layer in module]
    assert len(seen) == len(set(seen))
    weighted = {layer.name for layer in model.layers if layer.trainable_weights}
    assert weighted == {n for n in seen if model.get_layer(n).trainable_weights}
    assert [layer.name for layer in modules[-1]][-1] == "logits"
    assert modules[0][0].name == "normalize"
    np.testing.assert_allclose(
        feature_extractor(model, "m" + str(len(modules) - 1))(x)["m" + str(len(modules) - 1)],
        logits,
        rtol=1e-5,
        atol=1e-5,
    )


def test_normalisation_is_the_first_layer():
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    model = create_model(
        "resnet20v2", input_shape=(8, 8, 3), num_classes=3, width=0.25, mean=mean, std=std, seed=2
    )
    plain = create_model(
        "resnet20v2", input_shape=(8, 8, 3), num_classes=3, width=0.25, mean=0.0, std=1.0
    )
    plain.set_weights(model.get_weights())
    assert model.layers[1].name == "normalize"
    assert isinstance(model.layers[1], keras.layers.Normalization)
    x = np.random.default_rng(2).random((2, 8, 8, 3), dtype=np.float32)
    manual = (x - np.array(mean, np.float32)) / np.array(std, np.float32)
    np.testing.assert_allclose(model(x), plain(manual), rtol=1e-4, atol=1e-4)


def test_width_scales_channels():
    half = create_model("resnet18", input_shape=(16, 16, 3), num_classes=10, width=0.5)
    assert half.get_layer("conv1").filters == 32
    assert half.get_layer("layer4_1_conv2").filters == 256
    tiny = create_model("vgg11_bn", input_shape=(32, 32, 3), num_classes=10, width=0.001)
    assert tiny.get_layer("block1_conv1").filters == 1


@pytest.mark.parametrize(
    "name, trainable, keras_total",
    [
        ("resnet20v2", 570_602, 574_090),
        ("resnet56v2", 1_663_338, 1_673_738),
        ("resnet18", 11_173_962, 11_183_562),
        ("vgg11_bn", 9_231_114, 9_236_618),
        ("vgg16_bn", 14_728_266, 14_736_714),
    ],
)
def test_parameter_counts_at_width_1(name, trainable, keras_total):
    """Published architectures for 10 classes (resnet*v2: the Keras cifar10_resnet.py example;
    keras_total also counts BatchNorm moving statistics, as model.summary() does)."""
    model = create_model(name, input_shape=(32, 32, 3), num_classes=10)
    assert count_params(model) == trainable
    assert model.count_params() == keras_total


@pytest.mark.slow
def test_resnet50_parameter_count():
    model = create_model("resnet50", input_shape=(32, 32, 3), num_classes=10)
    assert count_params(model) == 23_520_842  # torchvision resnet50 with a 3×3 CIFAR stem


@pytest.mark.parametrize("name, width", [("resnet18", 0.0625), ("mobilenet_v2", 0.35)])
def test_builds_and_runs_under_mirrored_strategy(name, width, two_cpu_strategy):
    import tensorflow as tf

    strategy = two_cpu_strategy
    with strategy.scope():
        model = create_model(name, input_shape=(32, 32, 3), num_classes=4, width=width, seed=0)
    x = tf.random.uniform((4, 32, 32, 3))
    dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(x))
    logits = strategy.run(lambda batch: model(batch, training=False), args=(next(iter(dataset)),))
    merged = tf.concat(strategy.experimental_local_results(logits), axis=0)
    assert merged.shape == (4, 4)
    np.testing.assert_allclose(merged, model(x, training=False), rtol=1e-4, atol=1e-4)
