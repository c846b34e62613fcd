"""`advtf evaluate` runs the reliability checks: a softmax-head model's warning reaches results.json and the
summary; --no-checks records that nothing was checked."""

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from advtf.cli.main import advtf

ARGS = ["--dataset", "digits", "--test-subset", "16", "--norm", "linf", "--eps", "8/255", "--steps", "2",
        "--batch-size", "16", "--check-images", "8", "--quiet"]


def run(*args):
    return CliRunner().invoke(advtf, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def softmax_model(tmp_path_factory):
    """A digits-shaped (16x16x1, 10 classes) model whose head is a softmax, saved as .keras."""
    from advtf.models import save_model

    inputs = keras.Input((16, 16, 1))
    h = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(10, activation="softmax", kernel_initializer=keras.initializers.GlorotUniform(0))(h)
    return save_model(keras.Model(inputs, outputs), tmp_path_factory.mktemp("softmax") / "m.keras")


def test_a_softmax_head_is_warned_about_in_results_and_summary(softmax_model, tmp_path):
    out = tmp_path / "eval"
    result = run("evaluate", softmax_model, *ARGS, "--out", out)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["checks"] == ["probabilities", "randomness", "masked-gradients", "inconsistent-attacks"]
    probs = [w for w in results["warnings"] if w["check"] == "probabilities"]
    assert len(probs) == 1 and set(probs[0]) == {"check", "message", "measured"}
    assert probs[0]["measured"]["max_sum_error"] < 1e-5 and np.isfinite(probs[0]["measured"]["min_output"])
    assert "reliability checks" in result.output
    assert "warning (probabilities): the model outputs probabilities, not logits" in result.output


def test_no_checks_records_that_nothing_was_checked(softmax_model, tmp_path):
    out = tmp_path / "eval"
    result = run("evaluate", softmax_model, *ARGS, "--no-checks", "--out", out)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["checks"] == [] and results["warnings"] is None
    assert "skipped (--no-checks)" in result.output and "warning (" not in result.output


def test_check_images_must_be_positive(softmax_model, tmp_path):
    result = CliRunner().invoke(advtf, ["evaluate", str(softmax_model), *ARGS, "--check-images", "0",
                                        "--out", str(tmp_path / "eval")])
    assert result.exit_code == 2 and "--check-images" in result.output
