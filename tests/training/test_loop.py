"""The training loop: learns, robust training helps, resume is exact, strategies agree."""

import numpy as np
import pytest
import tensorflow as tf

from advtf.attacks import Threat
from advtf.data import make_batches
from advtf.evaluation import evaluate
from advtf.models import create_model
from advtf.training.loop import AdversarialConfig, TrainConfig, train
from advtf.distribute.strategy import make_strategy
from tiny import digits, tiny_cnn

ADAM = dict(optimizer="adam", lr=1e-2, weight_decay=0.0, schedule="constant", batch_size=50)


def test_tiny_model_learns(tmp_path):
    data = digits(validation=0.1)
    config = TrainConfig(epochs=4, select_by="clean", **ADAM)
    result = train(lambda: tiny_cnn(), data, config, workdir=tmp_path)
    accuracy = evaluate(result.model, make_batches(data.test, 100, training=False))["clean_accuracy"]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert accuracy > 0.6
    assert (tmp_path / "history.csv").exists() and (tmp_path / "resume" / "train" / "best.weights.h5").exists()
    assert len(list((tmp_path / "logs").iterdir())) >= 1


def test_resnet_with_batchnorm_evaluates_well_after_short_training(tmp_path):
    # Guards against BatchNorm moving statistics lagging far behind short CPU runs.
    data = digits()
    model_fn = lambda: create_model("resnet20v2", input_shape=(16, 16, 1), num_classes=10, width=0.25, seed=0)  # noqa: E731
    result = train(model_fn, data, TrainConfig(epochs=3, **ADAM), workdir=tmp_path)
    train_acc = result.history[-1]["train_accuracy"]
    test_acc = evaluate(result.model, make_batches(data.test, 100, training=False))["clean_accuracy"]
    assert test_acc > 0.6 and test_acc > train_acc - 0.25


def _weights(model):
    return [v.numpy() for v in model.weights]


def test_resume_continues_exactly(tmp_path):
    data = digits(train_subset=300)
    adversarial = AdversarialConfig(Threat(norm="l2", eps=0.5, steps=2))
    straight = train(lambda: tiny_cnn(), data, TrainConfig(epochs=2, **ADAM), adversarial, workdir=tmp_path / "a")
    train(lambda: tiny_cnn(), data, TrainConfig(epochs=1, **ADAM), adversarial, workdir=tmp_path / "b")
    resumed = train(lambda: tiny_cnn(), data, TrainConfig(epochs=2, **ADAM), adversarial, workdir=tmp_path / "b")
    assert resumed.epochs_run == 2 and len(resumed.history) == 2
    for a, b in zip(_weights(straight.model), _weights(resumed.model)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_mirrored_strategy_matches_single_device(tmp_path):
    if len(tf.config.list_logical_devices("CPU")) < 2:
        pytest.skip("needs the two logical CPU devices the conftest configures")
    data = digits(train_subset=200)
    config = TrainConfig(epochs=1, optimizer="sgd", lr=0.05, weight_decay=5e-4, schedule="constant", batch_size=40)
    single = train(lambda: tiny_cnn(), data, config, workdir=tmp_path / "single")
    mirrored_strategy = make_strategy("mirrored")
    assert mirrored_strategy.num_replicas_in_sync == 2
    mirrored = train(lambda: tiny_cnn(), data, config, workdir=tmp_path / "mirrored", strategy=mirrored_strategy)
    for a, b in zip(_weights(single.model), _weights(mirrored.model)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_clean_fraction_and_fast_training_run(tmp_path):
    data = digits(train_subset=200)
    for name, adversarial in {
        "mix": AdversarialConfig(Threat(norm="linf", eps=0.1, steps=2), clean_fraction=0.5),
        "fast": AdversarialConfig(Threat(norm="linf", eps=0.1, steps=1), fast=True, attack_target="prediction"),
    }.items():
        result = train(lambda: tiny_cnn(), data, TrainConfig(epochs=1, **ADAM), adversarial, workdir=tmp_path / name)
        assert np.isfinite(result.history[0]["train_loss"])


@pytest.mark.slow
def test_robust_training_raises_pgd_accuracy(tmp_path):
    data = digits(train_subset=1200, test_subset=300)
    threat = Threat(norm="l2", eps=1.0, steps=5)
    eval_threat = Threat(norm="l2", eps=1.0, steps=20)
    config = TrainConfig(epochs=8, **ADAM)
    accuracies = {}
    for name, adversarial in {"standard": None, "robust": AdversarialConfig(threat)}.items():
        model = train(lambda: tiny_cnn(), data, config, adversarial, workdir=tmp_path / name).model
        accuracies[name] = evaluate(model, make_batches(data.test, 100, training=False), threat=eval_threat)
    assert accuracies["robust"]["robust_accuracy"] > accuracies["standard"]["robust_accuracy"] + 0.15
