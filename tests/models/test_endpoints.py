"""feature_extractor / endpoints error paths and the graph-cut helper."""

import keras
import numpy as np
import pytest

from advtf.errors import UserError
from advtf.models import create_model, endpoints, feature_extractor, module_layers
from advtf.models.endpoints import graph_cuts


@pytest.fixture(scope="module")
def tiny():
    return create_model("resnet18", input_shape=(16, 16, 3), num_classes=4, width=0.0625, seed=3)


def test_feature_extractor_returns_named_activations(tiny):
    extractor = feature_extractor(tiny, ["layer2", "representation"])
    assert isinstance(extractor, keras.Model)
    out = extractor(np.zeros((2, 16, 16, 3), np.float32))
    assert set(out) == {"layer2", "representation"}
    assert out["layer2"].shape == (2, 8, 8, 8) and out["representation"].shape == (2, 32)
    assert extractor.get_layer("layer1_0_conv1") is tiny.get_layer("layer1_0_conv1")  # shared


def test_unknown_endpoint_lists_available(tiny):
    with pytest.raises(
        UserError, match=r"unknown endpoint\(s\) 'layer9'.*available endpoints: m0, m1"
    ):
        feature_extractor(tiny, ["layer1", "layer9"])
    with pytest.raises(UserError, match="none given"):
        feature_extractor(tiny, [])


def test_plain_keras_model_has_no_endpoints():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs), name="plain")
    with pytest.raises(UserError, match="model 'plain' has no advtf endpoints"):
        endpoints(model)
    with pytest.raises(UserError):
        module_layers(model)


def test_graph_cuts_skip_parallel_branches():
    inputs = keras.Input((4,), name="in")
    a = keras.layers.Dense(4, name="a")(inputs)
    b = keras.layers.Dense(4, name="b")(a)
    c = keras.layers.Dense(4, name="c")(b)
    d = keras.layers.Dense(4, name="d")(a)
    out = keras.layers.Dense(2, name="out")(keras.layers.Add(name="add")([c, d]))
    cuts = [layer.name for layer in graph_cuts(keras.Model(inputs, out))]
    assert cuts == ["in", "a", "add", "out"]
