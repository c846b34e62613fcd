"""Runs the advtf CLI with a SIGKILL injected at a chosen call: ``python faults.py TARGET N ARGS...``.

``TARGET`` is ``module:function`` or ``module:Class.method``; the process kills itself with SIGKILL (no
clean-up of any kind)
when that function is called for the (N+1)-th time, like a machine that dies at that moment.
"""

import importlib
import os
import signal
import sys


def main() -> None:
    target, after, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    module_name, _, path = target.partition(":")
    owner = importlib.import_module(module_name)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    real, calls = getattr(owner, name), [0]

    def dying(*a, **kw):
        calls[0] += 1
        if calls[0] > after:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **kw)

    setattr(owner, name, dying)
    from advtf.cli.main import main as advtf_main

    advtf_main(args)


if __name__ == "__main__":
    main()
