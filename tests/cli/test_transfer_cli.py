"""``advtf robust-table`` and ``advtf transfer-eval`` end to end on digits, and every bad input."""

import csv
import json

import numpy as np
import pytest
from test_attack_cli import _saved, assert_user_error, run

SUBSET = ["--test-subset", "40", "--quiet"]
ATTACK = ["--dataset", "digits", *SUBSET, "--eps", "2", "--steps", "3", "--step-size", "0.5"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two tiny digits CNNs of different seeds, and a saved copy of the digits test split."""
    root = tmp_path_factory.mktemp("transfer-cli")
    out = {}
    for name, seed, epochs in (("a", 0, 2), ("b", 1, 1)):
        out[name] = root / name
        result = run("train", "--dataset", "digits", "--model", "test_cnn", "--train-subset", "300", "--test-subset",
                     "40", "--batch-size", "50", "--optimizer", "adam", "--lr", "0.01", "--weight-decay", "0",
                     "--epochs", epochs, "--eval-steps", "1", "--seed", seed, "--quiet", "--out", out[name])
        assert result.exit_code == 0, result.output + result.stderr
    out["copy"] = _saved(root / "copy", *_test_arrays("digits"), 10)
    return out


def _test_arrays(dataset, test_subset=None):
    from advtf.data import load_dataset

    pairs = load_dataset(dataset, test_subset=test_subset).test.as_numpy_iterator()
    return tuple(np.stack(v) for v in zip(*pairs))


def _accuracy(model_dir, dataset):
    """The accuracy of a trained model on 40 test images, computed directly."""
    from advtf.inputs import load_trained_model

    x, y = _test_arrays(dataset, 40)
    return float(np.mean(np.argmax(load_trained_model(model_dir)(x), -1) == y))


def test_robust_table(models, tmp_path):
    out = tmp_path / "table"
    result = run("robust-table", "--classifier", f"std-b={models['b']}", "--classifier", f"std-a={models['a']}",
                 "--testset", "Test=digits", "--testset", f"copy={models['copy']}", *SUBSET, "--batch-size", "16",
                 "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    assert "chance 0.100" in result.output and "std-a" in result.output
    results = json.loads((out / "results.json").read_text())
    assert {"accuracy", "n", "chance", "num_classes", "split", "inputs"} <= set(results)
    assert results["chance"] == pytest.approx(0.1) and results["n"] == {"Test": 40, "copy": 40}
    assert list(results["accuracy"]) == ["std-b", "std-a"]
    for name in ("a", "b"):
        row = results["accuracy"][f"std-{name}"]
        assert list(row) == ["Test", "copy"]
        # The same seed picks the same 40 positions of the copy: the same images, the same accuracy.
        assert row["Test"] == pytest.approx(_accuracy(models[name], "digits")) == pytest.approx(row["copy"])
    with open(out / "accuracy.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["classifier"] for r in rows] == ["std-b", "std-a"] and list(rows[0]) == ["classifier", "Test", "copy"]
    for name in ("accuracy.md", "accuracy.png", "manifest.json"):
        assert (out / name).stat().st_size > 0, name


@pytest.mark.parametrize("targeted", [False, True])
def test_transfer_eval(models, tmp_path, targeted):
    out = tmp_path / "transfer"
    result = run("transfer-eval", "--source", f"1/16={models['b']}", "--source", f"0={models['a']}",
                 "--victim", f"b={models['b']}", "--victim", f"a={models['a']}", *ATTACK,
                 *(["--targeted"] if targeted else []), "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    assert "white-box" in result.output
    results = json.loads((out / "results.json").read_text())
    for key in ("metric", "table", "white_box", "clean", "n", "threat", "attack", "targeted", "inputs", "sources"):
        assert key in results, key
    assert results["metric"] == ("target_rate" if targeted else "error_rate") and results["targeted"] is targeted
    assert results["n"] == 40 and results["attack"] == "pgd"
    assert results["threat"]["eps"] == 2.0 and results["threat"]["steps"] == 3
    assert [s["name"] for s in results["sources"]] == ["0", "1/16"] and results["sources"][1]["eps"] == 0.0625
    assert list(results["table"]["0"]) == ["b", "a"]
    # A victim that is the source itself is attacked white-box.
    assert results["table"]["0"]["a"] == pytest.approx(results["white_box"]["0"])
    assert results["table"]["1/16"]["b"] == pytest.approx(results["white_box"]["1/16"])
    assert all(0 <= v <= 1 for row in results["table"].values() for v in row.values())
    with open(out / "transfer.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["source"] for r in rows] == ["0", "1/16"] and list(rows[0]) == ["source", "eps", "b", "a", "white_box"]
    for name in ("transfer.md", "transfer.png", "manifest.json"):
        assert (out / name).stat().st_size > 0, name


def _table(models, *args):
    return ["robust-table", "--classifier", f"a={models['a']}", "--testset", "Test=digits", *SUBSET, *args]


def _transfer(models, *args):
    return ["transfer-eval", "--source", f"0={models['a']}", "--victim", f"b={models['b']}", *ATTACK, *args]


@pytest.mark.parametrize("command, args, words", [
    (_table, ["--classifier", "nameless"], "write NAME=VALUE"),
    (_table, ["--testset", "=digits"], "write NAME=VALUE"),
    (_table, ["--testset", "Test=digits"], "--testset Test is given twice"),
    (_table, ["--testset", "F=fashion_mnist", "--data-dir", "/usr/share/datasets/fashion-mnist"],
     "--classifier a on --testset F: model 'test_cnn' expects 16×16×1"),
    (_table, ["--classifier", "gone=missing/model.keras"], "--classifier gone: cannot load model"),
    (_table, ["--testset", "R=does/not/exist"], "does not exist"),
    (_transfer, ["--victim", "b=x"], "--victim b is given twice"),
    (_transfer, ["--source", "robust=x"], "is not a number"),
    (_transfer, ["--source", "0.0=x"], "same eps"),
    (_transfer, ["--attack", "nope"], "unknown attack"),
    (_transfer, ["--targeted", "--target-class", "3"], "targets other than the label"),
    (_transfer, ["--victim", "missing=nowhere.keras"], "--victim missing: cannot load model"),
    (_transfer, ["--dataset", "fashion_mnist", "--data-dir", "/usr/share/datasets/fashion-mnist"],
     "--source 0: model 'test_cnn' expects 16×16×1"),
])
def test_bad_input(models, tmp_path, command, args, words):
    out = tmp_path / "out"
    assert_user_error(run(*command(models, *args), "--out", out), words=words, out=out)


def test_class_count_mismatch(models, tmp_path):
    x, y = _test_arrays("digits", 6)
    three = _saved(tmp_path, x, y % 3, 3)
    out = tmp_path / "out"
    assert_user_error(run("robust-table", "--classifier", f"a={models['a']}", "--testset", f"T={three}", "--quiet",
                          "--out", out), words="predicts 10 classes but", out=out)
    assert_user_error(run(*_transfer(models), "--dataset", three, "--test-subset", "6", "--out", out),
                      words="--source 0: the model predicts 10 classes", out=out)
