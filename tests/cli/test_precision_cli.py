"""`advtf train --precision`: recorded in results and manifest, the saved model loads and evaluates."""

import json

import numpy as np
from click.testing import CliRunner

from advtf.cli.main import advtf

TINY = ["--dataset", "digits", "--model", "test_cnn", "--train-subset", "100", "--test-subset", "40",
        "--batch-size", "50", "--optimizer", "adam", "--lr", "0.01", "--weight-decay", "0", "--quiet"]


def run(*args):
    return CliRunner().invoke(advtf, [str(a) for a in args], catch_exceptions=False)


def test_bfloat16_run_is_recorded_and_its_model_evaluates(tmp_path):
    out = tmp_path / "bf16"
    result = run("train", *TINY, "--epochs", "1", "--eval-steps", "2", "--norm", "linf", "--eps", "0.05",
                 "--precision", "mixed_bfloat16", "--out", out)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["precision"] == "mixed_bfloat16"
    assert json.loads((out / "manifest.json").read_text())["options"]["precision"] == "mixed_bfloat16"
    config = json.loads(__import__("zipfile").ZipFile(out / "model.keras").read("config.json"))
    policies = {layer["name"]: layer["config"]["dtype"]["config"]["name"] for layer in config["config"]["layers"]
                if layer["class_name"] != "InputLayer"}
    assert policies["conv1"] == "mixed_bfloat16" and policies["logits"] == "float32"

    evaluation = tmp_path / "eval"
    result = run("evaluate", out, "--dataset", "digits", "--test-subset", "40", "--norm", "linf", "--eps", "0.05",
                 "--steps", "2", "--out", evaluation, "--quiet")
    assert result.exit_code == 0, result.output
    evaluated = json.loads((evaluation / "results.json").read_text())
    # Same model, images and attack budget as train's own test evaluation: the same clean accuracy.
    assert np.isclose(evaluated["clean_accuracy"], results["clean_accuracy"])


def test_unknown_precision_is_a_usage_error(tmp_path):
    result = run("train", *TINY, "--precision", "float64", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "float64" in result.output and not (tmp_path / "x").exists()


def test_help_says_where_each_precision_is_meant_to_run():
    text = " ".join(run("train", "--help").output.split())
    assert "--precision" in text and "GPU" in text and "bfloat16 (TPUs" in text
