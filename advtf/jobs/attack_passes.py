"""The attack passes of the analysis commands: chunked, resumable, shared by the workers of a cluster.

An analysis (``frequency``, ``features``, ``perturbations``, ``response``, ``cam``, ``psr``) attacks
the test split with one or more models before it measures anything, and the attacks are most of
its compute. :class:`AttackPasses` runs them through the run's resume store
(:func:`advtf.runs.chunks.process_in_chunks`) before the analysis starts:

- a job killed mid-attack continues with ``--resume`` from its last finished chunk;
- under ``--strategy multiworker`` the workers share the chunks; every non-chief worker then
  stops and the chief measures from the stored pairs alone;
- batch ``i`` of the split is seeded ``[seed, i]`` as in :func:`advtf.analysis.pairs.adversarial_pairs`,
  so the stored pairs equal the inline ones bit for bit, whoever made them.

:meth:`AttackPasses.pairs` has the signature of ``adversarial_pairs``: the analysis functions take
either as their ``pairs`` source.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import tensorflow as tf

from advtf.adversarial import AttackRequest, attack_batches
from advtf.data.rows import SplitRows, split_rows
from advtf.runs.chunks import ChunkStore, process_in_chunks
from advtf.runs.cluster import WorkerFinished
from advtf.runs.directory import BOOKKEEPING

# Per-example results kept per pass (``natural`` is read back from the split's rows file).
STORED = {"image": np.float32, "label": np.int32, "target": np.int32, "success": np.bool_,
          "clean_prediction": np.int32, "adversarial_prediction": np.int32, "clean_correct": np.bool_,
          "adversarial_correct": np.bool_, "l0": np.float32, "l1": np.float32, "l2": np.float32,
          "linf": np.float32}
CHUNK_BATCHES = 8  # batches per resumable chunk
# Batch i's attack seed: "index" [seed, i] (adversarial_pairs'); "offset" [seed + i, 0] (dissect's sensitivity pass)
SEEDINGS = ("index", "offset")


class AttackPasses:
    """The (model, attack) passes over one split that a job's analysis will read.

    ``add`` every pass, ``run_all`` once (in a cluster, every worker makes the same calls in the
    same order), then hand :meth:`pairs` to the analysis. ``rows`` are the split's images and
    labels on disk (:func:`advtf.data.rows.split_rows`).
    """

    def __init__(self, run, rows: SplitRows, *, num_classes: int, batch_size: int, seed: int, jit: bool = False,
                 progress=None, seeding: str = "index"):
        if seeding not in SEEDINGS:
            raise ValueError(f"seeding must be one of {', '.join(SEEDINGS)}, not {seeding!r}")
        self.run, self.rows, self.num_classes = run, rows, num_classes
        self.batch_size, self.seed, self.jit, self.progress = batch_size, seed, jit, progress
        self.seeding = seeding
        self._passes: list[tuple[object, AttackRequest, str]] = []
        self._done: set[int] = set()

    @classmethod
    def of_test_split(cls, run, splits, *, batch_size: int, seed: int, jit: bool = False, progress=None,
                      name: str = "rows") -> "AttackPasses":
        """Passes over the test split of loaded ``splits`` (its rows written once into the run's bookkeeping)."""
        test = splits.require("test")
        n = int(splits.sizes.get("test", 0))
        rows = split_rows(test, n, run.path / BOOKKEEPING / name) if n else _NoRows(test)
        return cls(run, rows, num_classes=splits.info.num_classes, batch_size=batch_size, seed=seed, jit=jit,
                   progress=progress)

    def add(self, model, request: AttackRequest, desc: str = "") -> None:
        """Registers the pass of ``request`` against ``model`` (once per distinct pair)."""
        if self._find(model, request) is None:
            self._passes.append((model, request, desc or request.name))

    def run_all(self) -> None:
        """Every registered pass not yet finished, chunk by chunk; then a non-chief worker stops.

        Raises :class:`~advtf.runs.cluster.WorkerFinished` on a non-chief worker of a cluster run.
        """
        for k in range(len(self._passes)):
            self._run(k)
        cluster = getattr(self.run.store, "cluster", None)
        if cluster is not None and not cluster.chief:
            raise WorkerFinished(cluster.index, len(self._passes))

    def pairs(self, model, splits, request: AttackRequest, *, batch_size: int, seed: int, progress=None,
              desc: str = "") -> Iterator[dict[str, np.ndarray]]:
        """The stored pass of ``request`` on ``model``, batch by batch, as ``adversarial_pairs`` yields it.

        ``splits`` is accepted for that signature; the pass reads this object's split. ``progress``
        (with ``desc``) counts the examples as the caller consumes them: the analysis's own stage.
        """
        if (batch_size, seed) != (self.batch_size, self.seed):
            raise ValueError(f"stored passes use batch size {self.batch_size} and seed {self.seed}, "
                             f"not {batch_size} and {seed}")
        k = self._find(model, request)
        if k is None:
            raise KeyError(f"no pass of {request.name} on this model was added before run_all")
        chunks = self._run(k)
        store, n = self._store(k), len(self.rows)
        start = 0
        bar = progress(total=n, desc=desc or request.name, unit="img") if progress else None
        try:
            for chunk in store.iterate(chunks, list(STORED)):
                for lo in range(0, len(chunk["label"]), self.batch_size):
                    hi = min(lo + self.batch_size, len(chunk["label"]))
                    batch = {key: np.asarray(value[lo:hi]) for key, value in chunk.items()}
                    batch["natural"] = self.rows[np.arange(start + lo, start + hi)]
                    yield batch
                    if bar is not None:
                        bar.update(hi - lo)
                start += len(chunk["label"])
        finally:
            if bar is not None:
                bar.close()
        assert start == n, (start, n)

    def _find(self, model, request: AttackRequest) -> int | None:
        for k, (m, r, _) in enumerate(self._passes):
            if m is model and r == request:
                return k
        return None

    def _store(self, k: int) -> ChunkStore:
        return ChunkStore(self.run.store, prefix=f"pass{k}")

    def _run(self, k: int) -> int:
        """Pass ``k``'s chunk count, after computing its unfinished chunks (nothing when all are done)."""
        model, request, desc = self._passes[k]
        n, rows = len(self.rows), self.rows

        def batch(index):
            x = tf.constant(rows[index])
            y = tf.constant(rows.labels[index])
            b = int(index[0]) // self.batch_size
            seed, start = (self.seed, b) if self.seeding == "index" else (self.seed + b, 0)
            row = next(attack_batches(model, [(x, y)], request, num_classes=self.num_classes, seed=seed,
                                      jit=self.jit, start=start))
            return {key: row[key].astype(dtype) for key, dtype in STORED.items()}

        if k in self._done or not n:
            return -(-n // (self.batch_size * CHUNK_BATCHES))
        done = process_in_chunks(self._store(k), n, chunk_size=self.batch_size * CHUNK_BATCHES,
                                 batch_size=self.batch_size, batch_fn=batch, progress=self.progress, desc=desc,
                                 final=False)
        self._done.add(k)
        return done.chunks


class _NoRows:
    """An empty split: no rows, no labels (the analyses report it in their own words)."""

    labels = np.zeros(0, np.int32)

    def __init__(self, source):
        self.source = source

    def __len__(self) -> int:
        return 0

    def __getitem__(self, index):
        return np.zeros((0,), np.float32)
