"""Checks of a dataset's values, for every command: finite pixels in [0, 1], labels in [0, K).

Saved sets are checked by one vectorised pass at load (:func:`check_values`); registered ones inside
their ``tf.data`` pipeline (:func:`checked`), whose failure :func:`data_check_error` turns into the
one-line UserError the CLI prints.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advtf.errors import UserError

DATA_CHECK = "advtf data check"  # prefix of in-pipeline assertion messages (see data_check_error)
_CHECK_BATCH = 1024


def _message(kind: str, what: str, num_classes: int, count: int | None = None, detail: str = "") -> str:
    """The one-line message of a failed check (``finite``, ``range`` or ``label``), naming the fix."""
    n = f"{count} " if count is not None else ""
    if kind == "finite":
        return f"{what}: {n}image(s) contain NaN or inf pixels; fix the source data and re-create the dataset"
    if kind == "range":
        return (f"{what}: {n}image(s) have pixels outside [0, 1]{detail}; "
                "scale images to [0, 1] and re-create the dataset")
    return (f"{what}: {n}label(s) outside [0, {num_classes}) for {num_classes} classes{detail}; "
            "fix the labels and re-create the dataset")


def check_values(ds: tf.data.Dataset, num_classes: int, *, what: str) -> int:
    """One vectorised pass over ``(image, label)`` pairs; returns how many there are.

    For untrusted sets that are read whole anyway (saved datasets, whose files are hashed on
    load): NaN/inf pixels, pixels outside [0, 1] and labels outside ``[0, num_classes)`` each
    end in a UserError that says how many examples are affected.

    Raises:
        UserError: one line naming the problem, its extent and the fix.
    """
    def batch_stats(state, batch):
        x, y = batch
        flat = tf.reshape(x, [tf.shape(x)[0], -1])
        finite = tf.math.is_finite(flat)
        safe = tf.where(finite, flat, 0.5)
        lo, hi = tf.reduce_min(safe, axis=1), tf.reduce_max(safe, axis=1)
        y = tf.cast(y, tf.int64)
        count = lambda mask: tf.reduce_sum(tf.cast(mask, tf.int64))  # noqa: E731
        return {
            "n": state["n"] + tf.cast(tf.shape(y)[0], tf.int64),
            "nonfinite": state["nonfinite"] + count(~tf.reduce_all(finite, axis=1)),
            "outside": state["outside"] + count((lo < 0) | (hi > 1)),
            "lo": tf.minimum(state["lo"], tf.reduce_min(lo)),  # batches are never empty
            "hi": tf.maximum(state["hi"], tf.reduce_max(hi)),
            "bad_labels": state["bad_labels"] + count((y < 0) | (y >= num_classes)),
            "y_lo": tf.minimum(state["y_lo"], tf.reduce_min(y)),
            "y_hi": tf.maximum(state["y_hi"], tf.reduce_max(y)),
        }

    zero = tf.constant(0, tf.int64)
    initial = {"n": zero, "nonfinite": zero, "outside": zero, "lo": tf.constant(np.inf, tf.float32),
               "hi": tf.constant(-np.inf, tf.float32), "bad_labels": zero,
               "y_lo": tf.constant(np.iinfo(np.int64).max, tf.int64),
               "y_hi": tf.constant(np.iinfo(np.int64).min, tf.int64)}
    stats = {k: v.numpy() for k, v in ds.batch(_CHECK_BATCH).reduce(initial, batch_stats).items()}
    if stats["nonfinite"]:
        raise UserError(_message("finite", what, num_classes, stats["nonfinite"]))
    if stats["outside"]:
        raise UserError(_message("range", what, num_classes, stats["outside"],
                                 f" (from {stats['lo']:.4g} to {stats['hi']:.4g})"))
    if stats["bad_labels"]:
        raise UserError(_message("label", what, num_classes, stats["bad_labels"],
                                 f" (labels from {stats['y_lo']} to {stats['y_hi']})"))
    return int(stats["n"])


def checked(ds: tf.data.Dataset, num_classes: int, *, what: str) -> tf.data.Dataset:
    """``ds`` with the checks of :func:`check_values` asserted inside the pipeline.

    For registered datasets, too large to read twice. Fixed-shape elements are checked
    ``_CHECK_BATCH`` at a time with vectorised reductions (batch, assert, unbatch: the order and
    cardinality are kept); others one by one. A failed check raises
    ``tf.errors.InvalidArgumentError`` when the data is iterated; :func:`data_check_error` turns it
    into the UserError it stands for.
    """
    messages = {kind: f"{DATA_CHECK}: {_message(kind, what, num_classes)}" for kind in ("finite", "range", "label")}

    def check(x, y):  # an element or a batch of them
        finite = tf.math.is_finite(x)
        safe = tf.where(finite, x, 0.5)  # NaN/inf are reported by the first assert only
        asserts = [
            tf.debugging.Assert(tf.reduce_all(finite), [messages["finite"]]),
            tf.debugging.Assert((tf.reduce_min(safe) >= 0) & (tf.reduce_max(safe) <= 1),
                                [messages["range"]]),
            tf.debugging.Assert(tf.reduce_all((y >= 0) & (y < num_classes)), [messages["label"]]),
        ]
        with tf.control_dependencies(asserts):
            return tf.identity(x), tf.identity(y)

    if not all(s.shape.is_fully_defined() for s in tf.nest.flatten(ds.element_spec)):
        return ds.map(check, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    cardinality = int(ds.cardinality())
    out = ds.batch(_CHECK_BATCH).map(check, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
    return out.apply(tf.data.experimental.assert_cardinality(cardinality)) if cardinality >= 0 else out


def data_check_error(error: BaseException) -> UserError | None:
    """The UserError a failed in-pipeline check of :func:`checked` stands for; None for other errors."""
    text = str(getattr(error, "message", "") or error)
    start = text.find(f"{DATA_CHECK}: ")
    if not isinstance(error, tf.errors.InvalidArgumentError) or start < 0:
        return None
    line = text[start + len(DATA_CHECK) + 2:].splitlines()[0].rstrip()
    return UserError(line[:-1] if line.endswith("]") else line)  # "]" closes tf.debugging.Assert's data list
