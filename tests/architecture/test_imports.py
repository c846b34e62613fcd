"""The import graph runs one way (docs/design.md, "One picture"); read with ``ast``, nothing imported.

cli -> jobs -> {analysis, training} -> {adversarial, evaluation(_checks), inputs} -> {attacks, models, data,
distribute} -> {runs} -> {errors, registry, validation}; plots beside jobs, importing nothing above
runs. Siblings on one level do not import each other (analysis and training meet in a job).
Private names are not imported across modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE = {"errors", "registry", "validation"}
LOW = BASE | {"runs"}
CORE = LOW | {"attacks", "models", "data", "distribute"}
MIDDLE = CORE | {"adversarial", "evaluation", "evaluation_checks", "inputs"}
ALLOWED = {
    "errors": set(), "registry": {"errors"}, "validation": {"errors"},
    "runs": BASE,
    "distribute": LOW, "models": LOW, "data": LOW | {"models"}, "attacks": LOW | {"models"},
    "adversarial": CORE, "evaluation": CORE, "evaluation_checks": CORE, "inputs": CORE,
    "plots": LOW,
    "analysis": MIDDLE - {"runs"},  # pure computation: no run directories, no files
    "training": MIDDLE,
    "jobs": MIDDLE | {"analysis", "training", "plots"},
    "cli": None,  # the top: anything
}


def _room(path: Path) -> str:
    rel = path.relative_to(ROOT)
    if rel.parts[0] == "cli":
        return "cli"
    return rel.parts[1].removesuffix(".py")


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = ("advtf", "cli", *rel.parts[1:]) if rel.parts[0] == "cli" else rel.parts
    return ".".join(p for p in parts if p != "__init__")


def _imports(path: Path):
    """(line, imported advtf module, names) of every ``import``/``from ... import`` in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("advtf"):
                    yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            if name == "advtf" or name.startswith("advtf."):
                yield node.lineno, name, [a.name for a in node.names]


SOURCES = sorted(p for d in ("advtf", "cli") for p in (ROOT / d).rglob("*.py"))


def _target_room(module: str, names: list[str]) -> list[str]:
    parts = module.split(".")
    if module == "advtf":  # from advtf import validation, ...
        return [n for n in names if n != "__version__"]
    if parts[1] == "cli":
        return ["cli"]
    return [parts[1]]


def test_imports_run_one_way():
    bad = []
    for path in SOURCES:
        room = _room(path)
        allowed = ALLOWED.get(room, set())
        for line, module, names in _imports(path):
            for target in _target_room(module, names):
                if target == room or allowed is None:
                    continue
                if target not in allowed:
                    bad.append(f"{path.relative_to(ROOT)}:{line}: {room} imports {module} ({target})")
    assert not bad, "imports against the direction of docs/design.md:\n" + "\n".join(bad)


def test_no_private_names_across_modules():
    bad = []
    for path in SOURCES:
        own = _module(path)
        for line, module, names in _imports(path):
            for name in names:
                if name.startswith("_") and not name.startswith("__") and module != own:
                    bad.append(f"{path.relative_to(ROOT)}:{line}: imports {module}.{name}")
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


def test_the_library_never_imports_click():
    bad = []
    for path in SOURCES:
        if _room(path) == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{path.relative_to(ROOT)}:{node.lineno}" for n in names if n.split(".")[0] == "click"]
    assert not bad, "click outside cli/: " + ", ".join(bad)


@pytest.mark.parametrize("source, message", [
    ("from advtf.jobs import execute\n", "analysis imports advtf.jobs"),
    ("from advtf.runs import write_json\n", "analysis imports advtf.runs"),
])
def test_the_checker_catches_a_back_edge(tmp_path, monkeypatch, source, message):
    fake = ROOT / "advtf" / "analysis" / "_architecture_probe.py"
    monkeypatch.setattr(__import__(__name__), "SOURCES", [fake])
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source)
    with pytest.raises(AssertionError, match=message):
        test_imports_run_one_way()
