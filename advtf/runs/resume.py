"""The one resume store: what a resumable job keeps in ``DIR.partial/resume`` until it commits.

Every resumable job (chunked builders, retraining cells, dissection state, training
checkpoints) keeps its finished units of work here under string keys: arrays as ``.npy``
(written aside and renamed; read back memory-mapped, never unpickled), small JSON records,
or a directory of the job's own files. ``resume/done.json`` lists the finished keys and is
rewritten (atomically) only after a unit's files are in place, so a kill at any moment leaves
either the unit finished or not started. The options a resume must match are checked once, by
the run directory (:class:`advtf.runs.RunDir`), not here. The store is removed only after the
run directory is committed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

import numpy as np

from advtf.errors import UserError
from advtf.runs.files import read_json, write_json

RESUME = "resume"
_KEY = re.compile(r"^[A-Za-z0-9_.+=,-]+(/[A-Za-z0-9_.+=,-]+)*$")


class ResumeStore:
    """Finished units of a job under ``<partial>/resume`` (or ``<partial>/resume/<subdirectory>``: one
    worker's own store in a cluster run, so no two processes write one ``done.json``)."""

    def __init__(self, partial: str | os.PathLike, *, subdirectory: str | None = None):
        self.directory = Path(partial) / RESUME / subdirectory if subdirectory else Path(partial) / RESUME
        self._index = self.directory / "done.json"
        try:
            stored = read_json(self._index) if self._index.exists() else {"done": []}
            done = stored["done"]
            if not isinstance(done, list) or not all(isinstance(k, str) for k in done):
                raise TypeError("done is not a list of names")
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"the resume state in {self.directory} is damaged ({e}); "
                            "pass --overwrite to start again") from None
        self._done: list[str] = list(done)

    # -- bookkeeping -------------------------------------------------------------------------
    def is_done(self, key: str) -> bool:
        return key in self._done

    @property
    def done(self) -> list[str]:
        return list(self._done)

    def mark_done(self, key: str) -> None:
        """Records ``key`` as finished (after its files are written)."""
        _check_key(key)
        if key not in self._done:
            self._done.append(key)
            self.directory.mkdir(parents=True, exist_ok=True)
            write_json(self._index, {"done": self._done})

    # -- contents ----------------------------------------------------------------------------
    def path(self, key: str) -> Path:
        """The directory of ``key`` (made on demand), for a job's own files."""
        _check_key(key)
        path = self.directory / key
        path.mkdir(parents=True, exist_ok=True)
        return path

    def save_arrays(self, key: str, arrays: dict[str, np.ndarray], *, done: bool = True) -> None:
        """Writes ``key``'s arrays (each aside, then renamed), then marks it finished."""
        directory = self.path(key)
        for name, value in arrays.items():
            if not name.isidentifier():
                raise ValueError(f"array names must be identifiers, got {name!r}")
            target = directory / f"{name}.npy"
            tmp = directory / f".{name}.tmp.npy"
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(value), allow_pickle=False)
            os.replace(tmp, target)
        if done:
            self.mark_done(key)

    def load_arrays(self, key: str, names: Iterable[str] | None = None, *, mmap: bool = True) -> dict[str, np.ndarray]:
        """``key``'s arrays (memory-mapped by default); UserError when one is missing or unreadable."""
        directory = self.directory / key
        names = list(names) if names is not None else sorted(p.stem for p in directory.glob("*.npy")
                                                             if not p.name.startswith("."))
        out = {}
        for name in names:
            try:
                out[name] = np.load(directory / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise UserError(f"{key}/{name} of the interrupted run is unreadable ({e}); "
                                "pass --overwrite to start again") from None
        return out

    def save_snapshot(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Replaces ``key``'s snapshot (one ``.npz``, written aside and renamed: never half old, half new).

        For state a job overwrites as it goes (running counts and sums), not finished units.
        """
        _check_key(key)
        path = self.directory / f"{key}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    def load_snapshot(self, key: str) -> dict[str, np.ndarray] | None:
        """``key``'s last snapshot, or None when there is none."""
        path = self.directory / f"{key}.npz"
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError) as e:
            raise UserError(f"{path} of the interrupted run is unreadable ({e}); pass --overwrite to start "
                            "again") from None

    def save_record(self, key: str, record: dict, *, done: bool = True) -> None:
        """Writes ``key``'s JSON record, then marks it finished."""
        write_json(self.path(key) / "record.json", record)
        if done:
            self.mark_done(key)

    def load_record(self, key: str) -> dict:
        try:
            return read_json(self.directory / key / "record.json")
        except (OSError, ValueError) as e:
            raise UserError(f"{key} of the interrupted run is unreadable ({e}); "
                            "pass --overwrite to start again") from None


def _check_key(key: str) -> None:
    if not _KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"resume keys are relative names without '..', got {key!r}")
