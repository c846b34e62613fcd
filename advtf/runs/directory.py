"""The run directory: built aside in ``DIR.partial``, committed by rename, never lost or mixed.

Every command writes to ``--out DIR`` through :class:`RunDir`, which holds the guarantees
once for all of them:

- **Exclusive.** ``DIR.lock`` is held for the whole job (:class:`advtf.runs.lock.OutLock`);
  a second process fails at once, a lock left by a dead process is taken over.
- **Exact or refused resume.** The request (every option that affects results) and the
  inputs' fingerprints are recorded in ``DIR.partial/.advtf/request.json`` before any work;
  ``--resume`` with anything different is refused, naming what changed.
- **Crash-safe.** Outputs and resume state are written aside and renamed; the resume store
  (``resume/``) is removed only after the commit. A failure leaves the previous ``DIR``
  untouched and either a ``DIR.partial`` that ``--resume`` completes (resumable jobs with
  finished work) or nothing.
- **Safe overwrite.** ``--overwrite`` replaces only a directory advtf wrote (its manifest
  says so), never one holding an input of the same command or the working directory, and
  touches nothing but ``DIR`` and ``DIR.partial``.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

from advtf import __version__
from advtf.errors import ResultError, UserError
from advtf.runs.files import MANIFEST, package_versions, read_json, tree_hashes, write_json
from advtf.runs.lock import OutLock
from advtf.runs.resume import RESUME, ResumeStore

BOOKKEEPING = ".advtf"  # inside DIR.partial: request.json, progress.json; removed at commit
RUN_CONTROL = frozenset({"out", "overwrite", "resume", "quiet", "debug"})  # never part of a request


def normalised(obj: Any) -> Any:
    """``obj`` as it reads back from JSON, so stored and new requests compare equal."""
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def is_advtf_run(path: Path) -> bool:
    """True when ``path`` is a directory whose manifest says advtf wrote it."""
    try:
        manifest = read_json(Path(path) / MANIFEST)
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict):
        return False
    versions = manifest.get("versions")
    return (isinstance(versions, dict) and "advtf" in versions) or isinstance(manifest.get("dataset"), dict)


def check_writable_parent(out: Path) -> None:
    """UserError unless ``out``'s parent exists (or can be made) and is writable."""
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {parent} for --out ({e.strerror}); choose a writable --out") from None
    if not os.access(parent, os.W_OK):
        raise UserError(f"--out {out}: {parent} is not writable; choose a writable --out")


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class RunDir:
    """A run directory under construction; use as a context manager.

    Args:
        out: the final directory (``--out``).
        overwrite: replace an existing ``out`` (an advtf run) when this run completes.
        resume: continue an interrupted run (its ``out.partial``), if the request matches.
        resumable: the job can resume; a failure then keeps a partial holding finished work.
        request: every option that affects results, as JSON-able values (recorded, compared).
        inputs: paths the command reads (model files, dataset directories); ``--overwrite``
            never replaces a directory holding one.
    """

    def __init__(self, out, *, overwrite: bool = False, resume: bool = False, resumable: bool = False,
                 request: dict | None = None, inputs: Iterable[str | os.PathLike] = (), options: dict | None = None):
        given = Path(out)
        if str(out).strip() == "":
            raise UserError("--out is empty; give the run directory to create, e.g. --out runs/std")
        self.out = given.resolve()
        if self.out.parent == self.out:
            raise UserError(f"--out {out} is the file-system root; choose a directory below it")
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.overwrite, self.resume, self.resumable = overwrite, resume, resumable
        given_request = request if request is not None else (options or {})
        self.request = normalised({k: v for k, v in dict(given_request).items() if k not in RUN_CONTROL})
        self.options = self.request
        self.input_paths = [Path(p).resolve() for p in inputs if p is not None]
        self.inputs: dict = {}
        self.extra: dict = {}
        self.resumed = False
        self._lock = OutLock(self.out)
        self._start: float | None = None
        self._store: ResumeStore | None = None

    # -- where to write ----------------------------------------------------------------------
    @property
    def path(self) -> Path:
        """Where to write now (the partial directory)."""
        return self.partial

    @property
    def resuming(self) -> bool:
        return self.resumed

    @property
    def store(self) -> ResumeStore:
        """The job's resume store (``DIR.partial/resume``, or the one :meth:`share_store` gave)."""
        if self._store is None:
            self._store = ResumeStore(self.partial)
        return self._store

    def share_store(self, store: ResumeStore) -> None:
        """Uses ``store`` as the resume store (a cluster run: this worker's own, reading everyone's)."""
        self._store = store

    def fresh(self, relative: str) -> Path:
        """``path / relative`` with anything an interrupted attempt left there removed (a job's output
        written again on resume, e.g. a saved dataset's split directory)."""
        target = (self.partial / relative).resolve()
        if not _within(target, self.partial) or target == self.partial:
            raise ValueError(f"{relative!r} is not inside the run directory")
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        return target

    def resume_hint(self) -> str:
        """The command line that continues this run."""
        args = [a for a in sys.argv[1:] if a not in ("--overwrite", "--resume")]
        return "advtf " + " ".join(_quote(a) for a in args) + " --resume"

    # -- checks before any work --------------------------------------------------------------
    def check(self) -> None:
        """Validates ``--out`` against what is on disk (called with the lock held)."""
        check_writable_parent(self.out)
        if self.resume and self.overwrite:
            raise UserError("--resume continues a run and --overwrite starts it again; give one of them")
        if self.resume and not self.resumable:
            raise UserError("this command cannot --resume; drop --resume (and pass --overwrite to start again)")
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--out {self.out} is a file; choose a directory name")
        cwd = Path.cwd().resolve()
        if self.overwrite and _within(cwd, self.out) and self.out.exists():
            raise UserError(f"--out {self.out} holds the current directory; --overwrite will not replace it, "
                            "choose another --out")
        for path in self.input_paths:
            if _within(path, self.out) or _within(path, self.partial):
                raise UserError(f"--out {self.out} holds an input of this command ({path}); "
                                "choose another --out")
        if self.out.exists():
            if self.resume and not self.partial.exists():
                raise UserError(f"{self.out} is already complete; nothing to resume (use --overwrite to redo it)")
            if not self.overwrite and not self.resume:
                raise UserError(f"{self.out} exists; pass --overwrite to replace it or choose another --out")
            if self.overwrite and not is_advtf_run(self.out):
                raise UserError(f"--overwrite replaces only a run directory advtf wrote; {self.out} has no advtf "
                                "manifest, so move it away yourself or choose another --out")
        if self.partial.exists():
            if not (self.partial / BOOKKEEPING / "request.json").exists() and not self.resume:
                if any(self.partial.iterdir()):
                    raise UserError(f"{self.partial} is not an advtf partial run; move it away or choose another --out")
            # A command that cannot resume has nothing to keep in a partial a killed run left (the lock is
            # ours, so no process is writing it): it starts again. A resumable one asks which the user wants.
            if self.resumable and not self.resume and not self.overwrite:
                raise UserError(f"an interrupted run is at {self.partial}; pass --resume to continue it or "
                                "--overwrite to start again")
        elif self.resume and not self.out.exists():
            raise UserError(f"nothing to resume at {self.out}; drop --resume to start a new run")

    def _check_request(self) -> None:
        """On resume: the stored request must equal this one (else UserError naming the options)."""
        path = self.partial / BOOKKEEPING / "request.json"
        try:
            stored = read_json(path)
            before = stored["request"]
            if not isinstance(before, dict):
                raise TypeError
        except FileNotFoundError:
            raise UserError(f"{self.partial} holds no record of its options (made by an older advtf?); "
                            "pass --overwrite to start again") from None
        except (ValueError, KeyError, TypeError):
            raise UserError(f"the record of {self.partial} is damaged; pass --overwrite to start again") from None
        changed = _changed(before, self.request)
        if changed:
            raise UserError(f"the interrupted run was started with other options ({', '.join(changed)}); "
                            "resume with the same options, or pass --overwrite to start again")
        self.inputs = dict(stored.get("inputs") or {})

    def record_inputs(self, **fingerprints) -> None:
        """Records the inputs' fingerprints; on resume they must equal the recorded ones."""
        new = normalised(fingerprints)
        if self.resumed:
            stored = {k: self.inputs[k] for k in new if k in self.inputs}
            if "parameters" in stored and stored["parameters"] != new["parameters"]:
                before, now = stored["parameters"], new["parameters"]
                names = _changed(before, now) if isinstance(before, dict) and isinstance(now, dict) else ["parameters"]
                raise UserError(f"the interrupted run was started with other options ({', '.join(names)}); "
                                "resume with the same options, or pass --overwrite to start again")
            changed = [k for k in new if k in stored and stored[k] != new[k]]
            if changed:
                raise UserError(f"the inputs of the interrupted run have changed ({', '.join(sorted(changed))}); "
                                "resume with the same inputs, or pass --overwrite to start again")
        self.inputs.update(new)
        self._write_request()

    def _write_request(self) -> None:
        # the advtf version too: the workers of a cluster run check theirs against it
        write_json(self.partial / BOOKKEEPING / "request.json",
                   {"request": self.request, "inputs": self.inputs, "advtf": __version__})

    # -- life cycle --------------------------------------------------------------------------
    def __enter__(self) -> "RunDir":
        check_writable_parent(self.out)
        self._lock.acquire()
        try:
            self.check()
            if self.resume and self.partial.exists():
                self._check_request()
                self.resumed = True
            elif self.partial.exists():  # --overwrite, or the leftover of a killed non-resumable run
                shutil.rmtree(self.partial)
            (self.partial / BOOKKEEPING).mkdir(parents=True, exist_ok=True)
            if not self.resumed:
                self._write_request()
        except BaseException:
            self._lock.release()
            raise
        self._start = time.time()
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._commit()
                return False
            # a ResultError: no resume with these options can get past it, so nothing is kept
            kept = self.keeps_partial() and not isinstance(exc, ResultError)
            if not kept:
                shutil.rmtree(self.partial, ignore_errors=True)
            else:
                self._add_wall_time()
            if exc is not None:  # the CLI's interruption message says whether and how to resume
                exc.advtf_resume = self.resume_hint() if kept else None
        finally:
            self._lock.release()
        return False

    def keeps_partial(self) -> bool:
        """Whether a failed run leaves its partial (a resumable job with finished work in its store)."""
        if not self.resumable or not self.partial.is_dir():
            return False
        return any(p.is_dir() and any(p.iterdir()) for p in self.partial.rglob(RESUME))

    def _add_wall_time(self) -> None:
        path = self.partial / BOOKKEEPING / "progress.json"
        try:
            before = float(read_json(path).get("wall_seconds", 0.0)) if path.exists() else 0.0
        except (OSError, ValueError, AttributeError):
            before = 0.0
        write_json(path, {"wall_seconds": before + time.time() - self._start})

    def manifest(self) -> dict:
        path = self.partial / BOOKKEEPING / "progress.json"
        earlier = 0.0
        if path.exists():
            try:
                earlier = float(read_json(path).get("wall_seconds", 0.0))
            except (OSError, ValueError, AttributeError):
                earlier = 0.0
        return {
            "command": sys.argv[:],
            "options": self.request,
            "versions": package_versions(),
            "inputs": self.inputs,
            "started": datetime.datetime.fromtimestamp(self._start, datetime.timezone.utc).isoformat(),
            "resumed": self.resumed,
            "wall_seconds": round(earlier + time.time() - self._start, 3),
            **self.extra,
        }

    def _commit(self) -> None:
        manifest = self.manifest()
        manifest["outputs"] = tree_hashes(self.partial, skip_dirs=(BOOKKEEPING, RESUME))
        write_json(self.partial / MANIFEST, manifest)
        if self.out.exists():
            trash = self.out.with_name(f".{self.out.name}.replaced-{uuid.uuid4().hex[:12]}")
            os.replace(self.out, trash)
            os.replace(self.partial, self.out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.partial, self.out)
        # resume state and bookkeeping go only now, after the commit
        shutil.rmtree(self.out / RESUME, ignore_errors=True)
        shutil.rmtree(self.out / BOOKKEEPING, ignore_errors=True)


def changed_options(before: dict, now: dict) -> list[str]:
    """The names whose values differ between two requests (what a refused resume names)."""
    return sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))


_changed = changed_options


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
