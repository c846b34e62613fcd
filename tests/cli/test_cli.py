"""The CLI end to end through CliRunner: help, a tiny train/evaluate, and every bad input."""

import json

import pytest
from click.testing import CliRunner

from advtf.cli.main import advtf
from advtf.jobs import JOBS

TINY = ["--dataset", "digits", "--model", "test_cnn", "--train-subset", "200", "--test-subset", "60",
        "--batch-size", "50", "--optimizer", "adam", "--lr", "0.01", "--weight-decay", "0", "--quiet"]


def run(*args):
    return CliRunner().invoke(advtf, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("command", list(JOBS))
def test_every_command_has_help_with_an_example(command):
    result = run(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "std"
    result = run("train", *TINY, "--epochs", "2", "--eval-steps", "2", "--eps", "0.5", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    return out


def test_train_writes_a_complete_run_directory(trained):
    results = json.loads((trained / "results.json").read_text())
    for key in ("clean_accuracy", "robust_accuracy", "epochs", "wall_seconds"):
        assert key in results
    assert results["epochs"] == 2 and 0 <= results["robust_accuracy"] <= results["clean_accuracy"] <= 1
    manifest = json.loads((trained / "manifest.json").read_text())
    assert manifest["outputs"]["model.keras"] and manifest["inputs"]["dataset"]["dataset"] == "digits"
    for name in ("model.keras", "history.csv", "training.png"):
        assert (trained / name).exists()
    assert not trained.with_name("std.partial").exists()


def test_evaluate_a_trained_model(trained, tmp_path):
    out = tmp_path / "eval"
    result = run("evaluate", trained, "--dataset", "digits", "--test-subset", "60", "--eps", "8/255",
                 "--norm", "linf", "--steps", "3", "--restarts", "2", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output + result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 60 and results["threat"]["eps"] == pytest.approx(8 / 255)
    assert "robust accuracy" in result.output
    assert (out / "results.csv").exists() and (out / "results.md").exists()


def _history(out):
    """history.csv without the wall-clock column."""
    import csv

    with open(out / "history.csv") as f:
        return [{k: float(v) if v else None for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def test_resume_continues_an_interrupted_run(tmp_path, monkeypatch):
    """An `advtf train` interrupted after epoch 1 and resumed ends where an uninterrupted run does.

    The loop seeds data order, augmentation and attack noise by (seed, epoch, step) and restores model,
    optimizer and epoch from the checkpoint, so on CPU the two runs must agree bit for bit.
    """
    import keras
    import numpy as np

    import advtf.training.loop as loop

    options = [*TINY, "--epochs", "2", "--eval-steps", "1", "--eps", "0.1"]
    whole = tmp_path / "whole"
    assert run("train", *options, "--out", whole).exit_code == 0

    out = tmp_path / "run"
    should_stop = loop._should_stop

    def interrupt_after_first_epoch(history, config):  # Ctrl-C once epoch 1 is logged and checkpointed
        should_stop(history, config)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(loop, "_should_stop", interrupt_after_first_epoch)
        assert run("train", *options, "--out", out).exit_code != 0
    assert not out.exists() and (tmp_path / "run.partial" / "resume" / "train" / "checkpoint").is_file()
    assert len(_history(tmp_path / "run.partial")) == 1

    result = run("train", *options, "--resume", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    assert _history(out) == _history(whole) and len(_history(out)) == 2
    resumed, uninterrupted = (json.loads((d / "results.json").read_text()) for d in (out, whole))
    for key in ("clean_accuracy", "robust_accuracy", "epochs", "best_epoch"):
        assert resumed[key] == uninterrupted[key], key
    a, b = (keras.saving.load_model(d / "model.keras", safe_mode=True) for d in (out, whole))
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_resumed_history_keeps_integer_epochs(tmp_path):
    import advtf.training.loop as loop

    path = tmp_path / "history.csv"
    loop._write_history(path, [{"epoch": 1, "lr": 0.01, "train_loss": 2.0, "train_accuracy": 0.5,
                                "val_clean_accuracy": None, "val_robust_accuracy": None, "seconds": 1.0}])
    before = path.read_text()
    loop._write_history(path, loop._read_history(path))  # what a resume does with the finished epochs
    assert path.read_text() == before


def assert_user_error(result, *, words):
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    assert "Traceback" not in result.output + result.stderr
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert words.lower() in message.lower(), message
    return message


@pytest.mark.parametrize("args, words", [
    (["--dataset", "nope"], "unknown dataset"),
    (["--model", "nope"], "unknown model"),
])
def test_unknown_names(args, words, tmp_path):
    out = tmp_path / "out"
    assert_user_error(run("train", *TINY, *args, "--out", out), words=words)
    assert not out.exists() and not out.with_name("out.partial").exists()


def test_bad_model_files(tmp_path):
    out = tmp_path / "out"
    assert_user_error(run("evaluate", tmp_path / "missing.keras", "--dataset", "digits", "--out", out), words="missing.keras")
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a keras file")
    assert_user_error(run("evaluate", garbage, "--dataset", "digits", "--out", out), words="garbage.keras")
    assert not out.exists() and not out.with_name("out.partial").exists()


@pytest.mark.parametrize("args, words", [
    (["--eps", "0"], "eps must be > 0"),
    (["--eps", "-1"], "eps must be > 0"),
    (["--steps", "0"], "steps must be >= 1"),
])
def test_bad_budgets(trained, tmp_path, args, words):
    out = tmp_path / "out"
    assert_user_error(run("evaluate", trained, "--dataset", "digits", *args, "--out", out), words=words)
    assert not out.exists()


def test_model_that_does_not_fit_the_dataset(trained, tmp_path):
    out = tmp_path / "out"
    assert_user_error(run("evaluate", trained, "--dataset", "fashion_mnist", "--test-subset", "10", "--out", out),
               words="28")
    assert not out.exists()


def test_existing_and_unwritable_out(trained, tmp_path):
    assert_user_error(run("evaluate", trained, "--dataset", "digits", "--out", trained), words="holds an input")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_user_error(run("evaluate", trained, "--dataset", "digits", "--out", blocker / "sub"), words="--out")
    assert_user_error(run("train", *TINY, "--resume", "--out", trained), words="already complete")


def test_debug_shows_the_traceback(tmp_path):
    result = CliRunner().invoke(advtf, ["--debug", "train", *TINY, "--dataset", "nope", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr


def test_main_accepts_debug_after_the_subcommand(monkeypatch, capsys):
    from advtf.cli import main as main_module

    with pytest.raises(SystemExit) as exit_info:
        main_module.main(["datasets", "--debug", "--json"])
    assert exit_info.value.code == 0
    assert json.loads(capsys.readouterr().out)[0]["name"]


def test_listing_commands():
    result = run("datasets", "--json")
    names = {row["name"] for row in json.loads(result.output)}
    assert {"fashion_mnist", "cifar10", "imagenet9", "imagenette", "digits", "mnist"} <= names
    result = run("models", "resnet20v2", "--json")
    assert json.loads(result.output)[0]["params_10_classes"] == 570602
    result = run("env")
    assert "tensorflow" in result.output and "strategy auto" in result.output
