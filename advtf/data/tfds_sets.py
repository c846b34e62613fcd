"""Datasets read through tensorflow-datasets: cifar10, mnist and imagenette.

Data is looked for in ``data_dir`` (default: tensorflow-datasets' own, ``~/tensorflow_datasets``
or ``$TFDS_DATA_DIR``). When it is not prepared there, tensorflow-datasets downloads it only if
``download`` is true; either failure becomes a :class:`UserError` saying how to get the data.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging as absl_logging

from advtf.data.fashion_mnist import idx_raw_splits
from advtf.data.idx import find_idx_dir
from advtf.data.images import check_size, resize_crop, resize_split, to_float
from advtf.data.registry import RawSplits, register_dataset
from advtf.errors import UserError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silences tensorflow-datasets' "no dataset_info.json" warnings for unprepared data."""
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(verbosity)


def tfds_builder(name: str, tfds_name: str, data_dir: str | None, download: bool) -> Any:
    """Returns a prepared tensorflow-datasets builder, downloading only if ``download``.

    Raises:
        UserError: The data is not prepared and could not (or may not) be downloaded.
    """
    with _quiet():
        builder = tfds.builder(tfds_name, data_dir=data_dir)
    if builder.is_prepared():
        return builder
    message = (
        f"{name} is not in {builder.data_dir}; tensorflow-datasets downloads it on a machine "
        f"with internet (any advtf command there, or `tfds build {tfds_name} --data_dir DIR`), "
        "then pass --data-dir DIR"
    )
    if not download:
        raise UserError(message)
    try:
        builder.download_and_prepare()
    except Exception as e:  # network, missing optional dependency, disk: all user-fixable here
        reason = " ".join(str(e).split())[:200]  # the CLI prints errors on one line
        raise UserError(f"{message} (download failed: {type(e).__name__}: {reason})") from e
    return builder


def tfds_locate(tfds_name: str, data_dir: str | None) -> tuple[bool, str]:
    """Offline availability: is the prepared dataset directory present?"""
    with _quiet():
        builder = tfds.builder(tfds_name, data_dir=data_dir)
    prepared = builder.is_prepared()
    return prepared, str(builder.data_dir) if prepared else f"not in {builder.data_dir}"


def tfds_split(builder: Any, split: str, **kwargs: Any) -> tuple[tf.data.Dataset, int]:
    """Reads one split in its fixed on-disk order; returns it with its exact size."""
    ds = builder.as_dataset(split=split, shuffle_files=False, **kwargs)
    count = int(ds.cardinality())
    if count < 0:
        count = int(builder.info.splits[split].num_examples)
    return ds, count


def tfds_raw_splits(
    name: str,
    tfds_name: str,
    *,
    data_dir: str | None,
    download: bool,
    image_size: int | None,
    class_names: tuple[str, ...],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    test_split: str = "test",
) -> RawSplits:
    """Loads a fixed-shape image-classification dataset from tensorflow-datasets."""
    check_size(image_size)
    builder = tfds_builder(name, tfds_name, data_dir, download)
    splits, counts, shape = {}, {}, None
    for split, tfds_split_name in (("train", "train"), ("test", test_split)):
        ds, counts[split] = tfds_split(builder, tfds_split_name, as_supervised=True)
        ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
        native = tuple(int(d) for d in ds.element_spec[0].shape)
        splits[split], shape = resize_split(ds, native, image_size)
    return RawSplits(
        splits=splits,
        counts=counts,
        class_names=class_names,
        image_shape=shape,
        mean=mean,
        std=std,
        source=f"tfds:{builder.info.full_name}",
    )


CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


@register_dataset(
    "cifar10",
    description="CIFAR-10: 60k 32x32 colour images, 10 classes (tensorflow-datasets)",
    natural_images=True,
    locate=lambda data_dir: tfds_locate("cifar10", data_dir),
)
def load_cifar10(*, data_dir: str | None, image_size: int | None, download: bool) -> RawSplits:
    """CIFAR-10 from tensorflow-datasets."""
    return tfds_raw_splits(
        "cifar10", "cifar10", data_dir=data_dir, download=download, image_size=image_size,
        class_names=CIFAR10_CLASSES,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
    )  # fmt: skip


MNIST_CLASSES = tuple(str(d) for d in range(10))
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


def _mnist_idx_dir(data_dir: str | None) -> Path | None:
    if not data_dir:
        return None
    root = Path(data_dir).expanduser()
    return find_idx_dir([root, root / "mnist"])


def _locate_mnist(data_dir: str | None) -> tuple[bool, str]:
    found = _mnist_idx_dir(data_dir)
    return (True, str(found)) if found else tfds_locate("mnist", data_dir)


@register_dataset(
    "mnist",
    description="MNIST: 70k 28x28 grayscale digits (idx files in --data-dir, else tensorflow-datasets)",
    natural_images=False,
    locate=_locate_mnist,
)
def load_mnist(*, data_dir: str | None, image_size: int | None, download: bool) -> RawSplits:
    """MNIST from idx files in ``data_dir`` (or ``data_dir/mnist``), else tensorflow-datasets."""
    found = _mnist_idx_dir(data_dir)
    if found:
        return idx_raw_splits(found, image_size, MNIST_CLASSES, MNIST_MEAN, MNIST_STD)
    return tfds_raw_splits(
        "mnist", "mnist", data_dir=data_dir, download=download, image_size=image_size,
        class_names=MNIST_CLASSES, mean=MNIST_MEAN, std=MNIST_STD,
    )  # fmt: skip


# tfds label order: sorted WordNet ids n01440764 ... n03888257.
IMAGENETTE_CLASSES = (
    "tench", "English springer", "cassette player", "chain saw", "church",
    "French horn", "garbage truck", "gas pump", "golf ball", "parachute",
)  # fmt: skip
IMAGENETTE = "imagenette/320px-v2"


@register_dataset(
    "imagenette",
    description="Imagenette: 10 easy ImageNet classes, 320px source resized to 160 (tensorflow-datasets)",
    natural_images=True,
    locate=lambda data_dir: tfds_locate(IMAGENETTE, data_dir),
)
def load_imagenette(*, data_dir: str | None, image_size: int | None, download: bool) -> RawSplits:
    """Imagenette; shorter side scaled to ``image_size`` (default 160), centre square kept.

    The test split is tensorflow-datasets' ``validation`` split (Imagenette has no other).
    """
    check_size(image_size)
    size = image_size or 160
    builder = tfds_builder("imagenette", IMAGENETTE, data_dir, download)
    splits, counts = {}, {}
    for split, tfds_split_name in (("train", "train"), ("test", "validation")):
        ds, counts[split] = tfds_split(builder, tfds_split_name, as_supervised=True)
        splits[split] = ds.map(
            lambda x, y: (resize_crop(to_float(x, y)[0], size), tf.cast(y, tf.int32)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return RawSplits(
        splits=splits,
        counts=counts,
        class_names=IMAGENETTE_CLASSES,
        image_shape=(size, size, 3),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        source=f"tfds:{builder.info.full_name}",
    )
