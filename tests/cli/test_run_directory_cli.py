"""The run-directory guarantees seen from the command line: two processes on one --out, --overwrite onto a
user folder, onto the command's own input and onto --out ., and an interrupted non-resumable command."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

# "-P": the subprocess imports the installed advtf (tox installs a wheel), never the source tree
# that the working directory would put first on sys.path.
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", "CUDA_VISIBLE_DEVICES": ""}
DIGITS = ["--dataset", "digits", "--quiet"]
SLOW_ROBUSTIFY = ["--test-subset", "64", "--steps", "20000", "--chunk-size", "8", "--batch-size", "8"]


def advtf(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-P", "-m", "advtf.cli.main", *map(str, args)], capture_output=True,
                          text=True, env=ENV, cwd=cwd, timeout=timeout)


def assert_refused(result, words: str):
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.stderr, result.stderr


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from advtf.models import create_model, save_model

    run = tmp_path_factory.mktemp("std")
    return save_model(create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=0), run / "model.keras")


def test_a_second_process_on_the_same_out_fails_at_once(model, tmp_path):
    out = tmp_path / "R"
    first = subprocess.Popen([sys.executable, "-P", "-m", "advtf.cli.main", "robustify", str(model), *DIGITS,
                              *SLOW_ROBUSTIFY, "--out", str(out)], stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        lock = tmp_path / "R.lock"
        deadline = time.time() + 120
        while not lock.exists() and time.time() < deadline:
            time.sleep(0.1)
        assert lock.exists()
        start = time.time()
        second = advtf("robustify", model, *DIGITS, *SLOW_ROBUSTIFY, "--out", out)
        assert_refused(second, f"(pid {first.pid}")
        assert time.time() - start < 60  # refused before any work (the import of TensorFlow aside)
        resumed = advtf("robustify", model, *DIGITS, *SLOW_ROBUSTIFY, "--out", out, "--resume")
        assert_refused(resumed, "another advtf process")  # the partial of a live run is locked too
    finally:
        first.kill()
        first.wait()


def test_overwrite_refuses_a_user_folder_the_commands_input_and_the_current_directory(model, tmp_path):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter.tex").write_text("precious")
    common = ["evaluate", model, *DIGITS, "--test-subset", "8", "--steps", "1", "--overwrite"]
    assert_refused(advtf(*common, "--out", thesis), "only a run directory advtf wrote")
    assert (thesis / "chapter.tex").read_text() == "precious"
    assert_refused(advtf(*common, "--out", model.parent), "holds an input of this command")
    assert model.exists()
    assert_refused(advtf(*common, "--out", ".", cwd=thesis), "current directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]
    assert sorted(p.name for p in thesis.iterdir()) == ["chapter.tex"]


def test_overwrite_replaces_an_advtf_run_and_nothing_beside_it(model, tmp_path):
    out = tmp_path / "eval"
    common = ["evaluate", model, *DIGITS, "--test-subset", "8", "--steps", "1", "--attack", "fgsm"]
    assert advtf(*common, "--out", out).returncode == 0
    (tmp_path / "eval.old").mkdir()  # a user's folder that happens to have the old naming
    assert advtf(*common, "--eps", "0.2", "--out", out, "--overwrite").returncode == 0
    assert (tmp_path / "eval.old").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval", "eval.old"]
