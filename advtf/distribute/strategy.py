"""Choosing a ``tf.distribute`` strategy (docs/design.md, "Distribution")."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from advtf.errors import UserError

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
# The MultiWorkerMirroredStrategy of this process, once built. A process joins one cluster: a second
# strategy re-enables collective ops after start-up ("may cause error when accessing previously
# created tensors"), so make_strategy and advtf.distribute.cluster.connect hand out this one.
JOINED: list = []


def cluster_config() -> dict | None:
    """``TF_CONFIG`` parsed and checked, or None when it is not set.

    Raises:
        UserError: malformed JSON, no ``cluster`` of address lists, or a ``task`` that is not in it.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    fix = ('set TF_CONFIG to e.g. \'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
           '"task": {"type": "worker", "index": 0}}\' or unset it')
    try:
        config = json.loads(raw)
    except ValueError as e:
        raise UserError(f"TF_CONFIG is not valid JSON ({e.msg} at position {e.pos}); {fix}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster or not all(
            isinstance(v, list) and v and all(isinstance(a, str) and ":" in a for a in v) for v in cluster.values()):
        raise UserError(f"TF_CONFIG has no valid \"cluster\" (lists of host:port per task type); {fix}")
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") not in cluster or not isinstance(task.get("index"), int) \
            or not 0 <= task["index"] < len(cluster[task["type"]]):
        raise UserError(f"TF_CONFIG's \"task\" must name a type and index of its cluster (got {task!r}); {fix}")
    return config


def auto_choice() -> str:
    """What ``--strategy auto`` resolves to on this machine."""
    if cluster_config() is not None:
        return "multiworker"
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return "mirrored"
    return "default"


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The strategy named ``name``.

    ``mirrored`` uses every GPU, or every logical CPU device when there is no GPU (how the
    tests exercise it); ``multiworker`` reads the cluster from ``TF_CONFIG`` and is built once per
    process (:data:`JOINED`).
    """
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    if name == "auto":
        name = auto_choice()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if JOINED:  # this process already joined the cluster (advtf.distribute.cluster.connect): the same one
        return JOINED[0]
    if cluster_config() is None:
        raise UserError("--strategy multiworker needs the TF_CONFIG environment variable describing the cluster")
    comm = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO
    )
    JOINED.append(tf.distribute.MultiWorkerMirroredStrategy(communication_options=comm))
    return JOINED[0]


def is_multiworker(name: str = "auto") -> bool:
    """Whether ``--strategy name`` runs on a cluster (``multiworker``, or ``auto`` under ``TF_CONFIG``)."""
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    return name == "multiworker" or (name == "auto" and auto_choice() == "multiworker")


def single_machine_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """:func:`make_strategy` for per-example jobs that split batches over this machine's devices.

    Under ``multiworker`` each worker of the cluster takes whole chunks (:mod:`advtf.runs.cluster`)
    and splits its batches over its own devices: mirrored over its GPUs when it has several, else
    the default strategy.
    """
    if is_multiworker(name):
        return make_strategy("mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default")
    return make_strategy(name)


def is_chief() -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    config = cluster_config() or {}
    task = config.get("task", {})
    kind, index = task.get("type", "chief"), int(task.get("index", 0))
    has_chief = "chief" in config.get("cluster", {})
    return kind == "chief" or (kind == "worker" and index == 0 and not has_chief)
