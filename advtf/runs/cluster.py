"""A run directory shared by the workers of a cluster (``--strategy multiworker``), without TensorFlow.

The engine is ``tf.distribute`` (:mod:`advtf.distribute.cluster` builds a :class:`Cluster` whose
``gather`` is an all-reduce of MultiWorkerMirroredStrategy); this module holds what the run
directory needs from it:

- **Ownership.** Worker ``w`` of ``W`` does the units (chunks, retraining cells) ``u`` with
  ``u % W == w``. Unit boundaries are global, so a unit's result does not depend on who made it.
- **Own stores.** Each worker writes its finished units into ``DIR.partial/resume/worker-<w>/``
  (:class:`ClusterStore`, its own ``done.json``) and reads every worker's, so a unit finished by
  anyone, in this run or an earlier one with any number of workers, is never done again.
- **One writer of DIR.** Only the chief (task 0) takes ``DIR.lock``, records the request, merges
  and commits; the others (:class:`WorkerRun`) write only their own units, check that the
  chief's recorded request, inputs and advtf version equal theirs, and stop with
  :class:`WorkerFinished` once their share is done.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from advtf import __version__
from advtf.errors import UserError
from advtf.runs.directory import BOOKKEEPING, RunDir, changed_options, normalised
from advtf.runs.files import read_json
from advtf.runs.resume import RESUME, ResumeStore

WORKER_PREFIX = "worker-"


class WorkerFinished(Exception):
    """Raised on a non-chief worker when its share of a job is done (the chief merges and commits)."""

    def __init__(self, index: int, units: int):
        super().__init__(f"worker {index} finished its {units} unit(s)")
        self.index, self.units = index, units


class Cluster:
    """This process's place in a cluster: ``index`` of ``workers``, and a collective ``gather``.

    ``gather(values)`` is a collective every worker must call at the same point: each passes a
    list of ints of the same length and gets every worker's list, in worker order. The chief is
    worker 0. ``addresses`` (of TF_CONFIG) are for messages only.
    """

    def __init__(self, index: int, workers: int, gather: Callable[[Sequence[int]], list[list[int]]],
                 addresses: Sequence[str] = ()):
        self.index, self.workers, self._gather = int(index), int(workers), gather
        self.addresses = list(addresses)
        self.run = None  # the chief's RunDir or a worker's WorkerRun, once open
        self._started = False

    @property
    def chief(self) -> bool:
        return self.index == 0

    def owns(self, unit: int) -> bool:
        """Whether this worker does unit ``unit`` (a chunk or a cell index)."""
        return unit % self.workers == self.index

    def gather(self, values: Sequence[int]) -> list[list[int]]:
        return self._gather([int(v) for v in values])

    def barrier(self) -> None:
        """Returns when every worker has reached it."""
        self.gather([1])

    def agree(self, ok: bool) -> list[bool]:
        """Every worker's ``ok``, exchanged (so all of them stop together when one cannot go on)."""
        return [bool(v[0]) for v in self.gather([int(bool(ok))])]

    def start(self) -> None:
        """Once per job, before the first unit: every worker's inputs must equal the chief's recorded ones."""
        if self._started:
            return
        self._started = True
        self.barrier()  # the chief has recorded its inputs by now
        problem = None
        if not self.chief and isinstance(self.run, WorkerRun):
            problem = self.run.check_inputs()
        verdict = self.agree(problem is None)
        if problem is not None:
            raise UserError(problem)
        if not all(verdict):
            bad = ", ".join(str(w) for w, ok in enumerate(verdict) if not ok)
            raise UserError(f"worker(s) {bad} read other inputs than the chief (see their message); every worker "
                            "must read the same model and dataset files")


