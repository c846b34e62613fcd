"""Random access to a split without holding it in RAM: one ``.npy`` file on disk, read by rows.

Jobs that need example ``i`` out of order (robustify's seed images, relabel's sources) or that
resume at chunk ``c`` (attack) write the split once per run with :func:`split_rows` and read
batches back with :class:`SplitRows`. Images are stored as ``uint8`` when every pixel is exactly
``k / 255`` as the loaders produce it (a quarter of float32), else as float32; either way a read
returns the very float32 bits the ``tf.data`` split yields. Rows are read with ``os.pread``, not
through a memory map: touched pages of a map count in the process's resident memory until it is
unmapped, reads do not.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

IMAGES, LABELS = "images.npy", "labels.npy"
_SCALE = np.float32(255)


def _as_uint8(x: np.ndarray) -> np.ndarray | None:
    """``x`` as uint8 codes ``k`` when every value is bit for bit ``float32(k) / 255``; else None."""
    with np.errstate(invalid="ignore"):  # NaN: not exact, kept as float32
        codes = np.rint(np.clip(x, 0, 1) * _SCALE).astype(np.uint8)
    back = codes.astype(np.float32) / _SCALE
    return codes if np.array_equal(back.view(np.uint32), np.ascontiguousarray(x, np.float32).view(np.uint32)) else None


class SplitRows:
    """A split written by :func:`write_split_rows`: ``len``, ``rows[index]`` (float32 images) and ``labels``."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        path = self.directory / IMAGES
        with open(path, "rb") as f:
            read = np.lib.format.read_array_header_1_0 if np.lib.format.read_magic(f) == (1, 0) \
                else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            self._offset = f.tell()
        if fortran or dtype not in (np.uint8, np.float32):
            raise ValueError(f"{path} is not a C-ordered uint8/float32 array")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._row = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.labels = np.load(self.directory / LABELS, allow_pickle=False)
        if len(self.labels) != self.shape[0]:
            raise ValueError(f"{self.directory}: {self.shape[0]} images but {len(self.labels)} labels")
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)
            self._fd = None

    def __getitem__(self, index) -> np.ndarray:
        """Images at ``index`` (an int array or a slice) as float32 ``[len(index), H, W, C]``."""
        index = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index, np.int64).reshape(-1)
        if len(index) and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"row index out of range [0, {len(self)})")
        out = np.empty((len(index), self._row), np.uint8)
        if len(index) and np.array_equal(index, np.arange(index[0], index[0] + len(index))):
            self._read(index[0], len(index), out)  # one read for a contiguous batch
        else:
            for j, i in enumerate(index):
                self._read(i, 1, out[j:j + 1])
        images = out.view(self.dtype).reshape(len(index), *self.shape[1:])
        return images.astype(np.float32) / _SCALE if self.dtype == np.uint8 else images

    def _read(self, start: int, count: int, out: np.ndarray) -> None:
        view, want, done = memoryview(out).cast("B"), count * self._row, 0
        while done < want:
            got = os.preadv(self._fd, [view[done:want]], self._offset + int(start) * self._row + done)
            if got <= 0:
                raise OSError(f"{self.directory / IMAGES} is truncated")
            done += got


def write_split_rows(ds: tf.data.Dataset, n: int, directory: str | os.PathLike, *,
                     batch_size: int = 1024) -> SplitRows:
    """Writes the ``n`` ``(image, label)`` elements of ``ds`` into ``directory`` and opens them.

    One pass over ``ds``, a batch in memory at a time. Images go in as uint8 while every batch is
    exactly ``k / 255``; a batch that is not restarts the pass in float32. The files appear under
    their final names only when complete.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shape = tuple(tf.nest.flatten(ds.element_spec)[0].shape)
    for dtype in (np.uint8, np.float32):
        tmp = _private_tmp(directory / IMAGES)
        labels, count, exact = np.zeros(n, np.int32), 0, True
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (n, *shape)})
            for x, y in ds.batch(batch_size).prefetch(2):
                x = x.numpy()
                if count + len(x) > n:
                    count += len(x)
                    break
                data = _as_uint8(x) if dtype == np.uint8 else np.ascontiguousarray(x, np.float32)
                if data is None:
                    exact = False
                    break
                f.write(data.tobytes())
                labels[count:count + len(x)] = y.numpy()
                count += len(x)
        if exact and count == n:
            _save(directory / LABELS, labels)
            os.replace(tmp, directory / IMAGES)
            return SplitRows(directory)
        tmp.unlink()
        if exact:
            raise ValueError(f"the split holds {'more than ' if count > n else ''}{count} examples, not the {n} expected")
    raise AssertionError("float32 rows are always exact")  # pragma: no cover


def _private_tmp(path: Path) -> Path:
    """A new, uniquely named file beside ``path`` (``O_EXCL``): the workers of a cluster may write the
    same rows into a directory they share from several hosts, where process ids can coincide."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def _save(path: Path, array: np.ndarray) -> None:
    tmp = _private_tmp(path)
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
    os.replace(tmp, path)


def split_rows(ds: tf.data.Dataset, n: int, directory: str | os.PathLike) -> SplitRows:
    """The split's rows in ``directory``: written once per run, reused when a finished file is there (a resume).

    Jobs keep it in the run's bookkeeping (``DIR.partial/.advtf/rows``): removed at the commit, and
    no finished work of its own, so a run that fails before its first chunk leaves nothing behind.
    """
    if (Path(directory) / IMAGES).is_file():  # renamed into place last: complete
        return SplitRows(directory)
    return write_split_rows(ds, n, directory)
