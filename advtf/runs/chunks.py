"""Resumable per-example work in chunks, kept in the run's resume store until the job commits.

Robustifying or relabeling a whole split takes hours at the papers' scale; a job cut short
(Ctrl-C, SIGTERM, a lost machine) continues with ``--resume`` from its last finished chunk.
Each chunk is one key of :class:`advtf.runs.ResumeStore` (``chunk_00000`` ...) holding its
``.npy`` arrays; the run directory refuses a resume with other options, so one dataset never
mixes two settings, and chunk boundaries (``--chunk-size``) are among those options.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from advtf.errors import UserError
from advtf.runs.cluster import WorkerFinished
from advtf.runs.resume import ResumeStore


class ChunkStore:
    """Finished chunks of a job, in the resume store of the run's partial directory ``workdir``.

    Keys are ``<prefix>_00000`` ...; a job with several chunked passes (one per test set, say) gives
    each pass its own ``prefix`` in the same store.
    """

    def __init__(self, workdir: str | os.PathLike | ResumeStore, prefix: str = "chunk"):
        self.store = workdir if isinstance(workdir, ResumeStore) else ResumeStore(workdir)
        self.prefix = prefix

    def _key(self, index: int) -> str:
        return f"{self.prefix}_{index:05d}"

    def is_done(self, index: int) -> bool:
        return self.store.is_done(self._key(index))

    @property
    def done(self) -> set[int]:
        head = f"{self.prefix}_"
        return {int(k[len(head):]) for k in self.store.done if k.startswith(head) and k[len(head):].isdigit()}

    def save(self, index: int, arrays: dict[str, np.ndarray]) -> None:
        """Stores one finished chunk (each array written aside and renamed, then marked finished)."""
        self.store.save_arrays(self._key(index), arrays)

    def load(self, index: int, keys: list[str]) -> dict[str, np.ndarray]:
        """One finished chunk's arrays (memory-mapped, never unpickled)."""
        if not self.is_done(index):
            raise KeyError(f"chunk {index} is not finished")
        return self.store.load_arrays(self._key(index), keys)

    def iterate(self, count: int, keys: list[str]) -> Iterator[dict[str, np.ndarray]]:
        """Chunks ``0 .. count-1`` in order (all must be finished)."""
        for index in range(count):
            yield self.load(index, keys)


def chunk_ranges(n: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` index ranges of ``n`` examples in chunks of ``chunk_size``."""
    if chunk_size < 1:
        raise UserError(f"chunk size must be >= 1 (got {chunk_size}); fix --chunk-size")
    return [(start, min(start + chunk_size, n)) for start in range(0, n, chunk_size)]


def chunks_dataset(store: ChunkStore, count: int, keys: list[str]):
    """The finished chunks ``0 .. count-1`` as one unbatched ``tf.data.Dataset`` of dicts, streamed."""
    import tensorflow as tf

    first = store.load(0, keys)
    signature = {k: tf.TensorSpec((None, *first[k].shape[1:]), tf.as_dtype(first[k].dtype)) for k in keys}

    def generate():
        for chunk in store.iterate(count, keys):
            yield {k: np.asarray(v) for k, v in chunk.items()}

    return tf.data.Dataset.from_generator(generate, output_signature=signature).unbatch()


@dataclass(frozen=True)
class ChunkedRun:
    """What :func:`process_in_chunks` did: chunk count, chunks found finished, work done now."""

    chunks: int
    resumed: int
    examples: int
    seconds: float

    @property
    def examples_per_second(self) -> float | None:
        return round(self.examples / self.seconds, 3) if self.examples and self.seconds > 0 else None


def process_in_chunks(store: ChunkStore, n: int, *, chunk_size: int, batch_size: int,
                      batch_fn: Callable[[np.ndarray], dict[str, np.ndarray]], progress=None,
                      desc: str = "", final: bool = True) -> ChunkedRun:
    """Runs ``batch_fn(indices)`` over examples ``0 .. n-1`` batch by batch, saving each finished chunk.

    Chunks already finished (a resumed job) are skipped. ``batch_fn`` returns per-example arrays
    (the same keys every call); a chunk is their concatenation.

    In a cluster run (the store is a :class:`advtf.runs.cluster.ClusterStore`) worker ``w`` of ``W``
    does the unfinished chunks ``c`` with ``c % W == w``; all then meet at a barrier, after which
    every chunk is readable in order. A non-chief worker stops there with
    :class:`~advtf.runs.cluster.WorkerFinished` unless ``final`` is False (a job with a later pass).
    ``examples`` and ``seconds`` then count every worker's chunks up to the barrier.
    """
    cluster = getattr(store.store, "cluster", None)
    if cluster is not None:
        cluster.start()
    ranges = chunk_ranges(n, chunk_size)
    resumed = {c for c in range(len(ranges)) if store.is_done(c)}
    mine = [c for c in range(len(ranges)) if c not in resumed and (cluster is None or cluster.owns(c))]
    bar = None
    if progress:  # a single process counts the resumed chunks in; a worker counts its own share
        todo = sum(ranges[c][1] - ranges[c][0] for c in mine)
        bar = progress(total=n if cluster is None else todo, desc=desc, unit="img")
        if cluster is None:
            bar.update(n - todo)
    start, examples = time.time(), 0
    for c in mine:
        lo, hi = ranges[c]
        parts = []
        for b in range(lo, hi, batch_size):
            parts.append(batch_fn(np.arange(b, min(b + batch_size, hi))))
            if bar is not None:
                bar.update(min(b + batch_size, hi) - b)
        store.save(c, {k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
        examples += hi - lo
    if bar is not None:
        bar.close()
    if cluster is not None:
        cluster.barrier()  # every worker's chunks are written
        store.store.refresh()
        missing = [c for c in range(len(ranges)) if not store.is_done(c)]
        if missing:
            raise RuntimeError(f"chunks {missing[:5]} are missing after every worker finished")
        if not cluster.chief and final:
            raise WorkerFinished(cluster.index, len(mine))
        examples = sum(hi - lo for c, (lo, hi) in enumerate(ranges) if c not in resumed)
    return ChunkedRun(len(ranges), len(resumed), examples, time.time() - start)
