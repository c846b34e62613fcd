"""`advtf train --resume` after a SIGKILL mid-epoch or a SIGTERM ends bit-identical to an uninterrupted run.

Real processes, killed for real: the first run is SIGKILLed as soon as its epoch-1 checkpoint
appears (so in epoch 2, which it redoes from that checkpoint), the second gets SIGTERM (exit 143,
a one-line hint with --resume). Robust training with augmentation, SGD momentum and a robust
validation split exercises every source of randomness and state: data order, crops and flips,
PGD starts, optimizer slots, best weights and history.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
from click.testing import CliRunner

from advtf.cli.main import advtf
from advtf.models import load_model

OPTIONS = ["--dataset", "digits", "--model", "test_cnn", "--train-subset", "200", "--test-subset", "40",
           "--validation", "40", "--epochs", "3", "--batch-size", "40", "--eval-steps", "1", "--robust",
           "--eps", "0.3", "--attack-steps", "2", "--augment", "--optimizer", "sgd", "--lr", "0.05", "--quiet"]
# "-P": the subprocess imports the installed advtf (tox installs a wheel), never the source tree
# that the working directory would put first on sys.path.
ENV = {**os.environ, "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0", "CUDA_VISIBLE_DEVICES": ""}


def start(out, *extra):
    """`advtf train OPTIONS ... --out OUT` in a new process."""
    return subprocess.Popen([sys.executable, "-P", "-c", "from advtf.cli.main import main; main()", "train", *OPTIONS,
                             *extra, "--out", str(out)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(proc, code=0):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == code, (proc.returncode, out[-2000:], err[-3000:])
    return err


def signal_after_first_checkpoint(proc, out, signum):
    """Sends ``signum`` once epoch 1's checkpoint is on disk; returns the checkpoint the run had then."""
    state = out.with_name(out.name + ".partial") / "resume" / "train" / "checkpoint"
    deadline = time.time() + 240
    while not state.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no epoch-1 checkpoint within 240 s"
        time.sleep(0.01)
    proc.send_signal(signum)
    return state.read_text()


def history(out):
    """history.csv without the wall-clock column."""
    lines = (out / "history.csv").read_text().splitlines()
    return [",".join(v for v, k in zip(line.split(","), lines[0].split(",")) if k != "seconds") for line in lines]


def assert_same_run(a, b):
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    for key in ("clean_accuracy", "robust_accuracy", "n_test", "epochs", "best_epoch"):
        assert ra[key] == rb[key], key
    assert history(a) == history(b) and len(history(a)) == 4
    wa, wb = (load_model(d / "model.keras").get_weights() for d in (a, b))
    assert len(wa) == len(wb) > 0
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)


def cli(*args):
    return CliRunner().invoke(advtf, [str(a) for a in args], catch_exceptions=False)


def test_resume_after_sigkill_mid_epoch_and_sigterm_is_exact(tmp_path):
    whole, killed, stopped = tmp_path / "whole", tmp_path / "killed", tmp_path / "stopped"
    uninterrupted, victim = start(whole), start(killed)
    at_kill = signal_after_first_checkpoint(victim, killed, signal.SIGKILL)
    victim.wait(timeout=60)
    assert '"ckpt-1"' in at_kill.splitlines()[0], at_kill  # killed before epoch 2's checkpoint: in epoch 2
    assert not killed.exists() and killed.with_name("killed.partial").is_dir()

    resumed, terminated = start(killed, "--resume"), start(stopped)
    signal_after_first_checkpoint(terminated, stopped, signal.SIGTERM)
    err = finish(terminated, 143)
    assert "--resume" in err.strip().splitlines()[-1] and "Traceback" not in err
    partial = stopped.with_name("stopped.partial")
    assert not stopped.exists() and (partial / "resume" / "train").is_dir()

    # --resume refuses other options and a changed dataset, and leaves the partial as it was
    refused = cli("train", *OPTIONS, "--lr", "0.02", "--resume", "--out", stopped)
    assert refused.exit_code == 2 and "other options" in refused.stderr and "lr" in refused.stderr
    record = partial / ".advtf" / "request.json"
    original = record.read_text()
    changed = json.loads(original)
    changed["inputs"]["dataset"]["train_subset"] = 199
    record.write_text(json.dumps(changed))
    refused = cli("train", *OPTIONS, "--resume", "--out", stopped)
    assert refused.exit_code == 2 and "inputs" in refused.stderr and "dataset" in refused.stderr, refused.stderr
    record.write_text(original)

    finish(start(stopped, "--resume"))
    finish(uninterrupted)
    finish(resumed)
    assert_same_run(killed, whole)
    assert_same_run(stopped, whole)
    assert not killed.with_name("killed.partial").exists() and not partial.exists()
