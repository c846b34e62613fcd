"""Cluster runs end to end: two `advtf` worker processes on 127.0.0.1 under TF_CONFIG
(MultiWorkerMirroredStrategy), compared with one process; a worker killed and the run resumed;
an unreachable cluster and a version mismatch refused on one line with exit 2."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
# one thread per process: the two workers share the machine's cores fairly; "-P": the installed advtf
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", "CUDA_VISIBLE_DEVICES": "",
       "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
ENV.pop("TF_CONFIG", None)
ADVTF = [sys.executable, "-P", "-m", "advtf.cli.main"]
IGNORE = {"images_per_second", "resumed_chunks", "wall_seconds"}

ROBUSTIFY = ["--dataset", "digits", "--test-subset", "64", "--steps", "4", "--step-size", "0.1",
             "--chunk-size", "16", "--batch-size", "8", "--quiet"]
RELABEL = ["--dataset", "digits", "--train-subset", "64", "--test-subset", "8", "--mode", "zero", "--eps", "1",
           "--steps", "3", "--step-size", "0.5", "--chunk-size", "16", "--batch-size", "8", "--quiet"]
RETRAIN = ["--dataset", "digits", "--train-subset", "64", "--test-subset", "16", "--quiet", "--mode", "conventional",
           "--sweep", "cutoff", "--part", "after", "--eval-steps", "1", "--norm", "linf", "--eps", "0.1",
           "--epochs", "1", "--batch-size", "32", "--optimizer", "adam", "--lr", "0.01"]


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def tf_config(addresses: list[str], index: int) -> str:
    return json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})


def on_cluster(args, *, workers: int = 2, commands: dict | None = None, timeout: int = 400):
    """Runs ``advtf ARGS`` as every worker of a local cluster; ``commands[i]`` replaces worker i's program."""
    addresses = [f"127.0.0.1:{p}" for p in free_ports(workers)]
    procs = [subprocess.Popen([*(commands or {}).get(i, ADVTF), *map(str, args)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**ENV, "TF_CONFIG": tf_config(addresses, i)})
             for i in range(workers)]
    try:
        return [subprocess.CompletedProcess(p.args, None, *p.communicate(timeout=timeout)) for p in procs], procs
    finally:
        for p in procs:
            p.kill()


def finished(runs):
    results, procs = runs
    for r, p in zip(results, procs):
        r.returncode = p.returncode
    return results


def one_process(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*ADVTF, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=400)


def elements(directory: Path, split: str) -> dict[str, np.ndarray]:
    from advtf.data import load_saved_elements

    rows = list(load_saved_elements(directory, split).as_numpy_iterator())
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def assert_same_dataset(a: Path, b: Path, split: str, tables=()) -> None:
    """Same elements (bit for bit), same results' numbers, same tables (byte for byte)."""
    ea, eb = elements(a, split), elements(b, split)
    assert ea.keys() == eb.keys()
    for key in ea:
        assert ea[key].dtype == eb[key].dtype and ea[key].tobytes() == eb[key].tobytes(), key
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    assert {k: v for k, v in ra.items() if k not in IGNORE} == {k: v for k, v in rb.items() if k not in IGNORE}
    for table in tables:
        assert (a / table).read_bytes() == (b / table).read_bytes(), table


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from advtf.models import create_model, save_model

    path = tmp_path_factory.mktemp("model") / "model.keras"
    return save_model(create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=0), path)


