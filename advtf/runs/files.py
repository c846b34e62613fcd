"""Run directories: built in a sibling, renamed into place when complete, self-describing.

Every command writes to ``--out DIR`` (ARCHITECTURE.md, "Run directories"): the work
happens in ``DIR.partial``; on success it becomes ``DIR`` with a ``manifest.json``
holding the command line, options, package versions, input fingerprints, output hashes
and wall time. On failure the partial directory is removed, unless the job is resumable
and has left checkpoints, so ``--resume`` can continue it.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from advtf.errors import UserError

MANIFEST = "manifest.json"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_hashes(root: Path, *, skip=(MANIFEST,)) -> dict[str, str]:
    """sha256 of every file under ``root``, keyed by relative POSIX path."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
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


def write_table(directory: Path, name: str, rows: list[dict], columns: list[str] | None = None) -> None:
    """Writes ``name.csv`` and ``name.md`` holding the same rows."""
    columns = columns or (list(rows[0]) if rows else [])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    (directory / f"{name}.csv").write_text(buf.getvalue())
    (directory / f"{name}.md").write_text(markdown_table(rows, columns))


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


def check_writable_parent(out: Path) -> None:
    """UserError unless ``out``'s parent exists (or can be made) and is writable."""
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {parent} for --out ({e.strerror}); choose a writable --out") from None
    if not os.access(parent, os.W_OK):
        raise UserError(f"--out {out}: {parent} is not writable; choose a writable --out")


class RunDir:
    """A run directory under construction; use as a context manager.

    Args:
        out: the final directory (``--out``).
        overwrite: replace an existing ``out`` when this run completes.
        resume: continue an interrupted run (its ``out.partial``).
        resumable: keep the partial directory on failure if it holds checkpoints.
        options: the command's options, stored in the manifest.
    """

    def __init__(self, out, *, overwrite=False, resume=False, resumable=False, options=None):
        self.out = Path(out)
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.overwrite, self.resume, self.resumable = overwrite, resume, resumable
        self.options = dict(options or {})
        self.inputs: dict = {}
        self.extra: dict = {}
        self._start = None

    @property
    def path(self) -> Path:
        """Where to write now (the partial directory)."""
        return self.partial

    @property
    def resuming(self) -> bool:
        return self.resume and self.partial.exists()

    def check(self) -> None:
        """Validates ``--out`` before any work starts."""
        check_writable_parent(self.out)
        if self.resume and not self.resumable:
            raise UserError("this command cannot --resume; use --overwrite to start again")
        if self.out.exists() and not self.overwrite:
            if self.resume and not self.partial.exists():
                raise UserError(f"{self.out} is already complete; nothing to resume (use --overwrite to redo it)")
            if not self.resume:
                raise UserError(f"{self.out} exists; pass --overwrite to replace it or choose another --out")
        if self.partial.exists() and not self.resume and not self.overwrite:
            raise UserError(
                f"an interrupted run is at {self.partial}; pass --resume to continue it or --overwrite to start again"
            )
        if self.resume and not self.partial.exists() and not self.out.exists():
            raise UserError(f"nothing to resume at {self.out}; drop --resume to start a new run")

    def __enter__(self) -> "RunDir":
        self.check()
        if self.partial.exists() and not self.resume:
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True, exist_ok=True)
        self._start = time.time()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self._commit()
            return False
        keep = self.resumable and any(self.partial.rglob("checkpoint"))
        if not keep:
            shutil.rmtree(self.partial, ignore_errors=True)
        return False

    def manifest(self) -> dict:
        return {
            "command": sys.argv[:],
            "options": self.options,
            "versions": package_versions(),
            "inputs": self.inputs,
            "started": datetime.datetime.fromtimestamp(self._start, datetime.timezone.utc).isoformat(),
            "wall_seconds": round(time.time() - self._start, 3),
            **self.extra,
        }

    def _commit(self) -> None:
        manifest_path = self.partial / MANIFEST
        previous = read_json(manifest_path) if manifest_path.exists() else {}
        manifest = {**previous, **self.manifest()}
        manifest["outputs"] = tree_hashes(self.partial)
        write_json(manifest_path, manifest)
        if self.out.exists():
            trash = self.out.with_name(self.out.name + ".old")
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(self.out, trash)
            os.replace(self.partial, self.out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.partial, self.out)
