"""Defaults the papers set: Xu et al.'s kappa = 1, Springer et al.'s Adam without weight decay,
Siddiqui & Breuel's step eps/4 and the /10 lr drops at 50% and 75% of the epochs."""

import dataclasses
import json

import numpy as np
import pytest
from test_attack_cli import run, trained  # noqa: F401  (the shared model fixture)

from advtf.attacks import ATTACKS

DATA = ["--dataset", "digits", "--test-subset", "8", "--quiet"]
CW = ["--attack", "cw", "--norm", "l2", "--eps", "2", "--steps", "3", "-O", "search_steps=1"]


def assert_ok(result):
    assert result.exit_code == 0, result.output + result.stderr


@pytest.fixture
def cw_calls(monkeypatch):
    """The keyword options every C&W call receives (the real attack still runs)."""
    spec, calls = ATTACKS["cw"], []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return spec.fn(*args, **kwargs)

    monkeypatch.setitem(ATTACKS._entries, "cw", dataclasses.replace(spec, fn=spy))  # a spy in the registry
    return calls


def _recorded(out):
    results = json.loads((out / "results.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    return results, manifest["options"]


@pytest.mark.parametrize("command", ["cam", "psr"])
def test_xu_analyses_default_to_kappa_one(trained, tmp_path, cw_calls, command):
    out = tmp_path / command
    assert_ok(run(command, trained, *DATA, *CW, "--examples", "1", "--out", out))
    assert cw_calls and all(c["confidence"] == 1.0 for c in cw_calls)
    results, options = _recorded(out)
    assert results["options"]["confidence"] == 1.0 and options["attack"]["options"]["confidence"] == 1.0
    assert results["options"]["search_steps"] == 1  # the user's other options stay


def test_a_given_confidence_wins(trained, tmp_path, cw_calls):
    out = tmp_path / "cam3"
    assert_ok(run("cam", trained, *DATA, *CW, "-O", "confidence=3", "--examples", "1", "--out", out))
    assert cw_calls and all(c["confidence"] == 3.0 for c in cw_calls)
    results, options = _recorded(out)
    assert results["options"]["confidence"] == 3.0 and options["attack"]["options"]["confidence"] == 3.0


def test_response_gives_also_attacks_kappa_one(trained, tmp_path, cw_calls):
    out = tmp_path / "response"
    assert_ok(run("response", trained, *DATA, "--attack", "fgsm", "--norm", "l2", "--eps", "1",
                  "--also-attack", "cw:l2:2:3", "--out", out))
    assert cw_calls and all(c["confidence"] == 1.0 for c in cw_calls)
    results, options = _recorded(out)
    assert results["also"] == ["cw"] and results["also_options"] == [{"confidence": 1.0}]
    assert [(a["name"], a["options"]) for a in options["also"]] == [("cw", {"confidence": 1.0})]  # the request
    assert results["options"] == {}  # fgsm has no confidence


def test_attack_keeps_the_registry_default(trained, tmp_path, cw_calls):
    out = tmp_path / "attack"
    assert_ok(run("attack", trained, *DATA, *CW, "--figure-examples", "0", "--out", out))
    default = ATTACKS["cw"].options["confidence"]
    assert default == 0.0 and cw_calls
    assert all(c.get("confidence", default) == default for c in cw_calls)
    results, _ = _recorded(out)
    assert results["options"].get("confidence", default) == default


TINY = ["--dataset", "digits", "--model", "test_cnn", "--train-subset", "100", "--test-subset", "20",
        "--batch-size", "50", "--eval-steps", "1", "--quiet"]


def _saved_set(directory):
    """A hand-made saved (derived) dataset: 16x16 digits-like images with labels."""
    import tensorflow as tf

    from advtf.data import DatasetInfo, write_saved_dataset

    rng = np.random.default_rng(0)
    images, labels = rng.uniform(size=(60, 16, 16, 1)).astype(np.float32), np.arange(60) % 10
    info = DatasetInfo(name="hand-made", num_classes=10, class_names=tuple(map(str, range(10))),
                       image_shape=(16, 16, 1), mean=(0.5,), std=(0.25,), natural_images=False, source="test")
    ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": labels.astype(np.int32)})
    write_saved_dataset(directory, {"test": ds, "train": ds}, kind="relabeled", info=info, source={},
                        parameters={})
    return directory


def test_derived_sets_train_without_weight_decay(tmp_path):
    data = _saved_set(tmp_path / "D")
    out = tmp_path / "m"
    result = run("train", "--dataset", data, "--model", "test_cnn", "--epochs", "1", "--eval-steps", "1",
                 "--batch-size", "50", "--quiet", "--out", out)
    assert_ok(result)
    assert "--weight-decay 0 " in result.output and "Table 3 defaults" in result.output
    results, options = _recorded(out)
    assert results["weight_decay"] == 0.0 and options["weight_decay"] == 0.0 and results["optimizer"] == "adam"
    given = tmp_path / "m-wd"
    result = run("train", "--dataset", data, "--model", "test_cnn", "--epochs", "1", "--eval-steps", "1",
                 "--batch-size", "50", "--weight-decay", "1e-3", "--quiet", "--out", given)
    assert_ok(result)
    switched = next(line for line in result.output.splitlines() if "Table 3 defaults" in line)
    assert "--weight-decay" not in switched and "--optimizer adam" in switched
    results, options = _recorded(given)
    assert results["weight_decay"] == 1e-3 and options["weight_decay"] == 1e-3


def test_train_drops_the_lr_at_half_and_three_quarters(tmp_path):
    out = tmp_path / "std"
    assert_ok(run("train", *TINY, "--epochs", "4", "--out", out))
    results, options = _recorded(out)
    assert results["schedule"] == "piecewise" and results["lr_milestones"] == [2, 3]
    assert options["lr_milestones"] == [2, 3]
    lrs = [float(line.split(",")[1]) for line in (out / "history.csv").read_text().splitlines()[1:]]
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.01, 0.001], rtol=1e-6)  # the lr at the end of each epoch
    given = tmp_path / "given"
    assert_ok(run("train", *TINY, "--epochs", "2", "--lr-milestones", "1", "--out", given))
    assert _recorded(given)[0]["lr_milestones"] == [1]
    constant = tmp_path / "constant"
    assert_ok(run("train", *TINY, "--epochs", "2", "--lr-milestones", "", "--out", constant))
    assert _recorded(constant)[0]["lr_milestones"] == []


