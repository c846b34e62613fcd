"""``load_dataset``: one entry point for registered names and saved dataset directories."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf

from advtf.data import subsets
from advtf.data.checks import checked
from advtf.data.info import DatasetInfo, DataSplits
from advtf.data.registry import get_entry, is_registered
from advtf.data.saved import is_saved_dataset, read_section, saved_split
from advtf.errors import UserError

SPLITS = ("train", "test")
_MAX_SOURCE_DEPTH = 8  # saved sets made from saved sets ...; guards against cycles


@dataclass
class _Full:
    """Full (unsubsetted) splits of a dataset; a split is None when the dataset lacks it."""

    info: DatasetInfo
    splits: dict[str, tf.data.Dataset | None]
    counts: dict[str, int]
    fingerprint: dict[str, Any]


def load_dataset(
    name_or_dir: str,
    *,
    data_dir: str | None = None,
    image_size: int | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    validation: float | int = 0,
    seed: int = 0,
    download: bool = True,
) -> DataSplits:
    """Loads a registered dataset or a saved dataset directory as unbatched pipelines.

    Args:
        name_or_dir: A registered name (see :func:`list_datasets`) or a directory written by
            an advtf command.
        data_dir: Where to look for the data besides the default locations.
        image_size: Square image size to resize to (default: the dataset's own).
        train_subset: Keep this many training examples, chosen with ``seed``.
        test_subset: Keep this many test examples, chosen with ``seed``.
        validation: Fraction (0 < v < 1) or count of the (subsetted) train split to hold out.
        seed: Seed of the subset and validation choices.
        download: Let tensorflow-datasets download data that is not prepared yet.

    Returns:
        The splits (elements ``(image float32 [0,1] HWC, label int32)``), sizes and fingerprint.

    Raises:
        UserError: Unknown name, missing or corrupt data, or impossible subset sizes.
    """
    full = _full_splits(name_or_dir, data_dir, image_size, download, depth=0)
    train, validation_ds, sizes = _carve(full, "train", train_subset, validation, seed)
    test, _, test_sizes = _carve(full, "test", test_subset, 0, seed)
    sizes["test"] = test_sizes["test"]
    fingerprint = {
        **full.fingerprint,
        "image_shape": list(full.info.image_shape),
        "train_subset": train_subset,
        "test_subset": test_subset,
        "validation": validation,
        "seed": seed,
        "sizes": sizes,
    }
    return DataSplits(full.info, train, validation_ds, test, sizes, fingerprint)


def _carve(
    full: _Full, split: str, subset: int | None, validation: float | int, seed: int
) -> tuple[tf.data.Dataset | None, tf.data.Dataset | None, dict[str, int]]:
    """Applies the seeded subset (and, for train, the validation hold-out) to one split."""
    ds, name = full.splits[split], full.info.name
    sizes = {split: 0, "validation": 0}
    if ds is None:
        if subset is not None or validation:
            raise UserError(f"{name} has no {split} split to take a subset or validation from")
        return None, None, sizes
    what = f"the {name} {split} split"
    codes = subsets.subset_codes(full.counts[split], subset, seed=seed, role=split, what=what)
    held_out = None
    sizes["validation"] = subsets.validation_count(validation, int((codes == subsets.KEEP).sum()))
    if sizes["validation"]:
        codes = subsets.carve_validation(codes, sizes["validation"], seed=seed)
        held_out = subsets.select(ds, codes, subsets.VALIDATION)
    sizes[split] = int((codes == subsets.KEEP).sum())
    return subsets.select(ds, codes, subsets.KEEP), held_out, sizes


def _full_splits(
    name_or_dir: str, data_dir: str | None, image_size: int | None, download: bool, *, depth: int
) -> _Full:
    """Dispatches to the registry or to a saved directory."""
    if is_registered(name_or_dir):
        return _registered(name_or_dir, data_dir, image_size, download)
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        if not is_saved_dataset(path):
            raise UserError(
                f"{path} is a directory but not a saved dataset (no manifest.json with a "
                "'dataset' section); pass a directory written by an advtf command"
            )
        return _saved(path, data_dir, image_size, download, depth=depth)
    if any(sep in str(name_or_dir) for sep in ("/", "\\", "~")) or str(name_or_dir).startswith("."):
        raise UserError(f"dataset directory {name_or_dir} does not exist; check the path")
    return _registered(name_or_dir, data_dir, image_size, download)  # unknown name: UserError


def _registered(name: str, data_dir: str | None, image_size: int | None, download: bool) -> _Full:
    entry = get_entry(name)
    raw = entry.loader(data_dir=data_dir, image_size=image_size, download=download)
    info = DatasetInfo(
        name=name,
        num_classes=len(raw.class_names),
        class_names=tuple(raw.class_names),
        image_shape=tuple(raw.image_shape),  # type: ignore[arg-type]
        mean=tuple(raw.mean),
        std=tuple(raw.std),
        natural_images=entry.natural_images,
        source=raw.source,
    )
    splits: dict[str, tf.data.Dataset | None] = {
        s: checked(raw.splits[s], info.num_classes, what=f"the {name} {s} split") for s in SPLITS
    }
    fingerprint = {"dataset": name, "source": raw.source, "data_dir": data_dir}
    return _Full(info, splits, dict(raw.counts), fingerprint)


def _saved(path: Path, data_dir: str | None, image_size: int | None, download: bool, *, depth: int) -> _Full:
    """A saved dataset; splits it lacks come from ``source["dataset"]`` when it names one."""
    saved = read_section(path)
    info = dataclasses.replace(saved.info(), name=f"saved:{path.resolve().name}", source=str(path))
    height, width, _ = info.image_shape
    if image_size is not None and (image_size, image_size) != (height, width):
        raise UserError(
            f"saved dataset {path} holds {height}x{width} images; drop --image-size or pass {height}"
        )
    splits: dict[str, tf.data.Dataset | None] = {s: None for s in SPLITS}
    counts = {s: 0 for s in SPLITS}
    fingerprint: dict[str, Any] = {
        "dataset": info.name,
        "source": str(path.resolve()),
        "kind": saved.section.get("kind"),
        "manifest_sha256": saved.manifest_sha256,
    }
    for split in SPLITS:
        if split in saved.splits:
            splits[split], counts[split] = saved_split(saved, split)
    missing = [s for s in SPLITS if splits[s] is None]
    if missing and saved.source_dataset:
        if depth >= _MAX_SOURCE_DEPTH:
            raise UserError(f"saved dataset {path} has a source chain deeper than {_MAX_SOURCE_DEPTH}")
        source = _source_location(saved.source_dataset, path)
        size = height if height == width else None
        src = _full_splits(source, data_dir, size, download, depth=depth + 1)
        if tuple(src.info.image_shape) != tuple(info.image_shape):
            raise UserError(
                f"source {source} of {path} has images {src.info.image_shape}, not "
                f"{info.image_shape}; the saved dataset no longer matches its source, re-create it"
            )
        for split in missing:
            splits[split], counts[split] = src.splits[split], src.counts[split]
        fingerprint["filled_from"] = {"splits": missing, **src.fingerprint}
    return _Full(info, splits, counts, fingerprint)


def _source_location(source: str, saved_dir: Path) -> str:
    """A registered name as is; a relative directory tried from the cwd, then beside ``saved_dir``."""
    if is_registered(source) or Path(source).expanduser().is_absolute() or Path(source).exists():
        return source
    beside = saved_dir.parent / source
    return str(beside) if beside.exists() else source


# --- value checks: every command's data passes through one of these two ------------------------