@pytest.fixture(scope="module")
def robustified(model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "R"
    done = one_process("robustify", model, *ROBUSTIFY, "--out", out)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_robustify_on_two_workers_equals_one_process(model, robustified, tmp_path):
    out = tmp_path / "R2"
    chief, worker = finished(on_cluster(["robustify", model, *ROBUSTIFY, "--strategy", "multiworker", "--out", out]))
    assert chief.returncode == 0, chief.stderr[-3000:]
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert "worker 1 of 2 finished its share" in worker.stdout
    assert_same_dataset(out, robustified, "test", tables=("examples.csv", "examples.md"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["versions"]["advtf"] and not (tmp_path / "R2.partial").exists()


@pytest.mark.slow
def test_robustify_worker_killed_after_its_first_chunk_resumes_without_redoing_chunks(model, robustified,
                                                                                       tmp_path):
    out = tmp_path / "R2"
    args = ["robustify", model, *ROBUSTIFY, "--strategy", "multiworker", "--out", out]
    # worker 1 owns chunks 1 and 3 of 4: it dies (SIGKILL) when saving its second, after chunk 1 is stored
    dying = [sys.executable, "-P", str(HERE / "faults.py"), "advtf.runs.chunks:ChunkStore.save", "1"]
    chief, worker = finished(on_cluster(args, commands={1: dying}))
    assert worker.returncode == -signal.SIGKILL
    assert chief.returncode == 2, chief.stderr[-3000:]
    lines = [line for line in chief.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "lost worker 1" in lines[0] and "--resume" in lines[0], chief.stderr[-2000:]
    partial = tmp_path / "R2.partial"
    stores = {w: json.loads((partial / "resume" / f"worker-{w}" / "done.json").read_text())["done"] for w in (0, 1)}
    assert stores == {0: ["chunk_00000", "chunk_00002"], 1: ["chunk_00001"]}
    kept = {p: p.stat().st_mtime_ns for p in (partial / "resume").rglob("*.npy")}
    chief, worker = finished(on_cluster([*args, "--resume"]))
    assert chief.returncode == 0 and worker.returncode == 0, chief.stderr[-3000:] + worker.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["resumed_chunks"] == 3  # only chunk 3 was computed again
    assert_same_dataset(out, robustified, "test", tables=("examples.csv",))
    assert kept and not partial.exists()


def test_unreachable_cluster_is_one_line_and_exit_2_within_the_timeout(model, tmp_path):
    silent = free_ports(1)[0]  # nobody listens there
    own = free_ports(1)[0]
    env = {**ENV, "TF_CONFIG": tf_config([f"127.0.0.1:{silent}", f"127.0.0.1:{own}"], 1)}
    start = time.time()
    done = subprocess.run([*ADVTF, "robustify", model, *ROBUSTIFY, "--strategy", "multiworker",
                           "--cluster-timeout", "5", "--out", tmp_path / "R"], capture_output=True, text=True,
                          env=env, timeout=120)
    elapsed = time.time() - start
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"127.0.0.1:{silent}" in lines[0] and "--cluster-timeout 5" in lines[0]
    assert elapsed < 60, elapsed  # TensorFlow's import on a busy machine, then 5 s
    assert not (tmp_path / "R").exists() and not (tmp_path / "R.partial").exists()


def test_the_chief_refuses_a_worker_with_another_advtf_version(model, tmp_path):
    other = [sys.executable, "-P", "-c",
             "import advtf; advtf.__version__ = '0.0.1-other'; from advtf.cli.main import main; main()"]
    chief, worker = finished(on_cluster(["robustify", model, *ROBUSTIFY, "--strategy", "multiworker",
                                         "--out", tmp_path / "R"], commands={1: other}, timeout=200))
    assert chief.returncode == 2 and worker.returncode == 2, chief.stderr[-2000:]
    line = [x for x in chief.stderr.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and "worker 1 runs 0.0.1-other" in line[0] and "same advtf" in line[0]
    assert not (tmp_path / "R").exists() and not (tmp_path / "R.partial").exists()


@pytest.mark.slow
def test_relabel_on_two_workers_equals_one_process(model, tmp_path):
    one = tmp_path / "one"
    done = one_process("relabel", model, *RELABEL, "--out", one)
    assert done.returncode == 0, done.stderr[-2000:]
    chief, worker = finished(on_cluster(["relabel", model, *RELABEL, "--strategy", "multiworker",
                                         "--out", tmp_path / "two"]))
    assert chief.returncode == 0 and worker.returncode == 0, chief.stderr[-3000:] + worker.stderr[-3000:]
    assert_same_dataset(tmp_path / "two", one, "train", tables=("labels.csv",))


@pytest.mark.slow
def test_retrain_sweep_cells_shared_by_two_workers_equal_one_process(model, tmp_path):
    one = tmp_path / "one"
    done = one_process("retrain", model, *RETRAIN, "--out", one)
    assert done.returncode == 0, done.stderr[-2000:]
    chief, worker = finished(on_cluster(["retrain", model, *RETRAIN, "--strategy", "multiworker",
                                         "--out", tmp_path / "two"]))
    assert chief.returncode == 0 and worker.returncode == 0, chief.stderr[-3000:] + worker.stderr[-3000:]
    assert "worker 1: cell" in worker.stdout  # worker 1 trained cells of its own
    a, b = (json.loads((d / "results.json").read_text()) for d in (tmp_path / "two", one))
    assert len(a["cells"]) >= 2
    strip = {"seconds", "wall_seconds"}
    assert [{k: v for k, v in c.items() if k not in strip} for c in a["cells"]] == \
        [{k: v for k, v in c.items() if k not in strip} for c in b["cells"]]
    assert a["pretrained_accuracy"] == b["pretrained_accuracy"]
    assert (tmp_path / "two" / "results.csv").read_text().count("\n") == (one / "results.csv").read_text().count("\n")


def test_a_lost_worker_is_named_from_tensorflows_message():
    import tensorflow as tf

    from advtf.distribute.cluster import lost_worker

    # the message TensorFlow 2.21 gives worker 0 when worker 1 was killed (heartbeats stopped)
    message = ("{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:worker/replica:0/"
               "task:0/device:CPU:0}} Collective ops is aborted by: Error reported from /job:worker/task:1: The "
               "following tasks are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe "
               "tasks have crashed. Check the task logs for an earlier error")
    error = lost_worker(tf.errors.UnavailableError(None, None, message), ["127.0.0.1:1", "127.0.0.1:2"])
    assert str(error).startswith("lost worker 1 (127.0.0.1:2) of the cluster") and "\n" not in str(error)


# advtf attack cuts its chunks at about 2048 examples; 16 here, so 64 images make 4 chunks for 2 workers
SMALL_CHUNKS = [sys.executable, "-P", "-c", "import advtf.jobs.attack as job; job.CHUNK_EXAMPLES = 16; "
                "from advtf.cli.main import main; main()"]
ATTACK = ["--dataset", "digits", "--test-subset", "64", "--attack", "pgd", "--norm", "l2", "--eps", "0.5",
          "--steps", "3", "--batch-size", "8", "--quiet"]


@pytest.mark.slow
def test_attack_on_two_workers_equals_one_process(model, tmp_path):
    one = subprocess.run([*SMALL_CHUNKS, "attack", str(model), *ATTACK, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=ENV, timeout=400)
    assert one.returncode == 0, one.stderr[-2000:]
    chief, worker = finished(on_cluster(["attack", model, *ATTACK, "--out", tmp_path / "two"],  # auto: TF_CONFIG
                                        commands={0: SMALL_CHUNKS, 1: SMALL_CHUNKS}))
    assert chief.returncode == 0 and worker.returncode == 0, chief.stderr[-3000:] + worker.stderr[-3000:]
    assert "worker 1 of 2 finished its share" in worker.stdout
    assert_same_dataset(tmp_path / "two", tmp_path / "one", "test", tables=("examples.csv", "results.csv"))


EVALUATE = ["--dataset", "digits", "--test-subset", "64", "--attack", "pgd", "--norm", "l2", "--eps", "0.5",
            "--steps", "3", "--batch-size", "8", "--no-checks", "--quiet"]


@pytest.mark.slow
def test_evaluate_on_two_workers_equals_one_process(model, tmp_path):
    one = subprocess.run([*SMALL_CHUNKS, "evaluate", str(model), *EVALUATE, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=ENV, timeout=400)
    assert one.returncode == 0, one.stderr[-2000:]
    chief, worker = finished(on_cluster(["evaluate", model, *EVALUATE, "--strategy", "multiworker",
                                         "--out", tmp_path / "two"], commands={0: SMALL_CHUNKS, 1: SMALL_CHUNKS}))
    assert chief.returncode == 0 and worker.returncode == 0, chief.stderr[-3000:] + worker.stderr[-3000:]
    assert "worker 1 of 2 finished its share" in worker.stdout
    a, b = (json.loads((d / "results.json").read_text()) for d in (tmp_path / "two", tmp_path / "one"))
    assert a == b
    assert (tmp_path / "two" / "results.csv").read_bytes() == (tmp_path / "one" / "results.csv").read_bytes()


@pytest.mark.parametrize("config, message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}', "TF_CONFIG's \"task\""),
])
def test_a_malformed_tf_config_is_one_line_and_exit_2(model, tmp_path, monkeypatch, config, message):
    from click.testing import CliRunner

    from advtf.cli.main import advtf

    monkeypatch.setenv("TF_CONFIG", config)
    result = CliRunner().invoke(advtf, ["robustify", str(model), *ROBUSTIFY, "--out", str(tmp_path / "R")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "R").exists() and not (tmp_path / "R.partial").exists()


TRANSFER = ["--dataset", "digits", "--test-subset", "64", "--norm", "l2", "--eps", "0.5", "--steps", "3",
            "--step-size", "0.1", "--batch-size", "8", "--quiet"]
# SIGKILL at the third ChunkStore.save (chunks 0 and 1 stored), with advtf attack's small chunks
DYING_SMALL_CHUNKS = [sys.executable, "-P", "-c", "import advtf.jobs.attack as job; job.CHUNK_EXAMPLES = 16; "
                      f"import runpy; runpy.run_path({str(HERE / 'faults.py')!r}, run_name='__main__')",
                      "advtf.runs.chunks:ChunkStore.save", "2"]


@pytest.fixture(scope="module")
def other_model(tmp_path_factory) -> Path:
    from advtf.models import create_model, save_model

    path = tmp_path_factory.mktemp("other") / "other.keras"
    return save_model(create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=1), path)


def transfer_args(model, other_model) -> list:
    return ["transfer-eval", "--source", f"0={model}", "--source", f"0.5={other_model}", "--victim", f"a={model}",
            "--victim", f"b={other_model}", *TRANSFER]


@pytest.fixture(scope="module")
def transferred(model, other_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("transfer-one") / "one"
    done = subprocess.run([*SMALL_CHUNKS, *map(str, transfer_args(model, other_model)), "--out", str(out)],
                          capture_output=True, text=True, env=ENV, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def assert_same_results(a: Path, b: Path, tables) -> None:
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    assert ra == rb
    for table in tables:
        assert (a / table).read_bytes() == (b / table).read_bytes(), table


@pytest.mark.slow
def test_transfer_eval_on_two_workers_equals_one_process(model, other_model, transferred, tmp_path):
    out = tmp_path / "two"
    chief, worker = finished(on_cluster([*transfer_args(model, other_model), "--out", out],  # auto: TF_CONFIG
                                        commands={0: SMALL_CHUNKS, 1: SMALL_CHUNKS}))
    assert chief.returncode == 0 and worker.returncode == 0, chief.stderr[-3000:] + worker.stderr[-3000:]
    assert "worker 1 of 2 finished its share" in worker.stdout
    partial = tmp_path / "two.partial"
    assert not partial.exists()
    assert_same_results(out, transferred, ("transfer.csv", "transfer.md"))


@pytest.mark.slow
def test_transfer_eval_killed_mid_run_resumes_to_the_same_outputs(model, other_model, transferred, tmp_path):
    out = tmp_path / "tr"
    args = [*map(str, transfer_args(model, other_model)), "--out", str(out)]
    dead = subprocess.run([*DYING_SMALL_CHUNKS, *args], capture_output=True, text=True, env=ENV, timeout=400)
    assert dead.returncode == -signal.SIGKILL, dead.stderr[-2000:]
    partial = tmp_path / "tr.partial"
    assert json.loads((partial / "resume" / "done.json").read_text())["done"] == ["chunk_00000", "chunk_00001"]
    assert not out.exists()
    kept = {p: p.stat().st_mtime_ns for p in (partial / "resume").rglob("*.npy")}
    done = subprocess.run([*SMALL_CHUNKS, *args, "--resume"], capture_output=True, text=True, env=ENV, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "manifest.json").read_text())["resumed"] is True
    assert kept and not partial.exists()
    assert_same_results(out, transferred, ("transfer.csv", "transfer.md"))


ROBUST_TABLE = ["--testset", "Test=digits", "--testset", "Again=digits", "--test-subset", "64", "--batch-size", "8",
                "--quiet"]


@pytest.mark.slow
def test_robust_table_on_two_workers_equals_one_process(model, other_model, tmp_path):
    args = ["robust-table", "--classifier", f"a={model}", "--classifier", f"b={other_model}", *ROBUST_TABLE]
    one = subprocess.run([*SMALL_CHUNKS, *map(str, args), "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=ENV, timeout=400)
    assert one.returncode == 0, one.stderr[-2000:]
    # two chunked passes (one per test set): the workers meet after the first and go on to the second
    chief, worker = finished(on_cluster([*args, "--out", tmp_path / "two"],
                                        commands={0: SMALL_CHUNKS, 1: SMALL_CHUNKS}))
    assert chief.returncode == 0 and worker.returncode == 0, chief.stderr[-3000:] + worker.stderr[-3000:]
    assert "worker 1 of 2 finished its share" in worker.stdout
    assert_same_results(tmp_path / "two", tmp_path / "one", ("accuracy.csv", "accuracy.md"))


TRAIN = ["--dataset", "digits", "--model", "test_cnn", "--train-subset", "640", "--test-subset", "16",
         "--validation", "0", "--epochs", "4", "--batch-size", "16", "--eval-steps", "1", "--quiet"]


@pytest.mark.slow
def test_train_on_two_workers_killed_after_an_epoch_resumes_on_both(tmp_path):
    """Multi-worker training interrupted after its first epoch's checkpoint: every worker resumes at
    that epoch (a non-chief starts from a copy of the chief's interrupted run), so their collectives
    stay in step and the chief's run finishes with the whole history."""
    out = tmp_path / "T"
    addresses = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = [subprocess.Popen([*ADVTF, "train", *TRAIN, "--out", str(out)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**ENV, "TF_CONFIG": tf_config(addresses, i)})
             for i in range(2)]
    checkpoints = tmp_path / "T.partial" / "resume" / "train"
    try:
        deadline = time.time() + 300
        while not list(checkpoints.glob("ckpt-1.index")) and time.time() < deadline:
            assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs]
            time.sleep(0.2)
        assert list(checkpoints.glob("ckpt-1.index")), "no first checkpoint within 300 s"
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.communicate()
    assert not (out / "manifest.json").exists()
    results = finished(on_cluster(["train", *TRAIN, "--out", out, "--resume"]))
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
    assert "finished its share" in results[1].stdout or "worker" in results[1].stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed"] is True
    history = (out / "history.csv").read_text().strip().splitlines()
    assert len(history) == 1 + 4, history  # a header and every epoch, the first one from before the kill
