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

    def __call__(self, batches: tf.data.Dataset, *, progress=None) -> dict[str, float]:
        totals: dict[str, float] = {}
        for i, (x, y) in enumerate(self.strategy.experimental_distribute_dataset(batches)):
            for k, v in self._step(x, y, tf.constant(i, tf.int64)).items():
                totals[k] = totals.get(k, 0.0) + float(np.asarray(v))
            if progress is not None:
                progress.update(1)
        return totals
