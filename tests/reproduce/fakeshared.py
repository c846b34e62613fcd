"""A fake cluster job for the reproduce tests: ``value * i`` per example ``i``, in resumable chunks.

Runs through the real chunk machinery (:func:`advtf.runs.chunks.process_in_chunks`), so on a
cluster the workers share its chunks and a non-chief worker stops after its share. ``CHUNKS``
records ``(worker, step directory, chunk)`` of every chunk computed; ``FAIL`` holds
``(worker, chunk)`` pairs at which a worker raises (it dies there).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from advtf import validation as check
from advtf.jobs import Request
from advtf.plots.figure import new_figure, save
from advtf.runs import write_json, write_table
from advtf.runs.chunks import ChunkStore, process_in_chunks

CHUNK = 2
CHUNKS: list[tuple[int, str, int]] = []
FAIL: set[tuple[int, int]] = set()


@dataclasses.dataclass(frozen=True)
class SharedRequest(Request):
    value: int = 1
    n: int = 8
    sources: tuple = ()
    strategy: str = "auto"

    def __post_init__(self):
        check.count("--value", self.value, minimum=0)
        check.count("--n", self.n)


def run(request: SharedRequest, run, *, progress=None, report=None) -> dict:
    """``total = sum(value * i for i < n) + the sources' totals``; a table and a figure on the chief."""
    cluster = getattr(run.store, "cluster", None)
    worker = 0 if cluster is None else cluster.index
    name = Path(run.out).name

    def batch(index: np.ndarray) -> dict[str, np.ndarray]:
        chunk = int(index[0]) // CHUNK
        if (worker, chunk) in FAIL:
            raise RuntimeError(f"worker {worker} died at chunk {chunk}")
        CHUNKS.append((worker, name, chunk))
        return {"v": (request.value * index).astype(np.int64)}

    store = ChunkStore(run.store)
    done = process_in_chunks(store, request.n, chunk_size=CHUNK, batch_size=CHUNK, batch_fn=batch)
    values = np.concatenate([c["v"] for c in store.iterate(done.chunks, ["v"])])
    total = float(values.sum()) + sum(json.loads((Path(s) / "results.json").read_text())["total"]
                                      for s in request.sources)
    results = {"total": total, "resumed_chunks": done.resumed}
    write_json(run.path / "results.json", results)
    write_table(run.path, "total", [{"total": total}])
    fig, axes = new_figure(1, 1, figsize=(2, 2))
    axes[0, 0].bar([0], [total])
    save(fig, run.path / "total.png", title="total")
    return results