class ClusterStore(ResumeStore):
    """This worker's own resume store (``resume/worker-<w>``), reading finished units of every store.

    Writes go to this worker's directory only; ``is_done``, ``done``, ``load_arrays`` and
    ``load_record`` also see the single-process store and the other workers' stores as they were
    at the last :meth:`refresh`.
    """

    def __init__(self, partial, cluster: Cluster):
        super().__init__(partial, subdirectory=f"{WORKER_PREFIX}{cluster.index}")
        self.partial, self.cluster = Path(partial), cluster
        self._elsewhere: dict[str, ResumeStore] = {}
        self.refresh()

    def refresh(self) -> None:
        """Re-reads which units the other stores hold (after a barrier: they are all written)."""
        others = [ResumeStore(self.partial)] + [
            ResumeStore(self.partial, subdirectory=p.name)
            for p in sorted((self.partial / RESUME).glob(f"{WORKER_PREFIX}*"))
            if p.is_dir() and p.name != self.directory.name]
        self._elsewhere = {key: store for store in others for key in store.done}

    def is_done(self, key: str) -> bool:
        return super().is_done(key) or key in self._elsewhere

    @property
    def done(self) -> list[str]:
        own = super().done
        return own + [k for k in self._elsewhere if k not in own]

    def load_arrays(self, key, names=None, *, mmap: bool = True):
        if not super().is_done(key) and key in self._elsewhere:
            return self._elsewhere[key].load_arrays(key, names, mmap=mmap)
        return super().load_arrays(key, names, mmap=mmap)

    def load_record(self, key: str) -> dict:
        if not super().is_done(key) and key in self._elsewhere:
            return self._elsewhere[key].load_record(key)
        return super().load_record(key)


