"""``advtf retrain`` end to end on a tiny digits model: a cut-off sweep, resume, --reinit-only, bad input."""

import shutil

import keras
import pytest
from test_attack_cli import assert_user_error, run  # the shared CliRunner helpers

from advtf.runs import read_json, write_json

DATA = ["--dataset", "digits", "--train-subset", "100", "--test-subset", "20", "--quiet"]
FAST = ["--norm", "linf", "--eps", "0.1", "--eval-steps", "2", "--epochs", "1", "--batch-size", "50",
        "--optimizer", "adam", "--lr", "0.01"]


def assert_ok(result):
    assert result.exit_code == 0, result.output + result.stderr


@pytest.fixture(scope="module")
def std(tmp_path_factory):
    out = tmp_path_factory.mktemp("retrain-cli") / "std"
    assert_ok(run("train", "--dataset", "digits", "--model", "test_cnn", "--train-subset", "300", "--test-subset",
                  "20", "--batch-size", "50", "--optimizer", "adam", "--lr", "0.01", "--epochs", "2",
                  "--eval-steps", "1", "--norm", "linf", "--eps", "0.1", "--quiet", "--out", out))
    assert (out / "initial.weights.h5").exists()  # `advtf train` keeps the weights it started from
    return out


def test_help_has_examples():
    result = run("retrain", "--help")
    assert_ok(result)
    assert "Examples" in result.output and "advtf retrain" in result.output and "--cutoff" in result.output


def _as_interrupted(out, partial, done):
    """Copies a finished sweep to its partial directory as an interrupted run with ``done`` cells would leave it."""
    shutil.copytree(out, partial)
    (partial / ".advtf").mkdir()
    (partial / "resume").mkdir()
    manifest = read_json(partial / "manifest.json")  # what the interrupted run recorded
    write_json(partial / ".advtf" / "request.json", {"request": manifest["options"], "inputs": manifest["inputs"]})
    write_json(partial / "resume" / "done.json", {"done": [f"cell/{name}" for name in done]})


def test_cutoff_sweep_and_resume(std, tmp_path):
    out = tmp_path / "sweep"
    args = ["retrain", std, *DATA, *FAST, "--mode", "adversarial", "--fast", "--sweep", "cutoff", "--part", "after",
            "--out", out]
    result = run(*args)
    assert_ok(result)
    assert "[4/4] after-3: clean" in result.output and "only pretrained" in result.output
    results = read_json(out / "results.json")
    assert [c["cell"] for c in results["cells"]] == ["after-0", "after-1", "after-2", "after-3"]
    assert results["cells"][2]["retrained"] == "m2,m3" and results["mode"] == "adversarial"
    assert results["pretrained_accuracy"]["clean_accuracy"] == pytest.approx(
        read_json(std / "results.json")["clean_accuracy"])  # same test images, same model
    for name in ("results.csv", "results.md", "retrain_cutoff.png", "manifest.json", "cells/after-1/history.csv"):
        assert (out / name).exists(), name
    # Simulate an interruption after after-1: the partial directory holds pretrained, after-0 and after-1.
    partial = out.with_name("sweep.partial")
    _as_interrupted(out, partial, ["pretrained", "after-0", "after-1"])
    shutil.rmtree(out)
    kept = (partial / "cells" / "after-1" / "results.json").stat().st_mtime_ns
    redone = (partial / "cells" / "after-2" / "results.json").stat().st_mtime_ns
    result = run(*args, "--resume")
    assert_ok(result)
    assert result.output.count("kept from the interrupted run") == 3
    assert (out / "cells" / "after-1" / "results.json").stat().st_mtime_ns == kept
    assert (out / "cells" / "after-2" / "results.json").stat().st_mtime_ns != redone
    assert read_json(out / "results.json")["cells"][1] == results["cells"][1]
    # A changed option set is refused, naming the options.
    _as_interrupted(out, partial, ["pretrained"])
    result = run(*[a if a != "1" else "2" for a in args[:-2]], "--lr", "0.02", "--out", out, "--resume")
    assert_user_error(result, words="other options (epochs, lr)")
    shutil.rmtree(partial)


def test_single_cell_with_modules_and_saved_model(std, tmp_path):
    out = tmp_path / "m0m2"
    assert_ok(run("retrain", std, *DATA, *FAST, "--mode", "conventional", "--modules", "m0,2", "--save-models",
                  "--out", out))
    results = read_json(out / "results.json")
    assert [c["cell"] for c in results["cells"]] == ["m0+m2"] and results["training_threat"] is None
    assert (out / "cells" / "m0+m2" / "model.keras").exists()
    assert (out / "retrain_cell.png").stat().st_size > 1000  # only pretrained vs retrained, clean and robust
    assert [p.name for p in out.glob("*.png")] == ["retrain_cell.png"]


def test_reinit_only_uses_the_saved_initial_weights(std, tmp_path):
    out = tmp_path / "reinit"
    result = run("retrain", std, *DATA, "--reinit-only", "--modules", "m0,3", "--norm", "linf", "--eps", "0.1",
                 "--eval-steps", "2", "--out", out)
    assert_ok(result)
    results = read_json(out / "results.json")
    assert "initial.weights.h5" in results["initialisation"]
    assert [c["cell"] for c in results["cells"]] == ["reinit-m0", "reinit-m3"]
    assert all(c["epochs"] == 0 for c in results["cells"]) and (out / "retrain_reinit.png").exists()


@pytest.mark.parametrize("extra, words", [
    (["--mode", "adversarial", "--part", "before", "--cutoff", "4"], "--cutoff 4 is outside 0..3"),
    (["--mode", "adversarial", "--part", "after", "--cutoff", "-1"], "outside 0..3"),
    (["--mode", "adversarial", "--modules", "0,m7"], "unknown module(s) m7"),
    (["--mode", "adversarial", "--modules", "conv1"], "unknown module(s) conv1"),
    (["--part", "before", "--cutoff", "1"], "choose --mode"),
    (["--mode", "conventional"], "choose what to retrain"),
])
def test_bad_selection(std, tmp_path, extra, words):
    out = tmp_path / "bad"
    assert_user_error(run("retrain", std, *DATA, *FAST, *extra, "--out", out), words=words, out=out)


def test_model_without_module_endpoints(tmp_path):
    inputs = keras.Input((16, 16, 1))
    plain = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    plain.save(tmp_path / "plain.keras")
    out = tmp_path / "bad"
    result = run("retrain", tmp_path / "plain.keras", *DATA, *FAST, "--mode", "adversarial", "--sweep", "cutoff",
                 "--out", out)
    assert_user_error(result, words="has no advtf endpoints", out=out)
