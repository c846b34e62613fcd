"""Fixtures for the advtf.data tests: tiny idx files and a registered index-labelled dataset."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from advtf.data import registry
from advtf.data.idx import IDX_FILES
from advtf.data.registry import RawSplits, register_dataset


def write_idx(path: Path, array: np.ndarray, *, gz: bool, magic: int | None = None) -> Path:
    """Writes ``array`` (uint8) as an idx file; ``magic`` overrides the real one (corruption)."""
    magic = magic if magic is not None else 0x0800 + array.ndim
    payload = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    payload += array.astype(np.uint8).tobytes()
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


@pytest.fixture
def make_idx():
    """Factory writing four idx files (default 5 train / 3 test images of 4x3) into a directory."""
    return make_idx_dir


@pytest.fixture
def idx_writer():
    """The raw idx writer, for corrupt files."""
    return write_idx


def make_idx_dir(directory: Path, *, gz: bool, n_train: int = 5, n_test: int = 3) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        images_stem, labels_stem = IDX_FILES[split]
        write_idx(directory / images_stem, rng.integers(0, 256, (n, 4, 3)), gz=gz)
        write_idx(directory / labels_stem, rng.integers(0, 10, (n,)), gz=gz)
    return directory


@pytest.fixture
def indexed(monkeypatch):
    """Registers ``indexed``: 200 train / 50 test examples whose label is their position."""
    monkeypatch.setattr(registry, "DATASETS", registry.DATASETS.copy())

    def split(n: int, offset: int) -> tf.data.Dataset:
        labels = np.arange(n, dtype=np.int32) + offset
        images = np.broadcast_to((labels % 256 / 255.0).astype(np.float32)[:, None, None, None], (n, 4, 4, 1))
        return tf.data.Dataset.from_tensor_slices((images, labels))

    @register_dataset("indexed", description="test data", natural_images=False)
    def load(*, data_dir, image_size, download):
        return RawSplits(
            splits={"train": split(200, 0), "test": split(50, 1000)},
            counts={"train": 200, "test": 50},
            class_names=tuple(str(i) for i in range(1050)),
            image_shape=(4, 4, 1),
            mean=(0.5,),
            std=(0.25,),
            source="memory",
        )

    return "indexed"