def fingerprint(obj) -> int:
    """A 62-bit digest of a JSON-able value (what workers exchange to compare requests)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 2


def encode_version(version: str, width: int = 32) -> list[int]:
    """``version`` as ``width`` byte values (zero-padded), to exchange through a collective."""
    raw = version.encode()[:width]
    return list(raw) + [0] * (width - len(raw))


def decode_version(values: Sequence[int]) -> str:
    return bytes(int(v) for v in values if v).decode(errors="replace")


class WorkerRun:
    """A non-chief worker's view of the shared run directory: its own resume store, nothing else.

    It takes no lock and records nothing in ``DIR.partial/.advtf``; the chief does both. A job
    running here stops with :class:`WorkerFinished` after its share of the units, before any
    output of the run directory is written.
    """

    def __init__(self, out, request: dict, cluster: Cluster):
        self.out = Path(out).resolve()
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.request = normalised(request)
        self.cluster = cluster
        self.inputs: dict = {}
        self.extra: dict = {}
        self.resumed = True  # the chief decides; the worker only adds units
        self._store: ClusterStore | None = None

    @property
    def path(self) -> Path:
        """The shared partial directory (a worker writes only its own units' files in it)."""
        return self.partial

    @property
    def resuming(self) -> bool:
        return self.resumed

    @property
    def store(self) -> ClusterStore:
        if self._store is None:
            self._store = ClusterStore(self.partial, self.cluster)
        return self._store

    def fresh(self, relative: str) -> Path:
        raise RuntimeError("only the chief writes the run directory's outputs")

    def resume_hint(self) -> str:
        return "run every worker again with --resume"

    def record_inputs(self, **fingerprints) -> None:
        """Keeps the inputs' fingerprints, checked against the chief's at the first unit."""
        self.inputs.update(normalised(fingerprints))

    def recorded(self) -> dict:
        """The chief's ``request.json`` (request, inputs)."""
        try:
            return read_json(self.partial / BOOKKEEPING / "request.json")
        except (OSError, ValueError) as e:
            raise UserError(f"worker {self.cluster.index} cannot read the chief's record in {self.partial} ({e}); "
                            "--out must be on a filesystem every worker shares") from None

    def check_request(self) -> str | None:
        """None when the chief's recorded request equals this worker's, else the problem."""
        stored = self.recorded()
        names = changed_options(stored.get("request") or {}, self.request)
        if names:
            return (f"worker {self.cluster.index} was started with other options than the chief "
                    f"({', '.join(names)}); start every worker with the same command line")
        return None

    def check_inputs(self) -> str | None:
        """None when the chief's recorded inputs equal this worker's, else the problem."""
        stored = self.recorded().get("inputs") or {}
        names = sorted(k for k in self.inputs if stored.get(k) != self.inputs[k])
        if names:
            return (f"worker {self.cluster.index} read other inputs than the chief ({', '.join(names)}); every "
                    "worker must read the same model and dataset files")
        return None


def agreed(error: UserError) -> UserError:
    """Marks ``error`` as one every worker raised at the same point (no final exchange is owed)."""
    error.cluster_agreed = True
    return error


@contextmanager
def cluster_run(cluster: Cluster, out, *, overwrite: bool, resume: bool, resumable: bool, request: dict,
                inputs) -> Iterator[RunDir | WorkerRun]:
    """The chief's :class:`RunDir` or a worker's :class:`WorkerRun`, once every worker agreed to start.

    Start: the chief opens ``--out`` (lock, checks, ``request.json``); every worker's advtf version
    and request travel to all through ``cluster.gather``, then each worker compares the chief's
    recorded request with its own. Any refusal stops every worker (one line each, exit 2). End:
    the chief commits; a worker returns after its share (:class:`WorkerFinished`) once the chief
    says whether it committed.
    """
    error: UserError | None = None
    run: RunDir | WorkerRun
    if cluster.chief:
        run = RunDir(out, overwrite=overwrite, resume=resume, resumable=resumable, request=request, inputs=inputs)
        try:
            run.__enter__()
        except UserError as e:
            error = e
    else:
        run = WorkerRun(out, request, cluster)
    rows = cluster.gather([int(error is None), fingerprint(normalised(request))] + encode_version(__version__))
    versions = [decode_version(r[2:]) for r in rows]
    if not rows[0][0]:
        raise agreed(error if error is not None else UserError(
            f"the chief (worker 0, {_address(cluster, 0)}) refused --out {out} (its message says why); fix it "
            "and start every worker again"))
    problem = None
    odd = [w for w, v in enumerate(versions) if v != versions[0]]
    if odd:
        problem = ("advtf versions differ across the cluster ("
                   + ", ".join(f"worker {w} runs {versions[w]}" for w in odd)
                   + f", the chief {versions[0]}); install the same advtf on every worker")
    elif not cluster.chief:
        problem = run.check_request()
    verdict = cluster.agree(problem is None)
    if problem is None and not all(verdict):
        bad = ", ".join(str(w) for w, ok in enumerate(verdict) if not ok)
        problem = (f"worker(s) {bad} were started with other options than the chief (see their message); start "
                   "every worker with the same command line")
    if problem is not None:
        if cluster.chief:
            run.__exit__(UserError, UserError(problem), None)
        raise agreed(UserError(problem))
    cluster.run = run
    if isinstance(run, RunDir):
        run.share_store(ClusterStore(run.partial, cluster))
        try:
            yield run
        except BaseException as e:
            run.__exit__(type(e), e, e.__traceback__)
            _final_word(cluster, False, e)
            raise
        try:
            run.__exit__(None, None, None)
        except BaseException as e:
            _final_word(cluster, False, e)
            raise
        _final_word(cluster, True, None)
        return
    try:
        yield run
    except WorkerFinished:
        pass
    if not all(cluster.agree(True)):
        raise agreed(UserError(f"the chief (worker 0, {_address(cluster, 0)}) did not commit --out {out} (its "
                               "message says why); run every worker again with --resume"))


def _final_word(cluster: Cluster, committed: bool, error: BaseException | None) -> None:
    """The chief tells the waiting workers whether it committed (unless they already stopped with it)."""
    if error is not None and getattr(error, "cluster_agreed", False):
        return
    try:
        cluster.agree(committed)
    except Exception:  # a lost worker: nobody is waiting for the word
        if error is None:
            raise


def _address(cluster: Cluster, index: int) -> str:
    return cluster.addresses[index] if index < len(cluster.addresses) else f"worker {index}"
