"""Running a per-replica function over a dataset and summing what it counts."""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf


def replica_seed(seed: int, step) -> tf.Tensor:
    """A stateless seed distinct per step and replica, so runs and resumes are reproducible."""
    ctx = tf.distribute.get_replica_context()
    replica = ctx.replica_id_in_sync_group if ctx is not None else 0
    return tf.stack([tf.cast(seed, tf.int64) * 7919 + tf.cast(replica, tf.int64), tf.cast(step, tf.int64)])


class BatchSums:
    """Sums the dict of scalars ``replica_fn(x, y, step)`` returns, over replicas and batches.

    The compiled step is built once, so calling this every epoch does not retrace.
    """

    def __init__(self, strategy: tf.distribute.Strategy, replica_fn: Callable):
        self.strategy = strategy

        @tf.function(reduce_retracing=True)
        def step(x, y, i):
            out = strategy.run(replica_fn, args=(x, y, i))
            return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in out.items()}

        self._step = step

    def __call__(self, batches: tf.data.Dataset, *, progress=None, start: int = 0) -> dict[str, float]:
        """Totals over ``batches``; the first is step ``start`` (a chunk of a longer pass: the same seeds)."""
        totals: dict[str, float] = {}
        for i, (x, y) in enumerate(self.strategy.experimental_distribute_dataset(batches), start):
            for k, v in self._step(x, y, tf.constant(i, tf.int64)).items():
                totals[k] = totals.get(k, 0.0) + float(np.asarray(v))
            if progress is not None:
                progress.update(1)
        return totals


def map_replicas(strategy: tf.distribute.Strategy, fn: Callable, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """``fn`` over contiguous shards of a batch, one shard per local replica; outputs concatenated in order.

    For per-example work (robustification, relabeling) on several GPUs of one machine: each
    replica gets ``len / replicas`` examples; ``fn`` returns a tuple of per-example tensors. With
    one replica, ``fn`` simply runs on the whole batch.
    """
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        with strategy.scope():
            return tuple(np.asarray(v) for v in fn(*arrays))
    bounds = np.linspace(0, len(arrays[0]), replicas + 1).astype(int)

    def shard(array):
        def value(ctx):
            i = ctx.replica_id_in_sync_group
            return tf.constant(array[bounds[i]:bounds[i + 1]])
        return strategy.experimental_distribute_values_from_function(value)

    out = strategy.run(fn, args=tuple(shard(a) for a in arrays))
    return tuple(np.concatenate([np.asarray(t) for t in strategy.experimental_local_results(o)]) for o in out)
