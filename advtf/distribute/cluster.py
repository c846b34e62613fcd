"""Joining a cluster of workers (``TF_CONFIG``) through MultiWorkerMirroredStrategy.

The collective engine of a cluster run is ``tf.distribute``: :func:`connect` builds the
strategy and returns a :class:`advtf.runs.cluster.Cluster` whose ``gather`` is an all-reduce
(each worker fills its own row of a zero matrix; the sum is every worker's row). A barrier is a
gather of one number. Workers never poll files to wait for each other.

Reaching the cluster is bounded in time: if the strategy cannot be built and its first
collective does not return within ``timeout`` seconds (a worker not started, a wrong address, a
firewall), the process prints one line naming the address and exits 2. The wait happens inside
TensorFlow's C++ runtime, which Python cannot interrupt, so a watchdog thread ends the process.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from typing import Sequence

import numpy as np
import tensorflow as tf

from advtf.distribute.strategy import cluster_config
from advtf.errors import UserError
from advtf.runs.cluster import Cluster

DEFAULT_TIMEOUT = 300.0
_LOST = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
         tf.errors.CancelledError, tf.errors.InternalError)


def worker_place(config: dict) -> tuple[int, list[str]]:
    """This task's worker index (the chief first) and every worker's address, from a checked TF_CONFIG."""
    cluster = config["cluster"]
    addresses = list(cluster.get("chief", [])) + list(cluster.get("worker", []))
    task = config["task"]
    offset = len(cluster.get("chief", [])) if task["type"] == "worker" else 0
    if task["type"] not in ("chief", "worker"):
        raise UserError(f"TF_CONFIG's task type {task['type']!r} cannot run a job; use \"chief\" or \"worker\"")
    return offset + int(task["index"]), addresses


def connect(timeout: float = DEFAULT_TIMEOUT) -> tuple[tf.distribute.MultiWorkerMirroredStrategy, Cluster]:
    """The cluster of ``TF_CONFIG`` joined: its strategy and this process's :class:`Cluster`.

    Exits the process with status 2 and one line on stderr when the cluster is not reached
    within ``timeout`` seconds.
    """
    config = cluster_config()
    if config is None:
        raise UserError("--strategy multiworker needs the TF_CONFIG environment variable describing the cluster")
    index, addresses = worker_place(config)
    others = [a for w, a in enumerate(addresses) if w != index]
    where = addresses[0] if index else ", ".join(others)
    done = threading.Event()

    def give_up():
        if not done.wait(timeout):
            sys.stderr.write(f"error: cannot reach the cluster at {where} within --cluster-timeout {timeout:g} s "
                             f"(this is worker {index}, {addresses[index]}); start every worker of TF_CONFIG, "
                             "check the addresses, or raise --cluster-timeout\n")
            sys.stderr.flush()
            os._exit(2)

    watchdog = threading.Thread(target=give_up, name="advtf-cluster-timeout", daemon=True)
    watchdog.start()
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=tf.distribute.experimental.CommunicationImplementation.AUTO))
        workers = len(addresses)
        cluster = Cluster(index, workers, lambda values: _gather(strategy, index, workers, values, addresses),
                          addresses)
        cluster.barrier()  # the first collective: every worker is there
    finally:
        done.set()
    return strategy, cluster


def _gather(strategy, index: int, workers: int, values: Sequence[int], addresses: list[str]) -> list[list[int]]:
    """Every worker's ``values`` (an all-reduce of a matrix where each worker fills its own row)."""
    row = np.zeros((workers, max(len(values), 1)), np.int64)
    row[index, :len(values)] = values
    local = strategy.extended.worker_devices
    first = index * len(local)

    def value(ctx):  # only this worker's first local replica contributes its row
        mine = ctx.replica_id_in_sync_group == first
        return tf.constant(row if mine else np.zeros_like(row))

    try:
        total = strategy.reduce(tf.distribute.ReduceOp.SUM,
                                strategy.experimental_distribute_values_from_function(value), axis=None)
    except _LOST as e:
        raise lost_worker(e, addresses) from None
    return np.asarray(total).astype(np.int64).tolist()


def lost_worker(error: Exception, addresses: list[str]) -> UserError:
    """A collective that failed because a worker stopped, as one line naming it (every worker reruns)."""
    text = str(error)
    unhealthy = text.partition("unhealthy")[2] or text  # "...tasks are unhealthy ...: /job:worker/.../task:1"
    tasks = sorted({int(t) for t in re.findall(r"task:(\d+)", unhealthy.partition("The tasks have crashed")[0])})
    named = ", ".join(f"worker {t} ({addresses[t]})" for t in tasks if t < len(addresses)) or "a worker"
    e = UserError(f"lost {named} of the cluster; finished chunks are kept: run every worker again with --resume")
    e.cluster_agreed = True  # nobody is left to exchange a last word with
    return e
