"""Seeded subsets and train/validation partitions that never materialise a dataset.

Positions are chosen with numpy over the split's known size, then the stream is filtered by
position (``enumerate`` + ``tf.gather`` on a constant code array), so the kept examples stay in
source order. Each role draws from its own stream ``np.random.default_rng([seed, role])``
(train 0, test 1, validation 2), so changing ``--test-subset`` never changes the train subset.
"""

from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf

from advtf.errors import UserError

DROP, KEEP, VALIDATION = 0, 1, 2
ROLES = {"train": 0, "test": 1, "validation": 2}


def _rng(seed: int, role: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), ROLES[role]])


def subset_codes(n: int, subset: int | None, *, seed: int, role: str, what: str) -> np.ndarray:
    """Codes (KEEP or DROP) per position for a seeded subset of ``subset`` out of ``n``.

    Args:
        n: Size of the split.
        subset: How many to keep; None keeps all.
        seed: The run's seed.
        role: ``"train"`` or ``"test"`` (selects an independent random stream).
        what: Name used in error messages, e.g. ``"cifar10 train"``.

    Raises:
        UserError: ``subset`` is not a positive integer no larger than ``n``.
    """
    codes = np.full(n, KEEP, dtype=np.int8)
    if subset is None:
        return codes
    option = f"--{role}-subset"
    if isinstance(subset, bool) or not isinstance(subset, numbers.Integral) or subset < 1:
        raise UserError(f"{option} must be a positive integer, got {subset!r}")
    if subset > n:
        raise UserError(f"{option} {subset} exceeds the {n} examples of {what}; pass at most {n}")
    codes[:] = DROP
    codes[_rng(seed, role).choice(n, size=int(subset), replace=False)] = KEEP
    return codes


def validation_count(validation: float | int, n_train: int) -> int:
    """Number of validation examples for a fraction (0 < v < 1) or a count (v >= 1).

    Raises:
        UserError: The value is negative, fractional above 1, or leaves no training example.
    """
    if isinstance(validation, bool) or not isinstance(validation, numbers.Real) or validation < 0:
        raise UserError(f"--validation must be a fraction in (0, 1) or a count, got {validation!r}")
    if validation == 0:
        return 0
    if validation < 1:
        count = max(1, int(round(float(validation) * n_train)))
    elif float(validation).is_integer():
        count = int(validation)
    else:
        raise UserError(f"--validation {validation} is neither a fraction in (0, 1) nor a count")
    if count >= n_train:
        raise UserError(
            f"--validation {validation} leaves no training examples out of {n_train}; pass less"
        )
    return count


def carve_validation(codes: np.ndarray, count: int, *, seed: int) -> np.ndarray:
    """Marks ``count`` of the KEEP positions as VALIDATION, chosen with the seed."""
    codes = codes.copy()
    kept = np.flatnonzero(codes == KEEP)
    codes[kept[_rng(seed, "validation").choice(len(kept), size=count, replace=False)]] = VALIDATION
    return codes


def select(ds: tf.data.Dataset, codes: np.ndarray, code: int, *, chunk: int = 1024) -> tf.data.Dataset:
    """The elements of ``ds`` whose position has ``code``, in order, with known cardinality.

    ``codes`` must have one entry per element of ``ds``. When every position matches, ``ds`` is
    returned unchanged. Fixed-shape elements are filtered ``chunk`` at a time (vectorised,
    about 3x faster than per element); others one by one.
    """
    count = int(np.count_nonzero(codes == code))
    if count == len(codes):
        return ds
    wanted = tf.constant(codes == code)
    fixed = all(s.shape.is_fully_defined() for s in tf.nest.flatten(ds.element_spec))

    def keep_chunk(positions: tf.Tensor, elements: object) -> object:
        mask = tf.gather(wanted, positions)
        return tf.nest.map_structure(lambda t: tf.boolean_mask(t, mask), elements)

    def keep_one(position: tf.Tensor, element: object) -> tf.Tensor:
        return tf.gather(wanted, position)

    def drop_position(position: tf.Tensor, element: object) -> object:
        return element

    if fixed:
        ds = ds.enumerate().batch(chunk).map(keep_chunk, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    else:
        ds = ds.enumerate().filter(keep_one).map(drop_position)
    return ds.apply(tf.data.experimental.assert_cardinality(count))
