"""Registry from dataset name to a short loader factory, plus offline availability listing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import tensorflow as tf

from advtf.registry import Registry


@dataclass(frozen=True)
class RawSplits:
    """What a registered loader returns: the full train and test splits and their metadata.

    Attributes:
        splits: ``{"train": ds, "test": ds}``, unbatched ``(image float32 [0,1] HWC, label int32)``
            in a fixed source order (subsets are chosen by position in it).
        counts: Exact number of examples of each split.
        class_names: Class names in label order.
        image_shape: ``(H, W, C)`` of every image.
        mean: Per-channel mean in pixel units.
        std: Per-channel std in pixel units.
        source: Where the data was read from.
    """

    splits: dict[str, tf.data.Dataset]
    counts: dict[str, int]
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str


class Loader(Protocol):
    """A registered factory: reads the dataset, without downloading unless ``download``."""

    def __call__(
        self, *, data_dir: str | None, image_size: int | None, download: bool
    ) -> RawSplits: ...


Locator = Callable[[str | None], tuple[bool, str]]
"""Answers offline ``(available, where)`` for a ``data_dir``; never downloads."""


@dataclass(frozen=True)
class DatasetEntry:
    """One registered dataset."""

    name: str
    description: str
    natural_images: bool
    loader: Loader
    locate: Locator | None


DATASETS: Registry[DatasetEntry] = Registry(
    "dataset", "see `advtf datasets`, or pass a directory written by an advtf command")


def register_dataset(
    name: str, *, description: str, natural_images: bool, locate: Locator | None = None
) -> Callable[[Loader], Loader]:
    """Registers a loader factory under ``name`` (use as a decorator).

    Args:
        name: The name users pass as ``--dataset``.
        description: One line shown by ``advtf datasets``.
        natural_images: Whether crop + flip augmentation is the sensible default.
        locate: Optional offline check ``data_dir -> (available, where)`` for listing.
    """

    def decorate(loader: Loader) -> Loader:
        DATASETS.register(name, DatasetEntry(name, description, natural_images, loader, locate))
        return loader

    return decorate


def registered_names() -> list[str]:
    """Names of all registered datasets, sorted."""
    return sorted(DATASETS)


def is_registered(name: str) -> bool:
    """True when ``name`` is a registered dataset."""
    return name in DATASETS


def get_entry(name: str) -> DatasetEntry:
    """Returns the entry for ``name``.

    Raises:
        UserError: ``name`` is not registered.
    """
    return DATASETS.get(name)


def list_datasets(data_dir: str | None = None) -> list[dict]:
    """Lists registered datasets and whether their files are present (checked offline).

    Args:
        data_dir: The ``--data-dir`` to look in besides the default locations.

    Returns:
        ``[{"name", "description", "available", "where"}]`` sorted by name.
    """
    rows = []
    for name in registered_names():
        entry = DATASETS.get(name)
        available, where = entry.locate(data_dir) if entry.locate else (True, "built in")
        rows.append(
            {
                "name": name,
                "description": entry.description,
                "available": bool(available),
                "where": where,
            }
        )
    return rows
