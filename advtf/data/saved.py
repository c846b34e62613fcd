"""Saved datasets: directories written by advtf commands (adversarial, robustified, relabeled).

Layout::

    <dir>/manifest.json      {"dataset": <section returned by save_dataset>, ...other run keys}
    <dir>/<split>/           one tf.data.Dataset.save directory per split, a single shard

Elements are dicts with at least ``"image"`` (float32 HWC in [0, 1]) and ``"label"`` (int32);
extra fields (``"target"``, ``"success"``, ...) are kept. Every file is listed with its sha256
and verified on load; manifest paths may not point outside the directory.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf

from advtf.data.info import DatasetInfo
from advtf.errors import UserError

FORMAT = "tf.data.Dataset.save"
MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): _sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _spec_json(spec: dict[str, tf.TensorSpec]) -> dict[str, dict]:
    return {k: {"shape": s.shape.as_list(), "dtype": s.dtype.name} for k, s in spec.items()}


def _check_elements(split: str, spec: Any) -> None:
    """Raises ValueError (a caller bug) unless elements are dicts with image and label."""
    if not isinstance(spec, dict) or "image" not in spec or "label" not in spec:
        raise ValueError(f"split {split!r}: elements must be dicts with 'image' and 'label'")
    if spec["image"].dtype != tf.float32 or spec["image"].shape.rank != 3:
        raise ValueError(f"split {split!r}: 'image' must be float32 HWC, got {spec['image']}")
    if spec["label"].dtype != tf.int32 or spec["label"].shape.rank != 0:
        raise ValueError(f"split {split!r}: 'label' must be a scalar int32, got {spec['label']}")


def save_dataset(
    directory: str | Path,
    splits: dict[str, tf.data.Dataset],
    *,
    kind: str,
    info: DatasetInfo,
    source: dict[str, Any],
    parameters: dict[str, Any],
) -> dict[str, Any]:
    """Writes each split into ``directory/<split>`` and returns the manifest section.

    Args:
        directory: An existing directory (the caller handles temporary dirs and renames).
        splits: Split name -> dataset of dict elements (see module docstring).
        kind: ``"adversarial"``, ``"robustified"``, ``"relabeled"``, ...
        info: Metadata of the images (usually the source dataset's info).
        source: Where the data came from; ``source["dataset"]`` (a registered name or a saved
            directory) supplies the splits this set lacks when it is loaded.
        parameters: The parameters that produced it, for the record.

    Returns:
        The section the caller stores under ``"dataset"`` in ``manifest.json``.
    """
    directory = Path(directory)
    entries = {}
    for split, ds in splits.items():
        if not split.isidentifier():
            raise ValueError(f"split names must be simple identifiers, got {split!r}")
        _check_elements(split, ds.element_spec)
        path = directory / split
        if path.exists():
            raise ValueError(f"{path} already exists; save into a fresh directory")
        ds.save(str(path), shard_func=lambda element: tf.constant(0, tf.int64))
        entries[split] = {
            "path": split,
            "count": int(tf.data.Dataset.load(str(path)).cardinality()),
            "element_spec": _spec_json(ds.element_spec),
            "sha256": _hash_tree(path),
        }
    return {
        "kind": kind,
        "splits": entries,
        "info": info.to_json(),
        "source": source,
        "parameters": parameters,
        "format": FORMAT,
    }


def write_saved_dataset(directory: str | Path, splits: dict[str, tf.data.Dataset], **kwargs: Any) -> dict:
    """Convenience for tests and notebooks: :func:`save_dataset` plus ``manifest.json``.

    An existing ``manifest.json`` keeps its other keys. Keyword arguments are those of
    :func:`save_dataset`. Returns the manifest section.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    section = save_dataset(directory, splits, **kwargs)
    manifest_path = directory / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest["dataset"] = section
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return section


def is_saved_dataset(path: str | Path) -> bool:
    """True when ``path`` is a directory whose manifest.json has a ``"dataset"`` section."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and isinstance(manifest.get("dataset"), dict)


@dataclass(frozen=True)
class SavedSection:
    """The parsed ``"dataset"`` section of a saved dataset's manifest."""

    directory: Path
    section: dict[str, Any]
    manifest_sha256: str

    @property
    def splits(self) -> dict[str, dict]:
        return self.section["splits"]

    @property
    def source_dataset(self) -> str | None:
        source = self.section.get("source") or {}
        return source.get("dataset") if isinstance(source, dict) else None

    def info(self) -> DatasetInfo:
        return DatasetInfo.from_json(self.section["info"])


def read_section(directory: str | Path) -> SavedSection:
    """Reads and sanity-checks the ``"dataset"`` section of ``directory/manifest.json``.

    Raises:
        UserError: The manifest is missing, unreadable or lacks the expected keys.
    """
    directory = Path(directory)
    fix = "re-create it with the advtf command that wrote it"
    try:
        raw = (directory / MANIFEST).read_bytes()
        section = json.loads(raw).get("dataset")
    except (OSError, ValueError, AttributeError) as e:
        raise UserError(f"{directory} has no readable {MANIFEST} ({e}); {fix}") from e
    if not isinstance(section, dict) or not isinstance(section.get("splits"), dict):
        raise UserError(f"{directory}/{MANIFEST} has no 'dataset' section with 'splits'; {fix}")
    if section.get("format", FORMAT) != FORMAT:
        raise UserError(f"{directory} uses format {section['format']!r}; only {FORMAT} is supported")
    return SavedSection(directory, section, hashlib.sha256(raw).hexdigest())


def _inside(root: Path, relative: str, what: str) -> Path:
    """Resolves ``root/relative``, refusing anything that escapes ``root``."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise UserError(f"{what} path {relative!r} escapes {root}; the manifest was tampered with")
    return path


def _verified_split_dir(saved: SavedSection, split: str) -> Path:
    """Returns the split's directory after checking every file against its sha256."""
    if split not in saved.splits:
        raise UserError(
            f"saved dataset {saved.directory} has no {split} split (it has "
            f"{', '.join(sorted(saved.splits))})"
        )
    entry = saved.splits[split]
    fix = f"saved dataset {saved.directory} is corrupt or modified; re-create it"
    split_dir = _inside(saved.directory, str(entry.get("path", split)), f"split {split}")
    expected = entry.get("sha256")
    if not isinstance(expected, dict) or not expected:
        raise UserError(f"{fix} (no sha256 list for split {split})")
    for relative, digest in expected.items():
        path = _inside(split_dir, relative, f"file of split {split}")
        if not path.is_file():
            raise UserError(f"{fix} ({split}/{relative} is missing)")
        if _sha256(path) != digest:
            raise UserError(f"{fix} ({split}/{relative} does not match its sha256)")
    extra = set(_hash_tree(split_dir)) - set(expected) if split_dir.is_dir() else set()
    if extra:
        raise UserError(f"{fix} (unexpected files in {split}: {', '.join(sorted(extra))})")
    return split_dir


def load_saved_elements(directory: str | Path, split: str) -> tf.data.Dataset:
    """The full dict elements of one split of a saved dataset, after verifying its files.

    Raises:
        UserError: The directory is not a valid saved dataset, lacks the split, or was modified.
    """
    return _load_elements(read_section(directory), split)


def _load_elements(saved: SavedSection, split: str) -> tf.data.Dataset:
    ds = tf.data.Dataset.load(str(_verified_split_dir(saved, split)))
    spec = ds.element_spec
    if not isinstance(spec, dict) or "image" not in spec or "label" not in spec:
        raise UserError(f"split {split} of {saved.directory} lacks 'image' or 'label'; re-create it")
    return ds


def saved_split(saved: SavedSection, split: str) -> tuple[tf.data.Dataset, int]:
    """One verified split as ``(image, label)`` pairs, with its count from the manifest."""
    ds = _load_elements(saved, split)
    ds = ds.map(
        lambda el: (tf.cast(el["image"], tf.float32), tf.cast(el["label"], tf.int32)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return ds, int(saved.splits[split]["count"])
