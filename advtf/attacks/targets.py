"""Target classes for targeted attacks: random-but-different, the next class, or given."""

from __future__ import annotations

import tensorflow as tf

from advtf.attacks.threat import as_seed
from advtf.errors import UserError

TARGET_MODES = ("random", "next", "given")


def choose_targets(y, num_classes: int, mode: str = "random", *, seed=None, given=None) -> tf.Tensor:
    """Target labels (B,) int32 for true labels ``y``.

    Args:
        y: true labels (B,).
        num_classes: K; a targeted attack needs K >= 2.
        mode: ``random`` (uniform over the K-1 classes other than y), ``next`` ((y + 1) mod K,
            Xu et al.'s and Carlini & Wagner's deterministic choice) or ``given``.
        seed: stateless seed (2,), or an int ``s`` (as ``[s, 0]``), for ``random``; a fixed default keeps
            runs reproducible.
        given: ``mode="given"``: one class for all examples, or one per example. Examples whose
            given target equals their label cannot succeed; callers report them separately.

    Raises:
        UserError: fewer than two classes, an unknown mode, or a given class outside 0..K-1.
    """
    if num_classes < 2:
        raise UserError(f"a targeted attack needs at least two classes (the dataset has {num_classes}); "
                        "drop --targeted")
    y = tf.cast(y, tf.int32)
    if mode == "next":
        return (y + 1) % num_classes
    if mode == "random":
        seed = tf.constant([0, 0], tf.int64) if seed is None else as_seed(seed)
        shift = tf.random.stateless_uniform(tf.shape(y), seed, minval=1, maxval=num_classes, dtype=tf.int32)
        return (y + shift) % num_classes
    if mode == "given":
        if given is None:
            raise UserError("target mode 'given' needs target classes; pass --target-class K")
        if isinstance(given, int) and not 0 <= given < num_classes:
            raise UserError(f"target class {given} is outside 0..{num_classes - 1}; pick a class of the dataset")
        return tf.broadcast_to(tf.cast(given, tf.int32), tf.shape(y))
    raise UserError(f"unknown target mode {mode!r}; choose one of: {', '.join(TARGET_MODES)}")
