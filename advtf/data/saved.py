"""Saved datasets: directories written by advtf commands (adversarial, robustified, relabeled).

Layout::

    <dir>/manifest.json      {"dataset": <section returned by save_dataset>, ...other run keys}
    <dir>/<split>/           one tf.data.Dataset.save directory per split, a single shard

Elements are dicts with at least ``"image"`` (float32 HWC in [0, 1]) and ``"label"`` (int32);
extra fields (``"target"``, ``"success"``, ...) are kept. Every file is listed with its sha256
and verified on load; manifest paths may not point outside the directory. Loading also
checks every value once (finite pixels in [0, 1], labels in [0, num_classes)): a saved set
is untrusted input.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import tensorflow as tf

from advtf.data.checks import check_values
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
    except (OSError, ValueError, RecursionError):  # RecursionError: absurdly nested JSON
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
    """Reads and checks the ``"dataset"`` section of ``directory/manifest.json``.

    Every field is type-checked here, so a malformed or hostile manifest ends in one line
    naming the bad entry, never in a KeyError/TypeError deeper down.

    Raises:
        UserError: The manifest is missing, unreadable, malformed, or names paths outside ``directory``.
    """
    directory = Path(directory)
    fix = "re-create it with the advtf command that wrote it"
    try:
        raw = (directory / MANIFEST).read_bytes()
        manifest = json.loads(raw)
    except (OSError, ValueError, RecursionError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{directory} has no readable {MANIFEST} ({reason}); {fix}") from None
    section = manifest.get("dataset") if isinstance(manifest, dict) else None
    if not isinstance(section, dict) or not isinstance(section.get("splits"), dict):
        raise UserError(f"{directory}/{MANIFEST} has no 'dataset' section with 'splits'; {fix}")
    if section.get("format", FORMAT) != FORMAT:
        raise UserError(f"{directory} uses format {_short(section['format'])}; only {FORMAT} is supported")
    bad = f"{directory}/{MANIFEST} is malformed"
    for split, entry in section["splits"].items():
        problem = _split_problem(split, entry)
        if problem:
            raise UserError(f"{bad}: {problem}; {fix}")
    problem = _section_problem(section)
    if problem:
        raise UserError(f"{bad}: {problem}; {fix}")
    return SavedSection(directory, section, hashlib.sha256(raw).hexdigest())


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _short(value: Any) -> str:
    """A value for a one-line message: its repr, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _relative_problem(relative: Any, what: str) -> str | None:
    """Why ``relative`` is no plain relative path inside its directory; None when it is."""
    if not isinstance(relative, str) or not relative:
        return f"{what} is {_short(relative)}, not a relative path"
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    if relative.startswith(("/", "\\")) or PurePath(relative).is_absolute() or ".." in parts or ":" in relative:
        return f"{what} {relative!r} escapes the directory (absolute or '..'); the manifest was tampered with"
    return None


def _split_problem(split: Any, entry: Any) -> str | None:
    """What is wrong with one ``splits`` entry, or None."""
    if not isinstance(split, str) or not split.isidentifier():
        return f"split name {_short(split)} is not a simple identifier"
    if not isinstance(entry, dict):
        return f"split {split} is {_short(entry)}, not an object"
    missing = [key for key in ("path", "count", "sha256") if key not in entry]
    if missing:
        return f"split {split} lacks {', '.join(missing)}"
    if not _is_count(entry["count"]):
        return f"split {split} has count {_short(entry['count'])}, not a non-negative integer"
    problem = _relative_problem(entry["path"], f"split {split} path")
    if problem:
        return problem
    files = entry["sha256"]
    if not isinstance(files, dict) or not files:
        return f"split {split} has sha256 {_short(files)}, not a non-empty object of file -> digest"
    for relative, digest in files.items():
        problem = _relative_problem(relative, f"file of split {split}")
        if problem:
            return problem
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            return f"split {split} file {relative!r} has sha256 {_short(digest)}, not 64 hex digits"
    if not isinstance(entry.get("element_spec", {}), dict):
        return f"split {split} has element_spec {_short(entry['element_spec'])}, not an object"
    return None


def _section_problem(section: dict) -> str | None:
    """What is wrong with the ``info`` and ``source`` of a section, or None."""
    source = section.get("source")
    if source is not None and not isinstance(source, dict):
        return f"source is {_short(source)}, not an object"
    if isinstance(source, dict) and not isinstance(source.get("dataset", ""), (str, type(None))):
        return f"source dataset is {_short(source['dataset'])}, not a name or directory"
    info = section.get("info")
    if not isinstance(info, dict):
        return f"info is {_short(info)}, not an object"
    k, shape = info.get("num_classes"), info.get("image_shape")
    if not (_is_count(k) and k >= 1):
        return f"info num_classes is {_short(k)}, not a positive integer"
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_count(d) and d >= 1 for d in shape)):
        return f"info image_shape is {_short(shape)}, not [height, width, channels]"
    names = info.get("class_names")
    if not (isinstance(names, list) and len(names) == k and all(isinstance(c, str) for c in names)):
        return f"info class_names is {_short(names)}, not {k} names"
    for key in ("mean", "std"):
        values = info.get(key)
        if not (isinstance(values, list) and len(values) == shape[2] and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)):
            return f"info {key} is {_short(values)}, not {shape[2]} finite numbers (one per channel)"
    try:
        DatasetInfo.from_json(info)
    except UserError as e:
        return str(e).split(";")[0]
    except (TypeError, ValueError) as e:
        return f"info is malformed ({e})"
    return None


def _inside(root: Path, relative: str, what: str) -> Path:
    """Resolves ``root/relative``, refusing anything that escapes ``root`` (also through symlinks)."""
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
    entry = saved.splits[split]  # checked by read_section
    fix = f"saved dataset {saved.directory} is corrupt or modified; re-create it"
    split_dir = _inside(saved.directory, entry["path"], f"split {split}")
    expected = entry["sha256"]
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
    """A verified split's dict elements, after one pass checking their values (see ``check_values``)."""

    ds = tf.data.Dataset.load(str(_verified_split_dir(saved, split)))
    what = f"split {split} of saved dataset {saved.directory}"
    spec, info = ds.element_spec, saved.info()
    if not isinstance(spec, dict) or "image" not in spec or "label" not in spec:
        raise UserError(f"{what} lacks 'image' or 'label'; re-create it")
    image, label = spec["image"], spec["label"]
    if not (image.dtype.is_floating and image.shape == tuple(info.image_shape)):
        raise UserError(f"{what} holds {image.dtype.name} images of shape {image.shape}, not float "
                        f"{tuple(info.image_shape)} as its manifest says; re-create it")
    if not (label.dtype.is_integer and label.shape.rank == 0):
        raise UserError(f"{what} holds {label.dtype.name} labels of shape {label.shape}, not integer "
                        "class indices; re-create it")
    count = check_values(_pairs(ds), info.num_classes, what=what)
    if count != saved.splits[split]["count"]:
        raise UserError(f"{what} holds {count} examples but its manifest says {saved.splits[split]['count']}; "
                        "re-create it")
    return ds


def _pairs(ds: tf.data.Dataset) -> tf.data.Dataset:
    return ds.map(
        lambda el: (tf.cast(el["image"], tf.float32), tf.cast(el["label"], tf.int32)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def saved_split(saved: SavedSection, split: str) -> tuple[tf.data.Dataset, int]:
    """One verified and checked split as ``(image, label)`` pairs, with its count."""
    return _pairs(_load_elements(saved, split)), int(saved.splits[split]["count"])
