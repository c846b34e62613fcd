"""Files of a run directory: atomic JSON, tables as CSV + Markdown, hashes, versions."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import platform
from pathlib import Path
from typing import Iterable

MANIFEST = "manifest.json"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_hashes(root: Path, *, skip=(MANIFEST,), skip_dirs=()) -> dict[str, str]:
    """sha256 of every file under ``root``, keyed by relative POSIX path (``skip_dirs``: top-level folders left out)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/", 1)[0] in skip_dirs:
            continue
        if path.is_file() and rel not in skip:
            out[rel] = sha256_file(path)
    return out


def write_json(path: str | os.PathLike, obj) -> None:
    """Writes JSON atomically (temporary file + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    os.replace(tmp, path)


def read_json(path: str | os.PathLike):
    with open(path) as f:
        return json.load(f)


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "to_json"):
        return obj.to_json()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def markdown_table(rows: list[dict], columns: list[str] | None = None, *, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table of ``rows``; "" with no columns (a header-less table is no Markdown)."""
    columns = columns or (list(rows[0]) if rows else [])
    if not columns:
        return ""

    def fmt(v):
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_table(directory: Path, name: str, rows: Iterable[dict], columns: list[str] | None = None) -> None:
    """Writes ``name.csv`` and ``name.md`` holding the same rows.

    ``rows`` may be a generator: both files are written row by row, so a table of a whole split
    (one row per example) never sits in memory.
    """
    rows = iter(rows)
    first = next(rows, None)
    columns = columns or (list(first) if first is not None else [])
    with open(directory / f"{name}.csv", "w", newline="") as table, open(directory / f"{name}.md", "w") as md:
        writer = csv.DictWriter(table, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        if columns:
            md.write(markdown_table([], columns))
        for row in itertools.chain([first], rows) if first is not None else ():
            writer.writerow(row)
            if columns:
                md.write(markdown_table([row], columns).split("\n", 2)[2])


def package_versions() -> dict[str, str]:
    """Versions a result depends on, for manifests and bug reports."""
    from importlib import metadata

    import advtf

    out = {"advtf": advtf.__version__, "python": platform.python_version()}
    for dist in ("tensorflow", "keras", "numpy", "tensorflow-datasets", "tf-keras-vis", "scikit-learn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out
