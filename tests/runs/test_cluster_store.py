"""Cluster runs without TensorFlow: two workers as threads whose ``gather`` is a thread barrier.

Checks the sharding of advtf.runs.chunks / advtf.runs.cluster against a single-process run
computed independently (a plain loop over the examples), and the stores each worker writes.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from advtf.errors import UserError
from advtf.runs import ResumeStore, RunDir
from advtf.runs.chunks import ChunkStore, process_in_chunks
from advtf.runs.cluster import Cluster, ClusterStore, WorkerFinished, WorkerRun, cluster_run

N, CHUNK, BATCH = 23, 5, 2  # 5 chunks: worker 0 takes 0, 2, 4; worker 1 takes 1, 3


def thread_clusters(workers: int, timeout: float = 20) -> list[Cluster]:
    """Clusters whose gather is an exchange between threads (what MultiWorkerMirroredStrategy does).

    ``timeout`` stands for the collective's: a member that never arrives breaks the barrier after it.
    """
    rows: list = [None] * workers
    barrier = threading.Barrier(workers, timeout=timeout)

    def gather_for(index):
        def gather(values):
            rows[index] = list(values)
            barrier.wait()
            out = [list(r) for r in rows]
            barrier.wait()
            return out
        return gather

    return [Cluster(w, workers, gather_for(w), [f"127.0.0.1:{9000 + w}" for w in range(workers)])
            for w in range(workers)]


def on_threads(functions):
    """Runs one function per thread; returns (results, exceptions) in order."""
    results, errors = [None] * len(functions), [None] * len(functions)

    def call(i):
        try:
            results[i] = functions[i]()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            errors[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(functions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results, errors


def per_example(index: np.ndarray) -> dict[str, np.ndarray]:
    """A deterministic function of the global example index only (as the jobs' seeds are)."""
    rng = [np.random.default_rng(int(i)) for i in index]
    return {"value": np.array([r.normal() for r in rng], np.float32), "index": index.astype(np.int32)}


def test_two_workers_split_chunks_by_index_and_merge_in_global_order(tmp_path):
    clusters = thread_clusters(2)
    stores = [ClusterStore(tmp_path, c) for c in clusters]
    computed = [[], []]

    def worker(w):
        def batch(index):
            computed[w].append(index.copy())
            return per_example(index)
        return lambda: process_in_chunks(ChunkStore(stores[w]), N, chunk_size=CHUNK, batch_size=BATCH, batch_fn=batch)

    (chief, _), errors = on_threads([worker(0), worker(1)])
    assert errors[0] is None and isinstance(errors[1], WorkerFinished) and errors[1].units == 2
    assert chief.chunks == 5 and chief.resumed == 0 and chief.examples == N
    chunks_of = [sorted({int(i[0]) // CHUNK for i in computed[w]}) for w in range(2)]
    assert chunks_of == [[0, 2, 4], [1, 3]]
    # each worker's own done.json lists only its chunks
    assert sorted(ResumeStore(tmp_path, subdirectory="worker-1").done) == ["chunk_00001", "chunk_00003"]
    assert sorted(ResumeStore(tmp_path, subdirectory="worker-0").done) == ["chunk_00000", "chunk_00002",
                                                                          "chunk_00004"]
    merged = np.concatenate([c["value"] for c in ChunkStore(stores[0]).iterate(5, ["value"])])
    expected = np.array([np.random.default_rng(i).normal() for i in range(N)], np.float32)  # one process
    np.testing.assert_array_equal(merged, expected)


def test_a_rerun_skips_chunks_any_worker_finished_even_with_another_worker_count(tmp_path):
    # an earlier run with two workers finished chunks 0 (worker 0) and 3 (worker 1)
    for w, c in ((0, 0), (1, 3)):
        ResumeStore(tmp_path, subdirectory=f"worker-{w}").save_arrays(
            f"chunk_{c:05d}", per_example(np.arange(c * CHUNK, min(c * CHUNK + CHUNK, N))))
    clusters = thread_clusters(3)
    computed = [[], [], []]

    def worker(w):
        def batch(index):
            computed[w].append(int(index[0]) // CHUNK)
            return per_example(index)
        store = ClusterStore(tmp_path, clusters[w])
        return lambda: process_in_chunks(ChunkStore(store), N, chunk_size=CHUNK, batch_size=CHUNK, batch_fn=batch)

    (chief, _, _), errors = on_threads([worker(w) for w in range(3)])
    assert errors[0] is None, errors[0]
    assert chief.resumed == 2 and chief.examples == N - 2 * CHUNK
    assert [sorted(set(c)) for c in computed] == [[], [1, 4], [2]]  # c % 3; chunks 0 and 3 not redone


def test_cluster_run_chief_commits_and_worker_writes_only_its_store(tmp_path):
    out = tmp_path / "out"
    clusters = thread_clusters(2, timeout=180)  # both arrive; 20 s was too short for the chief on a loaded CI machine
    request = {"steps": 3}

    def member(cluster):
        def job():
            with cluster_run(cluster, out, overwrite=False, resume=False, resumable=True, request=request,
                             inputs=()) as run:
                run.record_inputs(dataset={"sha": "x"})
                store = ChunkStore(run.store)
                process_in_chunks(store, N, chunk_size=CHUNK, batch_size=BATCH, batch_fn=per_example)
                (run.path / "results.json").write_text("{}")
                return isinstance(run, RunDir)
        return job

    results, errors = on_threads([member(c) for c in clusters])
    assert errors == [None, None] and results == [True, None]
    assert (out / "results.json").exists() and (out / "manifest.json").exists()
    assert not (tmp_path / "out.partial").exists() and not (out / "resume").exists()


def test_workers_refuse_other_options_and_other_inputs(tmp_path):
    clusters = thread_clusters(2)

    def member(cluster, request):
        def job():
            with cluster_run(cluster, tmp_path / "a", overwrite=False, resume=False, resumable=True,
                             request=request, inputs=()):
                pass
        return job

    _, errors = on_threads([member(clusters[0], {"steps": 3}), member(clusters[1], {"steps": 4})])
    assert all(isinstance(e, UserError) for e in errors), errors
    assert "worker 1 was started with other options than the chief (steps)" in str(errors[1])
    assert "worker(s) 1" in str(errors[0])
    assert not (tmp_path / "a").exists() and not (tmp_path / "a.partial").exists()

    clusters = thread_clusters(2)

    def inputs(cluster, sha):
        def job():
            with cluster_run(cluster, tmp_path / "b", overwrite=False, resume=False, resumable=True,
                             request={"steps": 3}, inputs=()) as run:
                run.record_inputs(dataset={"sha": sha})
                process_in_chunks(ChunkStore(run.store), N, chunk_size=CHUNK, batch_size=BATCH, batch_fn=per_example)
        return job

    _, errors = on_threads([inputs(clusters[0], "x"), inputs(clusters[1], "y")])
    assert "worker 1 read other inputs than the chief (dataset)" in str(errors[1])
    assert isinstance(errors[0], UserError) and "worker(s) 1" in str(errors[0])


def test_a_chief_that_cannot_open_out_stops_every_worker(tmp_path):
    (tmp_path / "c").mkdir()  # exists, no --overwrite
    clusters = thread_clusters(2)

    def member(cluster):
        def job():
            with cluster_run(cluster, tmp_path / "c", overwrite=False, resume=False, resumable=True,
                             request={}, inputs=()):
                pass
        return job

    _, errors = on_threads([member(c) for c in clusters])
    assert "exists; pass --overwrite" in str(errors[0])
    assert "the chief (worker 0, 127.0.0.1:9000) refused --out" in str(errors[1])


def test_a_worker_run_never_writes_the_chiefs_bookkeeping(tmp_path):
    run = WorkerRun(tmp_path / "d", {"x": 1}, thread_clusters(1)[0])
    run.record_inputs(model={"sha": "m"})
    assert not (tmp_path / "d.partial").exists()
    with pytest.raises(RuntimeError, match="only the chief"):
        run.fresh("test")
