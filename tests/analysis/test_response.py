"""Local response differences (max / total per image) against numpy on a tiny model."""

import numpy as np
import pytest

from advtf.analysis import response as R
from advtf.errors import UserError
from advtf.models import create_model, feature_extractor


@pytest.fixture(scope="module")
def model():
    return create_model("test_cnn", input_shape=(8, 8, 1), num_classes=3, seed=0)


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    x = rng.random((5, 8, 8, 1)).astype(np.float32)
    return x, np.clip(x + rng.uniform(-0.1, 0.1, x.shape), 0, 1).astype(np.float32)


def test_max_and_total_match_numpy(model, pair):
    x, x_adv = pair
    layers = R.default_layers(model)
    assert layers == ["m0", "m1", "m2", "m3"]  # no ResNet-18 aliases: the modules
    diffs, clean, adv = R.layer_differences(R.response_extractor(model, layers), x, x_adv)
    features = feature_extractor(model, layers)
    nat, att = features(x), features(x_adv)
    for layer in layers:
        delta = np.abs(np.asarray(att[layer]) - np.asarray(nat[layer])).reshape(len(x), -1)
        np.testing.assert_allclose(diffs[layer]["max"], delta.max(1), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(diffs[layer]["total"], delta.sum(1), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(diffs[layer]["l2"], np.linalg.norm(delta, axis=1), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(clean, np.argmax(model(x).numpy(), -1))
    np.testing.assert_array_equal(adv, np.argmax(model(x_adv).numpy(), -1))
    # Identical inputs differ nowhere.
    same, _, _ = R.layer_differences(R.response_extractor(model, layers), x, x)
    assert all(np.all(same[layer]["total"] == 0) for layer in layers)


def test_hand_made_linear_layer():
    """A 1-channel 2x2 'image' through a known conv: the response difference is conv(delta)."""
    import keras

    from advtf.models.layers import ENDPOINT_PREFIX

    inputs = keras.Input((2, 2, 1))
    conv = keras.layers.Conv2D(1, 2, padding="valid", use_bias=False, name="c")
    out = keras.layers.Identity(name=f"{ENDPOINT_PREFIX}m0")(conv(inputs))
    logits = keras.layers.Identity(name=f"{ENDPOINT_PREFIX}m1")(keras.layers.Flatten()(out))
    model = keras.Model(inputs, logits)
    conv.set_weights([np.array([1.0, -2.0, 3.0, 0.5]).reshape(2, 2, 1, 1)])
    x = np.zeros((1, 2, 2, 1), np.float32)
    x_adv = np.array([0.1, 0.1, -0.1, 0.2], np.float32).reshape(1, 2, 2, 1)
    diffs, _, _ = R.layer_differences(R.response_extractor(model, ["m0"]), x, x_adv)
    expected = abs(0.1 * 1 - 0.1 * 2 - 0.1 * 3 + 0.2 * 0.5)  # |Δ| = |x_d ⊛ m| (Sec. 4.1)
    assert diffs["m0"]["max"][0] == pytest.approx(expected, rel=1e-6)
    assert diffs["m0"]["total"][0] == pytest.approx(expected, rel=1e-6)


def test_split_means_and_an_empty_split():
    arrays = {"m0_max": np.array([1.0, 2.0, 3.0, 4.0]), "m0_total": np.array([10.0, 20.0, 30.0, 40.0]),
              "m0_l2": np.array([2.0, 3.0, 4.0, 5.0]),
              "clean_correct": np.array([True, True, True, False]), "success": np.array([True, True, True, True])}
    rows = {r["split"]: r for r in R.split_means(arrays, ["m0"])}
    assert rows["all"]["n"] == 4 and rows["all"]["m0_max"] == pytest.approx(2.5)
    assert rows["successful"]["n"] == 3 and rows["successful"]["m0_total"] == pytest.approx(20.0)
    assert rows["failed"] == {"split": "failed", "n": 0, "m0_max": None, "m0_total": None, "m0_l2": None}
    note = R._empty_note("runs/std", "own", "pgd", rows["failed"], 3)
    assert "no failed attacks" in note and "fgsm" in note


def test_unknown_layer_is_a_user_error(model):
    with pytest.raises(UserError, match="unknown endpoint.*available endpoints"):
        R.response_extractor(model, ["m0", "layer9"])
