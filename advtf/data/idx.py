"""Streaming reader for the idx files of MNIST and Fashion-MNIST (gzipped or plain).

The header is validated with a few bytes read through :mod:`gzip` + numpy; the records are
then streamed with ``tf.data.FixedLengthRecordDataset``, so nothing large is held in memory.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from advtf.errors import UserError

IMAGES_MAGIC = 2051  # unsigned bytes, 3 dimensions (count, rows, cols)
LABELS_MAGIC = 2049  # unsigned bytes, 1 dimension (count)
_GZIP_MAGIC = b"\x1f\x8b"

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class IdxHeader:
    """The parsed header of an idx file of unsigned bytes."""

    dims: tuple[int, ...]
    header_bytes: int
    gzipped: bool

    @property
    def count(self) -> int:
        return self.dims[0]

    @property
    def record_bytes(self) -> int:
        return int(np.prod(self.dims[1:], dtype=np.int64)) if len(self.dims) > 1 else 1


def _is_gzipped(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _payload_size(path: Path, gzipped: bool) -> int:
    """Uncompressed size; for gzip the trailer's ISIZE field (size modulo 2**32)."""
    if not gzipped:
        return path.stat().st_size
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        return int(np.frombuffer(f.read(4), dtype="<u4")[0])


def read_idx_header(path: str | os.PathLike, magic: int) -> IdxHeader:
    """Reads and validates the header of an idx file of unsigned bytes.

    Args:
        path: The file, gzipped or plain (detected from its first bytes).
        magic: Expected magic number, :data:`IMAGES_MAGIC` or :data:`LABELS_MAGIC`.

    Raises:
        UserError: The file is unreadable, has the wrong magic, or its size disagrees with
            the dimensions in its header (truncated or corrupt).
    """
    path = Path(path)
    fix = "re-download it or pass --data-dir DIR holding intact idx files"
    try:
        gzipped = _is_gzipped(path)
        opener = gzip.open if gzipped else open
        ndim = magic & 0xFF
        with opener(path, "rb") as f:
            raw = f.read(4 + 4 * ndim)
        size = _payload_size(path, gzipped)
    except (OSError, EOFError) as e:
        raise UserError(f"cannot read idx file {path} ({e}); {fix}") from e
    if len(raw) < 4 + 4 * ndim:
        raise UserError(f"idx file {path} is truncated (header incomplete); {fix}")
    found, *dims = np.frombuffer(raw, dtype=">i4").tolist()
    if found != magic:
        raise UserError(f"idx file {path} has magic number {found}, expected {magic}; {fix}")
    header = IdxHeader(dims=tuple(dims), header_bytes=len(raw), gzipped=gzipped)
    expected = header.header_bytes + header.count * header.record_bytes
    if min(dims) <= 0 or size != expected % 2**32:
        raise UserError(
            f"idx file {path} holds {size} bytes but its header {dims} implies {expected}; {fix}"
        )
    return header


def find_idx_file(directory: Path, stem: str) -> Path | None:
    """Returns ``directory/stem.gz`` or ``directory/stem``, whichever exists first."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def find_idx_dir(directories: list[Path]) -> Path | None:
    """Returns the first directory holding all four idx files (gzipped or plain)."""
    stems = [stem for pair in IDX_FILES.values() for stem in pair]
    for d in directories:
        if d.is_dir() and all(find_idx_file(d, s) for s in stems):
            return d
    return None


def idx_split(directory: Path, split: str) -> tuple[tf.data.Dataset, int, tuple[int, int, int]]:
    """Streams one split of an idx directory as ``(image float32 [0,1] HxWx1, label int32)``.

    Returns:
        The dataset (known cardinality), its number of examples and the image shape.

    Raises:
        UserError: A file is missing or corrupt, or images and labels disagree in count.
    """
    image_stem, label_stem = IDX_FILES[split]
    image_path, label_path = find_idx_file(directory, image_stem), find_idx_file(directory, label_stem)
    if image_path is None or label_path is None:
        raise UserError(f"idx files for {split} are missing in {directory}; pass --data-dir DIR holding them")
    images = read_idx_header(image_path, IMAGES_MAGIC)
    labels = read_idx_header(label_path, LABELS_MAGIC)
    if images.count != labels.count:
        raise UserError(
            f"{image_path} holds {images.count} images but {label_path} holds {labels.count} "
            "labels; re-download the idx files"
        )
    height, width = images.dims[1:]

    def records(path: Path, header: IdxHeader) -> tf.data.Dataset:
        return tf.data.FixedLengthRecordDataset(
            str(path),
            record_bytes=header.record_bytes,
            header_bytes=header.header_bytes,
            compression_type="GZIP" if header.gzipped else "",
        )

    def decode(image_bytes: tf.Tensor, label_bytes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # A chunk of records at once: about 3x faster than decoding element by element.
        images = tf.reshape(tf.io.decode_raw(image_bytes, tf.uint8), (-1, height, width, 1))
        labels = tf.reshape(tf.cast(tf.io.decode_raw(label_bytes, tf.uint8), tf.int32), (-1,))
        return tf.cast(images, tf.float32) / 255.0, labels

    ds = tf.data.Dataset.zip(records(image_path, images), records(label_path, labels))
    ds = ds.batch(1024).map(decode, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    ds = ds.apply(tf.data.experimental.assert_cardinality(images.count))
    return ds, images.count, (height, width, 1)
