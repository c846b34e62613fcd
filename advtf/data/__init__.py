"""Datasets as ``tf.data`` pipelines of ``(image float32 in [0,1] HWC, label int32)``.

Registered names (``fashion_mnist`` default, ``mnist``, ``cifar10``, ``imagenette``,
``imagenet9``, ``digits``) and directories written by advtf commands are both accepted by
:func:`load_dataset`. Nothing large is held in memory: files are streamed and subsets are chosen
by position.

Example::

    splits = load_dataset("fashion_mnist", train_subset=1000, validation=0.1, seed=0)
    train = make_batches(splits.train, 128, training=True, augment=splits.info.natural_images)
"""

from advtf.data.batching import make_batches, split_arrays
from advtf.data.info import DatasetInfo, DataSplits
from advtf.data.loading import load_dataset
from advtf.data.registry import RawSplits, list_datasets, register_dataset
from advtf.data.saved import (
    is_saved_dataset,
    load_saved_elements,
    save_dataset,
    write_saved_dataset,
)

# Importing the loader modules registers their datasets.
from advtf.data import digits, fashion_mnist, imagenet9, tfds_sets  # noqa: E402,F401  isort: skip

__all__ = [
    "DataSplits",
    "DatasetInfo",
    "RawSplits",
    "is_saved_dataset",
    "list_datasets",
    "load_dataset",
    "load_saved_elements",
    "make_batches",
    "register_dataset",
    "save_dataset",
    "split_arrays",
    "write_saved_dataset",
]
