"""MultiWorkerMirroredStrategy with two worker processes on 127.0.0.1 (bounded in time)."""

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("multiworker_worker.py")


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_identical_weights(tmp_path):
    ports = free_ports(2)
    outs = [tmp_path / f"worker{i}.npz" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(ports[0]), str(ports[1]), str(i), str(outs[i])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        logs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, logs):
        assert p.returncode == 0, err[-3000:]
    assert '"chief": true' in logs[0][0] and '"chief": false' in logs[1][0]
    with np.load(outs[0], allow_pickle=False) as a, np.load(outs[1], allow_pickle=False) as b:
        assert a.files == b.files and len(a.files) > 0
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])
