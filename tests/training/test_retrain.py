"""Block-wise retraining cells: module/layer splits, selections, reinitialisation and freezing (Siddiqui & Breuel 2021)."""

import keras
import numpy as np
import pytest

from advtf.attacks import Threat
from advtf.data import make_batches, split_arrays
from advtf.errors import UserError
from advtf.evaluation import evaluate
from advtf.inputs import load_trained_model
from advtf.models import create_model, module_layers
from advtf.training.loop import AdversarialConfig, TrainConfig
from advtf.training.retrain import (INITIAL_WEIGHTS, cutoff_selection, fresh_model, initial_model, layer_units,
                                    parse_modules, prepare_model, reinit_cell, retrain_cell, subset_selection,
                                    unit_names)
from advtf.distribute.strategy import make_strategy
from tiny import digits, fitted_test_cnn

THREAT = Threat(norm="linf", eps=0.1, steps=2)


def _kernels(module):
    return [layer.name for layer in module if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]


@pytest.mark.parametrize("name, convs, firsts", [
    ("resnet18", [1, 4, 5, 5, 5, 1], ["conv1", "layer1_0_conv1", "layer2_0_conv1", "layer3_0_conv1",
                                      "layer4_0_conv1", "logits"]),
    ("vgg11_bn", [1, 1, 2, 2, 2, 1], ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1",
                                      "block5_conv1", "logits"]),
    ("vgg16_bn", [2, 2, 3, 3, 3, 1], ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1",
                                      "block5_conv1", "logits"]),
])
def test_modules_split_at_down_sampling(name, convs, firsts):
    # The paper's six modules of ResNet-18 and VGG-11/16-BN (Sec. 3): split by max-pooling / stride-2 convs.
    model = create_model(name, input_shape=(32, 32, 3), num_classes=10, width=0.0625, seed=0)
    modules = module_layers(model)
    assert [len(_kernels(m)) for m in modules] == convs
    assert [_kernels(m)[0] for m in modules] == firsts
    assert unit_names(model, "modules") == [f"m{i}" for i in range(6)]
    # Every weighted layer is in exactly one module.
    weighted = [layer.name for layer in model.layers if layer.weights and layer.name != "normalize"]
    assert sorted(layer.name for m in modules for layer in m if layer.weights) == sorted(weighted)


def test_layer_units_pair_each_conv_with_its_batchnorm():
    model = create_model("resnet18", input_shape=(32, 32, 3), num_classes=10, width=0.0625, seed=0)
    units = layer_units(model)
    assert len(units) == 21  # 17 convs + 3 projection shortcuts + the head
    assert units[0][0].name == "conv1" and units[-1][0].name == "logits" and len(units[-1]) == 1
    for unit in units[:-1]:
        conv, bn = unit
        assert isinstance(bn, keras.layers.BatchNormalization) and bn.name == conv.name.replace("conv", "bn")


def test_cutoff_selection_convention_and_bounds():
    assert cutoff_selection("before", 2, 6).indices == (0, 1, 2)
    assert cutoff_selection("after", 2, 6).indices == (2, 3, 4, 5)
    assert cutoff_selection("before", 5, 6).indices == cutoff_selection("after", 0, 6).indices == tuple(range(6))
    assert cutoff_selection("after", 4, 21, "layers").name == "layers-after-4"
    for bad in (-1, 6):
        with pytest.raises(UserError, match=r"--cutoff .* outside 0\.\.5"):
            cutoff_selection("before", bad, 6)
    assert parse_modules("0,2,3", 6) == (0, 2, 3) and parse_modules("m3, M0", 6) == (0, 3)
    for bad in ("0,6", "m9", "x", ""):
        with pytest.raises(UserError, match="unknown module"):
            parse_modules(bad, 6)
    assert subset_selection((3, 0)).name == "m0+m3" and subset_selection(()).name == "none"


def test_fresh_weights_depend_on_the_seed_only():
    model = create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=0)
    a, b, c = fresh_model(model, 1), fresh_model(model, 1), fresh_model(model, 2)
    kernel = lambda m: m.get_layer("conv1").get_weights()[0]  # noqa: E731
    assert np.array_equal(kernel(a), kernel(b))
    assert not np.array_equal(kernel(a), kernel(c)) and not np.array_equal(kernel(a), kernel(model))
    # The seeded initializers in the config redraw the model's own initial weights exactly.
    initial, source = initial_model(model, None, seed=5)
    assert source == "config"
    assert all(np.array_equal(x, y) for x, y in zip(initial.get_weights(), model.get_weights()))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """test_cnn (4 modules, BatchNorm) fitted on digits, saved like `advtf train` with initial weights."""
    model, _ = fitted_test_cnn(test_subset=64, epochs=2)
    path = tmp_path_factory.mktemp("retrain") / "model.keras"
    model.save(path)
    return path