RETRAIN = ["--dataset", "digits", "--train-subset", "100", "--test-subset", "10", "--quiet", "--mode", "adversarial",
           "--modules", "3", "--norm", "linf", "--eps", "0.1", "--eval-steps", "1", "--epochs", "1",
           "--batch-size", "50", "--save-models"]


def test_retraining_steps_eps_over_four_unless_given(trained, tmp_path, monkeypatch):
    import advtf.training.loop as loop

    steps, real = [], loop.pgd

    def spy(model, x, y, threat, **kwargs):
        steps.append(threat.alpha)
        return real(model, x, y, threat, **kwargs)

    monkeypatch.setattr(loop, "pgd", spy)
    out = tmp_path / "default"
    assert_ok(run("retrain", trained, *RETRAIN, "--out", out))
    results, options = _recorded(out)
    assert results["training_threat"]["step_size"] == pytest.approx(0.1 / 4) == options["step_size"]
    assert steps and all(s == pytest.approx(0.025) for s in steps)  # what the training attack used
    assert results["eval_threat"]["step_size"] == pytest.approx(2.5 * 0.1 / 1)  # evaluation keeps its own
    steps.clear()
    given = tmp_path / "given"
    assert_ok(run("retrain", trained, *RETRAIN, "--step-size", "0.01", "--out", given))
    results, options = _recorded(given)
    assert results["training_threat"]["step_size"] == pytest.approx(0.01) == options["step_size"]
    assert steps and all(s == pytest.approx(0.01) for s in steps)
