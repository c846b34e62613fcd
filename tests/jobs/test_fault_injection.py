"""Kill a job with SIGKILL at chosen moments (mid-chunk, between chunks, during the final save), resume
it, and compare with an uninterrupted run: the saved outputs must be bit-identical (CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
# "-P": the subprocess imports the installed advtf (tox installs a wheel), never the source tree
# that the working directory would put first on sys.path.
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", "CUDA_VISIBLE_DEVICES": ""}
DIGITS = ["--dataset", "digits", "--quiet"]


def advtf(*args, fault: tuple[str, int] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-P", str(HERE / "faults.py"), fault[0], str(fault[1])] if fault else \
        [sys.executable, "-P", "-m", "advtf.cli.main"]
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from advtf.models import create_model, save_model

    path = tmp_path_factory.mktemp("model") / "model.keras"
    return save_model(create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=0), path)


def elements(directory: Path, split: str) -> dict[str, np.ndarray]:
    from advtf.data import load_saved_elements

    rows = list(load_saved_elements(directory, split).as_numpy_iterator())
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def assert_same_outputs(resumed: Path, whole: Path, split: str) -> None:
    a, b = elements(resumed, split), elements(whole, split)
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (resumed, whole))
    ignore = {"images_per_second", "resumed_chunks", "wall_seconds"}
    assert {k: v for k, v in ra.items() if k not in ignore} == {k: v for k, v in rb.items() if k not in ignore}
    assert not (resumed / "resume").exists() and not resumed.with_name(resumed.name + ".partial").exists()


@pytest.fixture(scope="module")
def robustified(model, tmp_path_factory) -> Path:
    whole = tmp_path_factory.mktemp("whole") / "R"
    done = advtf("robustify", model, *DIGITS, *ROBUSTIFY, "--out", whole)
    assert done.returncode == 0, done.stderr
    return whole


ROBUSTIFY = ["--test-subset", "20", "--steps", "6", "--step-size", "0.1", "--chunk-size", "8", "--batch-size", "4"]


@pytest.mark.parametrize("where, after", [
    ("advtf.jobs.robustify:robustify_batch", 1),   # mid-chunk 0: nothing finished, the partial goes
    ("advtf.jobs.robustify:robustify_batch", 3),   # mid-chunk 1: chunk 0 kept
    ("advtf.jobs.robustify:write_table", 0),       # during the final save: every chunk kept
])
def test_robustify_killed_and_resumed_is_bit_identical(model, robustified, tmp_path, where, after):
    whole = robustified
    out = tmp_path / "cut"
    killed = advtf("robustify", model, *DIGITS, *ROBUSTIFY, "--out", out, fault=(where, after))
    assert killed.returncode == -signal.SIGKILL
    partial = tmp_path / "cut.partial"
    assert not out.exists()
    resumable = partial.exists()
    result = advtf("robustify", model, *DIGITS, *ROBUSTIFY, "--out", out, *(["--resume"] if resumable else []))
    assert result.returncode == 0, result.stderr
    assert_same_outputs(out, whole, "test")
    if after >= 3 or where.endswith("write_table"):
        assert json.loads((out / "results.json").read_text())["resumed_chunks"] >= 1


def test_sigterm_saves_and_says_how_to_resume(model, tmp_path):
    out = tmp_path / "term"
    slow = [*ROBUSTIFY[:-6], "--steps", "200", "--chunk-size", "4", "--batch-size", "4"]
    process = subprocess.Popen([sys.executable, "-P", "-m", "advtf.cli.main", "robustify", str(model), *DIGITS, *slow,
                                "--out", str(out)], stderr=subprocess.PIPE, text=True, env=ENV)
    done = tmp_path / "term.partial" / "resume" / "done.json"
    deadline = time.time() + 240
    while not done.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "--resume" in lines[0] and "interrupted" in lines[0], stderr
    assert (tmp_path / "term.partial").exists() and not (tmp_path / "term.lock").exists()
    result = advtf("robustify", model, *DIGITS, *slow, "--out", out, "--resume")
    assert result.returncode == 0, result.stderr


def killed_then_resumed(args: list, out: Path, fault: tuple[str, int]) -> subprocess.CompletedProcess:
    """Runs ``args`` killed at ``fault`` into ``out``, then once more (``--resume`` when a partial was kept)."""
    killed = advtf(*args, "--out", out, fault=fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not out.exists()
    resumable = out.with_name(out.name + ".partial").exists()
    result = advtf(*args, "--out", out, *(["--resume"] if resumable else []))
    assert result.returncode == 0, result.stderr[-2000:]
    return result


RELABEL = ["--train-subset", "24", "--mode", "zero", "--eps", "1", "--steps", "3", "--step-size", "0.5",
           "--chunk-size", "8", "--batch-size", "4"]


@pytest.fixture(scope="module")
def relabeled(model, tmp_path_factory) -> Path:
    whole = tmp_path_factory.mktemp("whole") / "D"
    done = advtf("relabel", model, *DIGITS, *RELABEL, "--out", whole)
    assert done.returncode == 0, done.stderr
    return whole


@pytest.mark.parametrize("where, after", [
    ("advtf.jobs.relabel:relabel_batch", 3),   # mid-chunk 1
    ("advtf.jobs.relabel:write_table", 0),     # during the final save
])
def test_relabel_killed_and_resumed_is_bit_identical(model, relabeled, tmp_path, where, after):
    out = tmp_path / "cut"
    killed_then_resumed(["relabel", model, *DIGITS, *RELABEL], out, (where, after))
    assert_same_outputs(out, relabeled, "train")


RETRAIN = ["--dataset", "digits", "--train-subset", "64", "--test-subset", "16", "--quiet", "--mode", "conventional",
           "--sweep", "cutoff", "--part", "after", "--eval-steps", "1", "--norm", "linf", "--eps", "0.1",
           "--epochs", "1", "--batch-size", "32", "--optimizer", "adam", "--lr", "0.01"]


def _cells(directory: Path) -> dict:
    rows = json.loads((directory / "results.json").read_text())["cells"]
    return {r["cell"]: (r["clean_accuracy"], r["robust_accuracy"], r["trainable_params"]) for r in rows}


def test_retrain_killed_between_cells_and_in_the_final_save_resumes_to_the_same_sweep(model, tmp_path):
    whole = tmp_path / "whole"
    assert advtf("retrain", model, *RETRAIN, "--out", whole).returncode == 0
    for where, after in (("advtf.jobs.retrain:retrain_cell", 1), ("advtf.jobs.retrain:write_table", 0)):
        out = tmp_path / where.rpartition(":")[2]
        result = killed_then_resumed(["retrain", model, *RETRAIN], out, (where, after))
        assert "kept from the interrupted run" in result.stdout
        assert _cells(out) == _cells(whole)
        assert not (out / "resume").exists() and not any(out.rglob("resume"))


DISSECT = ["--concept-images", "24", "--attack-images", "8", "--layers", "m0", "--top-n", "5", "--norm", "linf",
           "--eps", "0.1", "--steps", "2", "--draws", "100", "--batch-size", "4", "--quiet"]


def test_dissect_killed_mid_pass_resumes_to_the_same_tables(model, tmp_path):
    whole = tmp_path / "whole"
    assert advtf("dissect", model, *DISSECT, "--out", whole).returncode == 0
    for where, after in (("advtf.runs.resume:ResumeStore.save_snapshot", 2),   # at the third snapshot (attack pass)
                         ("advtf.jobs.dissect:sensitivity_pass", 0)):          # between passes
        out = tmp_path / where.rpartition(".")[2]
        killed_then_resumed(["dissect", model, *DISSECT], out, (where, after))
        for table in ("units.csv", "detectors.csv", "pvalues.csv"):
            assert (out / table).read_text() == (whole / table).read_text(), table
