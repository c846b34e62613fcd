"""``advtf attack`` streams the split through resumable chunks and writes exactly what one in-memory pass
over the batched split writes: the same adversarial dataset bit for bit, results.json and examples table;
killed with SIGKILL and resumed, the same again."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from advtf.adversarial import AttackRequest, attack_batches, summarize
from advtf.attacks import Threat
from advtf.data import load_saved_elements, make_batches
from advtf.inputs import DataRequest
from advtf.jobs import execute
from advtf.jobs import attack as attack_job
from advtf.jobs.attack import AttackJobRequest

HERE = Path(__file__).resolve().parent
DATA = DataRequest(dataset="digits", test_subset=30, seed=3)
# A random start and random targets: both draw from the per-batch seed, so a wrong batch index shows.
ATTACK = AttackRequest("pgd", Threat(norm="linf", eps=0.1, steps=2, random_start=True), targeted=True)
BATCH = 4


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from advtf.models import create_model, save_model

    path = tmp_path_factory.mktemp("model") / "model.keras"
    return save_model(create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=0), path)


@pytest.fixture(scope="module")
def in_memory(model):
    """The pre-streaming job's computation: one pass of attack_batches over the batched split, concatenated."""
    from advtf.inputs import load_trained_model

    splits = DATA.load()
    net = load_trained_model(model)
    chunks = list(attack_batches(net, make_batches(splits.test, BATCH, training=False), ATTACK,
                                 num_classes=10, seed=DATA.seed))
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def saved(directory: Path) -> dict[str, np.ndarray]:
    rows = list(load_saved_elements(directory, "test").as_numpy_iterator())
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def assert_matches(out: Path, expected: dict[str, np.ndarray]) -> None:
    got = saved(out)
    assert sorted(got) == sorted(attack_job.ELEMENT_KEYS)
    for key in got:
        want = expected[key].astype(got[key].dtype)
        assert got[key].shape == want.shape and got[key].tobytes() == want.tobytes(), key
    results = json.loads((out / "results.json").read_text())
    assert {k: results[k] for k in summarize(expected, targeted=True)} == \
        json.loads(json.dumps(summarize(expected, targeted=True)))
    with open(out / "examples.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [int(r["index"]) for r in table] == list(range(len(expected["label"])))
    assert [int(r["target"]) for r in table] == expected["target"].tolist()
    assert np.allclose([float(r["l2"]) for r in table], expected["l2"], atol=1e-6)


def test_streamed_chunks_write_what_one_in_memory_pass_writes(model, in_memory, tmp_path, monkeypatch):
    monkeypatch.setattr(attack_job, "CHUNK_EXAMPLES", 8)  # chunks of 8: 30 examples in 4 chunks, last batch short
    assert attack_job.chunk_size(BATCH) == 8 and attack_job.chunk_size(3) == 9 and attack_job.chunk_size(50) == 50
    request = AttackJobRequest(model=str(model), attack=ATTACK, data=DATA, batch_size=BATCH, figure_examples=2)
    execute("attack", request, out=tmp_path / "adv")
    assert_matches(tmp_path / "adv", in_memory)
    assert not (tmp_path / "adv.partial").exists()


@pytest.mark.slow  # three CLI processes, about a minute
def test_attack_killed_mid_run_resumes_to_the_same_outputs(model, in_memory, tmp_path):
    out = tmp_path / "cut"
    args = ["attack", model, "--dataset", "digits", "--test-subset", "30", "--seed", "3", "--attack", "pgd",
            "--norm", "linf", "--eps", "0.1", "--steps", "2", "--targeted", "--batch-size", str(BATCH),
            "--figure-examples", "2", "--quiet", "--out", out]
    # Chunks of 8 examples (2 batches); SIGKILL at the 4th batch: chunk 0 finished, chunk 1 half done.
    driver = ("import runpy, sys; import advtf.jobs.attack as a; a.CHUNK_EXAMPLES = 8; "
              "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", "CUDA_VISIBLE_DEVICES": ""}

    def cli(*extra, fault=("advtf.jobs.attack:attack_batches", 1_000_000)):
        return subprocess.run([sys.executable, "-P", "-c", driver, str(HERE / "faults.py"), fault[0], str(fault[1]),
                               *map(str, args), *extra], capture_output=True, text=True, env=env, timeout=300)

    killed = cli(fault=("advtf.jobs.attack:attack_batches", 3))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    done = json.loads((tmp_path / "cut.partial" / "resume" / "done.json").read_text())["done"]
    assert done == ["chunk_00000"]
    resumed = cli("--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_matches(out, in_memory)


def _snapshot_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.snapshot"))


def test_record_bytes_is_what_dataset_save_writes_per_element(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    spec = {"image": tf.TensorSpec((5, 4, 3), tf.float32), "label": tf.TensorSpec((), tf.int32),
            "success": tf.TensorSpec((), tf.bool)}
    sizes = {}
    for n in (3, 10):  # random values: the record size must not depend on them
        ds = tf.data.Dataset.from_tensor_slices({"image": rng.random((n, 5, 4, 3), np.float32),
                                                 "label": rng.integers(0, 9, n).astype(np.int32),
                                                 "success": rng.random(n) > 0.5})
        ds.save(str(tmp_path / str(n)), shard_func=lambda e: tf.constant(0, tf.int64))
        sizes[n] = _snapshot_bytes(tmp_path / str(n))
    per = attack_job.record_bytes(spec)
    assert sizes[10] - sizes[3] == 7 * per
    assert 5 * 4 * 3 * 4 + 4 + 1 <= per < 5 * 4 * 3 * 4 + 4 + 1 + 3 * 64  # raw bytes plus a small header


def _chunk_store(tmp_path, chunks: int, size: int):
    from advtf.runs.chunks import ChunkStore

    store, rng = ChunkStore(tmp_path / "store"), np.random.default_rng(1)
    for c in range(chunks):  # 64x64 float32 images: 2 MiB a chunk of 64, above the 1 MiB floor
        store.save(c, {"image": rng.random((size, 64, 64, 1), np.float32), "label": rng.integers(0, 10, size).astype(np.int32)})
    return store


def test_paced_chunks_hold_back_until_the_writer_has_caught_up(tmp_path, monkeypatch):
    """Chunk c is yielded only once c - AHEAD_CHUNKS chunks are on disk: with no writer, chunks 3 and 4
    each wait out the stall timeout; with Dataset.save writing, every wait ends on the awaited bytes and
    the saved elements are the chunks bit for bit."""
    import time

    from advtf.data import DatasetInfo, save_dataset

    store = _chunk_store(tmp_path, 5, 64)
    monkeypatch.setattr(attack_job, "AHEAD_CHUNKS", 2)
    monkeypatch.setattr(attack_job, "STALL_SECONDS", 1.0)
    arrivals, start = [], time.monotonic()
    for i, _ in enumerate(attack_job.paced_chunks(store, 5, ["image", "label"], tmp_path / "nobody").as_numpy_iterator()):
        if i % 64 == 0:
            arrivals.append(time.monotonic() - start)
    gaps = np.diff(arrivals)
    assert len(arrivals) == 5 and max(gaps[:2]) < 1.0 <= min(gaps[2:]), arrivals

    monkeypatch.setattr(attack_job, "STALL_SECONDS", 120.0)
    waits, wait = [], attack_job._wait_written

    def checked(target, want):
        wait(target, want)
        waits.append((want, _snapshot_bytes(target)))

    monkeypatch.setattr(attack_job, "_wait_written", checked)
    out = tmp_path / "saved"
    out.mkdir()
    info = DatasetInfo(name="t", num_classes=10, class_names=tuple("abcdefghij"), image_shape=(64, 64, 1),
                       mean=(0.5,), std=(0.25,), natural_images=False, source="t")
    started = time.monotonic()
    save_dataset(out, {"train": attack_job.paced_chunks(store, 5, ["image", "label"], out / "train")},
                 kind="test", info=info, source={}, parameters={})
    assert time.monotonic() - started < 120.0
    assert len(waits) == 5 and sum(want > 0 for want, _ in waits) == 2
    assert all(got >= want for want, got in waits)
    ds = tf_load(out / "train")
    for key in ("image", "label"):
        expected = np.concatenate([store.load(c, [key])[key] for c in range(5)])
        assert np.stack([e[key] for e in ds]).tobytes() == expected.tobytes()


def tf_load(path: Path) -> list[dict]:
    import tensorflow as tf

    return list(tf.data.Dataset.load(str(path)).as_numpy_iterator())