def test_prepared_model_reinitialises_the_selection_and_freezes_the_rest(pretrained):
    selection = cutoff_selection("after", 2, 4)
    model = prepare_model(pretrained, selection, seed=3)
    original = load_trained_model(pretrained)
    fresh = fresh_model(original, 3)
    modules = module_layers(model)
    for index, module in enumerate(modules):
        for layer in module:
            if not layer.weights:
                continue
            mine = layer.get_weights()
            source = (fresh if index >= 2 else original).get_layer(layer.name).get_weights()
            assert all(np.array_equal(x, y) for x, y in zip(mine, source)), layer.name
            assert layer.trainable == (index >= 2), layer.name
    assert {v.name for v in model.trainable_variables} == {
        v.name for m in modules[2:] for layer in m for v in layer.trainable_weights}


@pytest.mark.parametrize("part, cutoff", [("after", 2), ("before", 1)])
def test_retraining_changes_only_the_selection(pretrained, tmp_path, part, cutoff):
    data = digits(train_subset=200, test_subset=40)
    config = TrainConfig(epochs=1, batch_size=50, optimizer="adam", lr=1e-2, weight_decay=1e-3,
                         schedule="constant", augment=False)
    adversarial = AdversarialConfig(THREAT, attack_target="prediction", clean_fraction=0.5, fast=True)
    selection = cutoff_selection(part, cutoff, 4)
    result = retrain_cell(pretrained, selection, data, config, adversarial, THREAT, tmp_path,
                          strategy=make_strategy("auto"), save_model=True)
    retrained = load_trained_model(tmp_path / "model.keras")
    original = load_trained_model(pretrained)
    fresh = fresh_model(original, config.seed)
    for index, module in enumerate(module_layers(retrained)):
        for layer in module:
            for new, old, init, var in zip(layer.get_weights(), original.get_layer(layer.name).get_weights(),
                                           fresh.get_layer(layer.name).get_weights(), layer.weights):
                if index in selection.indices:
                    assert not np.array_equal(new, old), var.path  # reinitialised (and trained)
                    if var.trainable or "moving" in var.path:  # moved by training (BN statistics too)
                        assert not np.array_equal(new, init), var.path
                else:  # frozen: kernels, gammas/betas and BatchNorm moving statistics bit-identical
                    assert np.array_equal(new, old), var.path
    expected = sum(int(np.prod(v.shape)) for i in selection.indices for layer in module_layers(original)[i]
                   for v in layer.trainable_weights)
    assert result["trainable_params"] == expected and result["epochs"] == 1
    assert (tmp_path / "history.csv").exists() and not (tmp_path / "resume").exists()
    # The reported accuracy is the retrained model's (independent evaluation, same seed and data).
    check = evaluate(retrained, make_batches(data.test, 50, training=False), threat=THREAT, seed=config.seed)
    assert result["clean_accuracy"] == pytest.approx(check["clean_accuracy"])
    assert result["robust_accuracy"] == pytest.approx(check["robust_accuracy"])


def test_reinit_cell_uses_saved_initial_weights(pretrained, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    original = load_trained_model(pretrained)
    original.save(run / "model.keras")
    start = fresh_model(original, 11)  # stands for the run's own initial weights
    start.save_weights(run / INITIAL_WEIGHTS)
    initial, source = initial_model(original, run, seed=0)
    assert source == "saved"
    data = digits(train_subset=10, test_subset=40)
    selection = subset_selection((1,))
    result = reinit_cell(run, selection, data, THREAT, batch_size=40, strategy=make_strategy("auto"), seed=0,
                         initial=initial)
    # Hand-built: the pretrained model with conv2/bn2 (module m1) set to the initial weights.
    expected = load_trained_model(pretrained)
    for name in ("conv2", "bn2"):
        expected.get_layer(name).set_weights(start.get_layer(name).get_weights())
    x, y = split_arrays(data.test)
    clean = float(np.mean(np.argmax(expected.predict(x, verbose=0), -1) == y))
    assert result["clean_accuracy"] == pytest.approx(clean)
    assert result["reinitialised_params"] == sum(int(np.prod(w.shape)) for n in ("conv2", "bn2")
                                                 for w in start.get_layer(n).get_weights())
