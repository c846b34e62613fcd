"""The ``--out`` lock: one process writes a run directory at a time.

The lock is ``DIR.lock`` beside the run directory, held with ``flock`` for the life of the job.
The kernel releases it when the holder dies, however it dies, so a lock file left by a killed
process is stale by construction and is taken over without asking. The file records the holder's
pid and host for the message a second process prints.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

from advtf.errors import UserError


class OutLock:
    """An exclusive, non-blocking lock on a run directory (``DIR.lock``); use as a context manager."""

    def __init__(self, out: str | os.PathLike):
        out = Path(out)
        self.path = out.with_name(out.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Takes the lock or raises UserError naming the process that holds it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise UserError(f"another advtf process{holder} is writing {self.path.with_suffix('')}; "
                                "wait for it to finish or choose another --out") from None
            # The holder before us may have unlinked the file between our open and our flock:
            # then we hold a lock on a file nobody else will see; try again on the new one.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self._fd = fd

    def release(self) -> None:
        """Removes the lock file and releases the lock (in that order, so no one locks a dead file)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> bool:
        self.release()
        return False


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f" (pid {int(holder['pid'])} on {holder['host']})"
    except (ValueError, KeyError, TypeError, OSError):
        return ""
