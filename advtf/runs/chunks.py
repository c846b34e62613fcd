"""Resumable per-example work in chunks: finished chunks kept on disk until the job completes.

Robustifying or relabeling a whole split takes hours at the papers' scale; a job cut short
(Ctrl-C, a lost machine) continues with ``--resume`` from its last finished chunk. Each chunk
is a set of ``.npy`` arrays (read back with ``allow_pickle=False``), and ``chunks/checkpoint``
records the job's parameters and the finished chunks: a resume with other parameters is refused,
so one dataset never mixes two settings. (``RunDir`` keeps a failed partial directory when it
holds a file named ``checkpoint``.)
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from advtf.errors import UserError
from advtf.runs import read_json, write_json

CHECKPOINT = "checkpoint"


def _normalised(obj: Any) -> Any:
    """``obj`` as it reads back from JSON, so stored and new parameters compare equal."""
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def stored_checkpoint(checkpoint: Path, parameters: dict[str, Any]) -> dict | None:
    """The checkpoint a resumed job left (None if there is none); a UserError naming the options that differ.

    ``parameters`` must be :func:`_normalised`; every resumable job (chunks, dissection state, retraining
    cells) checks its options this way.
    """
    if not checkpoint.exists():
        return None
    stored = read_json(checkpoint)
    before = stored.get("parameters", {})
    changed = sorted(k for k in set(before) | set(parameters) if before.get(k) != parameters.get(k))
    if changed:
        raise UserError(f"the interrupted run was started with other options ({', '.join(changed)}); "
                        "resume with the same options, or pass --overwrite to start again")
    return stored


class ChunkStore:
    """Finished chunks of a job under ``<workdir>/chunks``.

    Args:
        workdir: the run's partial directory.
        parameters: everything that determines the result; a resumed job must match them.
    """

    def __init__(self, workdir: str | os.PathLike, parameters: dict[str, Any]):
        self.directory = Path(workdir) / "chunks"
        self.parameters = _normalised(parameters)
        stored = stored_checkpoint(self.directory / CHECKPOINT, self.parameters)
        # without one, the checkpoint appears with the first finished chunk
        self._done = set(int(i) for i in stored.get("done", [])) if stored else set()

    def _write_checkpoint(self) -> None:
        write_json(self.directory / CHECKPOINT, {"parameters": self.parameters, "done": sorted(self._done)})

    def _path(self, index: int, key: str) -> Path:
        return self.directory / f"chunk_{index:05d}.{key}.npy"

    def is_done(self, index: int) -> bool:
        return index in self._done

    @property
    def done(self) -> set[int]:
        return set(self._done)

    def save(self, index: int, arrays: dict[str, np.ndarray]) -> None:
        """Stores one finished chunk (each array written aside and renamed, then the checkpoint)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for key, value in arrays.items():
            if not key.isidentifier():
                raise ValueError(f"chunk array names must be identifiers, got {key!r}")
            path = self._path(index, key)
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(value), allow_pickle=False)
            os.replace(tmp, path)
        self._done.add(index)
        self._write_checkpoint()

    def load(self, index: int, keys: list[str]) -> dict[str, np.ndarray]:
        """One finished chunk's arrays (memory-mapped, never unpickled)."""
        if index not in self._done:
            raise KeyError(f"chunk {index} is not finished")
        out = {}
        for key in keys:
            try:
                out[key] = np.load(self._path(index, key), mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:
                raise UserError(f"chunk {index} of the interrupted run is unreadable ({e}); "
                                "pass --overwrite to start again") from None
        return out

    def iterate(self, count: int, keys: list[str]) -> Iterator[dict[str, np.ndarray]]:
        """Chunks ``0 .. count-1`` in order (all must be finished)."""
        for index in range(count):
            yield self.load(index, keys)

    def remove(self) -> None:
        """Deletes the resume state once the job's outputs are written."""
        shutil.rmtree(self.directory, ignore_errors=True)


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
                      desc: str = "") -> ChunkedRun:
    """Runs ``batch_fn(indices)`` over examples ``0 .. n-1`` batch by batch, saving each finished chunk.

    Chunks already finished (a resumed job) are skipped. ``batch_fn`` returns per-example arrays
    (the same keys every call); a chunk is their concatenation.
    """
    ranges = chunk_ranges(n, chunk_size)
    bar = progress(total=n, desc=desc, unit="img") if progress else None
    resumed = [c for c in range(len(ranges)) if store.is_done(c)]
    if bar is not None:
        bar.update(sum(ranges[c][1] - ranges[c][0] for c in resumed))
    start, examples = time.time(), 0
    for c, (lo, hi) in enumerate(ranges):
        if store.is_done(c):
            continue
        parts = []
        for b in range(lo, hi, batch_size):
            parts.append(batch_fn(np.arange(b, min(b + batch_size, hi))))
            if bar is not None:
                bar.update(min(b + batch_size, hi) - b)
        store.save(c, {k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
        examples += hi - lo
    if bar is not None:
        bar.close()
    return ChunkedRun(len(ranges), len(resumed), examples, time.time() - start)
