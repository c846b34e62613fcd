"""SIGINT and SIGTERM as an exception a job can unwind through.

A job runs with :func:`interruptible`: the first SIGINT or SIGTERM raises :class:`Interrupted`
in the main thread at the next Python instruction, so the step in flight (a compiled batch)
finishes or is abandoned, the resume state already on disk stays, and the run directory's
exit handling decides what to keep. A second signal while unwinding is ignored, so a
double Ctrl-C cannot cut the clean-up short.
"""

from __future__ import annotations

import contextlib
import signal
import threading

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(BaseException):
    """The job was stopped by a signal; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = EXIT_CODES.get(signum, 128 + signum)


@contextlib.contextmanager
def interruptible():
    """Turns SIGINT/SIGTERM into :class:`Interrupted` for the body (main thread only; else a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum, frame):
        if fired:  # already unwinding
            return
        fired.append(signum)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in EXIT_CODES}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
