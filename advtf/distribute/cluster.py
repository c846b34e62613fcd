"""Joining a cluster of workers (``TF_CONFIG``) through MultiWorkerMirroredStrategy.

The collective engine of a cluster run is ``tf.distribute``: :func:`connect` builds the
strategy and returns a :class:`advtf.runs.cluster.Cluster` whose ``gather`` is an all-reduce
(each worker fills its own row of a zero matrix; the sum is every worker's row). A barrier is a
gather of one number. Workers never poll files to wait for each other.

Reaching the cluster is bounded in time: every task must register with TensorFlow's
coordination service within ``timeout`` seconds (a worker not started, a wrong address, a
firewall), else a UserError names the addresses that did not answer (one line, exit 2). The
wait happens inside TensorFlow's C++ runtime, which Python cannot interrupt, so the deadline is
TensorFlow's own; a watchdog thread (at twice the timeout) is the last resort.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from contextlib import contextmanager
from typing import Sequence

import numpy as np
import tensorflow as tf

from advtf.distribute.strategy import JOINED, cluster_config
from advtf.errors import UserError
from advtf.runs.cluster import Cluster

DEFAULT_TIMEOUT = 300.0
_CONNECTED: list = []  # (strategy, Cluster) of this process, once joined
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

    A process joins once: later calls (every step of ``advtf reproduce`` on a cluster) return the
    same strategy and Cluster, whose collectives the workers keep calling in the same order.

    Raises:
        UserError: the other workers did not register within ``timeout`` seconds (naming them).
    """
    if _CONNECTED:
        return _CONNECTED[0]
    config = cluster_config()
    if config is None:
        raise UserError("--strategy multiworker needs the TF_CONFIG environment variable describing the cluster")
    index, addresses = worker_place(config)
    others = [a for w, a in enumerate(addresses) if w != index]
    where = addresses[0] if index else ", ".join(others)
    done = threading.Event()

    def give_up():  # a last resort: TensorFlow's own registration deadline below answers first
        if not done.wait(2 * timeout + 30):
            sys.stderr.write(f"error: cannot reach the cluster at {where} within --cluster-timeout {timeout:g} s "
                             f"(this is worker {index}, {addresses[index]}); start every worker of TF_CONFIG, "
                             "check the addresses, or raise --cluster-timeout\n")
            sys.stderr.flush()
            os._exit(2)

    watchdog = threading.Thread(target=give_up, name="advtf-cluster-timeout", daemon=True)
    watchdog.start()
    try:
        try:
            with _registration_timeout(timeout):
                strategy = JOINED[0] if JOINED else tf.distribute.MultiWorkerMirroredStrategy(
                    communication_options=tf.distribute.experimental.CommunicationOptions(
                        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO))
        except _LOST as e:
            missing = _timed_out(str(e), addresses) or where
            raise UserError(f"cannot reach the cluster at {missing} within --cluster-timeout {timeout:g} s (this is "
                            f"worker {index}, {addresses[index]}); start every worker of TF_CONFIG, check the "
                            "addresses, or raise --cluster-timeout") from None
        workers = len(addresses)
        cluster = Cluster(index, workers, lambda values: _gather(strategy, index, workers, values, addresses),
                          addresses)
        cluster.barrier()  # the first collective: every worker is there
    finally:
        done.set()
    if not JOINED:
        JOINED.append(strategy)  # make_strategy("multiworker") hands out this one from now on
    _CONNECTED.append((strategy, cluster))
    return strategy, cluster


@contextmanager
def _registration_timeout(seconds: float):
    """Every task must register with the coordination service within ``seconds``, the chief included.

    MultiWorkerMirroredStrategy configures the service itself, with TensorFlow's default deadline
    (an hour) and without the registration barrier, so a missing worker hangs the chief inside C++
    (holding the GIL: no Python thread can step in). Its configuration call is wrapped for the
    construction only, adding the deadline and the barrier; the task then fails with
    DeadlineExceeded naming the tasks that did not register.
    """
    from tensorflow.python.eager import context  # the strategy's own configuration hook; no public one

    ctx = context.context()
    configure = ctx.configure_coordination_service

    def configured(*args, **kwargs):
        configure(*args, **{**kwargs, "cluster_register_timeout_in_ms": int(seconds * 1000)})
        ctx.coordination_service.cluster_register_with_barrier = True

    ctx.configure_coordination_service = configured
    try:
        yield
    finally:
        del ctx.configure_coordination_service  # back to the class's method


def _timed_out(message: str, addresses: list[str]) -> str:
    """The addresses of the tasks a registration timeout names ("Some timed out task names: ...")."""
    tail = message.partition("timed out task names")[2]
    tasks = sorted({int(t) for t in re.findall(r"task:(\d+)", tail.partition("Additional")[0])})
    return ", ".join(addresses[t] for t in tasks if t < len(addresses))


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
