"""The step loop of the long attacks: a while loop running a fixed block of steps per iteration.

C&W, EAD, Str and APGD run 100 to 10,000 iterations inside one compiled graph. With one step
per ``tf.while_loop`` iteration, a fresh trace on CPU sometimes ran about 1.5x slower for its
whole life (benchmarks/RESULTS.md, "Loop form" and "Long attacks"); Python-unrolled loops never
did. :func:`blocked_loop` unrolls ``unroll`` steps inside the while body (the graph grows by
``unroll`` steps, not by the step count) and runs the remainder one step per iteration, so the
step count stays a tensor (no retrace when it changes) and the arithmetic is the same, step for
step, as the one-step loop.
"""

from __future__ import annotations

import contextlib

import tensorflow as tf

# Steps per while-loop iteration (benchmarks/RESULTS.md, "Long attacks", chose it).
UNROLL = 10

_forced_unroll = None  # set by forced_unroll()


@contextlib.contextmanager
def forced_unroll(unroll: int):
    """Within the block, :func:`blocked_loop` traces with ``unroll`` whatever its caller passes.

    For tests that trace the attacks many times (a new model per example): tracing cost grows
    with ``unroll`` while the results do not change (tests/attacks/test_loop_forms.py checks the
    blocked loop is bit-identical for every unroll). Only new traces are affected: a trace made
    inside keeps its unroll after the block (tf.function caches it).
    """
    global _forced_unroll
    if int(unroll) < 1:
        raise ValueError(f"unroll must be >= 1 (got {unroll})")
    previous, _forced_unroll = _forced_unroll, int(unroll)
    try:
        yield
    finally:
        _forced_unroll = previous


def blocked_loop(n, step, state, unroll: int = UNROLL, active=None):
    """``for i in range(n): state = step(i, state)`` as while loops of ``unroll`` steps per iteration.

    Args:
        n: number of steps (int32 scalar tensor or int).
        step: ``(i, state) -> state`` (same structure, shapes and dtypes), ``i`` an int32 scalar.
        state: a nested structure of tensors.
        unroll: steps per iteration of the main loop (Python int >= 1; 1 is the plain loop);
            :func:`forced_unroll` overrides it.
        active: optional ``state -> bool scalar``; the loop stops before the first step at which it
            is false (C&W's early abort). Inside a block, steps after it turned false leave the
            state unchanged (``tf.cond``), so the result equals the one-step loop's.

    Returns:
        The state after the steps.
    """
    n = tf.convert_to_tensor(n, tf.int32)
    unroll = int(unroll if _forced_unroll is None else _forced_unroll)

    def go(i, s):
        return tf.constant(True) if active is None else active(s)

    def one(i, s):
        return i + 1, step(i, s)

    i = tf.constant(0)
    if unroll > 1:
        def block(i, s):
            for j in range(unroll):
                if active is None or j == 0:
                    s = step(i + j, s)  # the loop condition checked `active` before the first step
                else:
                    s = tf.cond(active(s), lambda s=s, j=j: step(i + j, s), lambda s=s: s)
            return i + unroll, s

        i, state = tf.while_loop(lambda i, s: tf.logical_and(i + unroll <= n, go(i, s)), block, (i, state))
    _, state = tf.while_loop(lambda i, s: tf.logical_and(i < n, go(i, s)), one, (i, state))
    return state
