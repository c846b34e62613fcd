"""Presets of ``advtf reproduce``: one TOML file per paper (``data/presets/<paper>.toml``), read with tomllib.

A preset names the paper, its budgets, its steps (id, job, request options per budget, dependencies
written as ``"@step-id"``), its claims (statement, the paper's value and where it appears, the
measured quantity as paths into steps' ``results.json`` and the verdict rule, fixed before any run),
its main figures and a settings table (ours next to the paper's). Every structural error is a
one-line :class:`advtf.errors.UserError` naming the file and the entry.
"""

from __future__ import annotations

import importlib.resources
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advtf.errors import UserError

PAPERS = ("springer2021", "xu2019", "local-properties", "siddiqui2021")
BUDGETS = ("smoke", "quick", "paper")
VERDICTS = ("holds", "weaker", "does not hold", "not measured")
_ID = re.compile(r"[a-z0-9][a-z0-9._-]*")
_RULE = re.compile(r"\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TERM = re.compile(r"\s*([-+])?\s*(?:([a-z0-9][a-z0-9._-]*):(\S(?:.*\S)?)|([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))\s*")


def preset_directory() -> Path:
    """Where the presets are: the installed package ``advtf.presets`` (setup.cfg maps the top-level
    ``data/presets/`` onto it), else the source checkout's ``data/presets/`` (an editable install
    made before that mapping existed)."""
    try:  # a data folder without __init__.py: a namespace package, so ask a file for its folder
        found = importlib.resources.files("advtf.presets")
        preset = next((p for p in found.iterdir() if p.name.endswith(".toml")), None)
        if preset is not None:
            return Path(str(preset)).parent
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError, TypeError):
        pass
    return Path(__file__).resolve().parents[3] / "data" / "presets"


@dataclass(frozen=True)
class Rule:
    """A comparison ``OP NUMBER`` (``"> 0.05"``), written in the preset before the run."""

    op: str
    threshold: float

    @classmethod
    def parse(cls, text: str, where: str) -> "Rule":
        match = _RULE.fullmatch(str(text)) if isinstance(text, str) else None
        if match is None:
            raise UserError(f"{where}: a rule is a comparison such as \"> 0.05\" or \"<= 0\" (got {text!r})")
        threshold = float(match.group(2))
        if not math.isfinite(threshold):
            raise UserError(f"{where}: the rule's threshold must be finite (got {text!r})")
        return cls(match.group(1), threshold)

    def test(self, value: float) -> bool:
        return {">": value > self.threshold, ">=": value >= self.threshold,
                "<": value < self.threshold, "<=": value <= self.threshold}[self.op]

    def __str__(self) -> str:
        return f"{self.op} {self.threshold:g}"


@dataclass(frozen=True)
class Term:
    """One signed term of a measured quantity: a path into a step's results.json, or a number."""

    sign: float
    step: str | None
    path: tuple[str, ...] = ()
    number: float | None = None


@dataclass(frozen=True)
class Claim:
    """A testable statement of the paper, with the rule that decides it."""

    id: str
    statement: str
    paper_value: str
    where: str
    measure: str
    terms: tuple[Term, ...]
    holds: Rule
    weaker: Rule | None = None
    unit: str = ""


@dataclass(frozen=True)
class StepSpec:
    """A step of the preset: a job and its request options (before references are resolved)."""

    id: str
    job: str
    what: str
    options: dict[str, Any]  # budget-independent
    budgets: dict[str, dict[str, Any] | None]  # per budget: overrides, or None when the step is left out
    uses: tuple[str, ...] = ()  # [vars.<budget>] tables merged in last (shared settings such as a training recipe)


@dataclass(frozen=True)
class Preset:
    paper: str
    title: str
    reference: str
    source: Path
    steps: tuple[StepSpec, ...]
    claims: tuple[Claim, ...]
    figures: tuple[dict, ...] = ()
    settings: tuple[dict, ...] = ()
    budgets: dict[str, dict] = field(default_factory=dict)
    variables: dict[str, dict] = field(default_factory=dict)


def parse_measure(text: str, where: str) -> tuple[Term, ...]:
    """``"table:accuracy/std/R_0.5 - table:accuracy/std/R_0"`` as signed terms (paths split at ``/``)."""
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"{where}: measure must be a non-empty string such as \"table:accuracy/std/R_0.5\"")
    terms = []
    # split at " + " / " - " between terms (a key may hold a hyphen, never surrounded by spaces)
    pieces = re.split(r"\s+([-+])\s+", " " + text.strip())
    signs = ["+"] + pieces[1::2]
    for sign, piece in zip(signs, pieces[0::2]):
        match = _TERM.fullmatch(piece)
        if match is None or (match.group(2) is None and match.group(4) is None):
            raise UserError(f"{where}: cannot read the term {piece.strip()!r}; write STEP:key/key or a number")
        s = (-1.0 if sign == "-" else 1.0) * (-1.0 if match.group(1) == "-" else 1.0)
        if match.group(4) is not None:
            terms.append(Term(s, None, (), float(match.group(4))))
        else:
            path = tuple(p for p in match.group(3).split("/"))
            if any(not p for p in path):
                raise UserError(f"{where}: empty key in {piece.strip()!r}")
            terms.append(Term(s, match.group(2), path))
    return tuple(terms)


def fill_measure(claim: "Claim", variables: dict) -> str:
    """The claim's measure with ``{name}`` filled from the budget's ``[vars]`` (UserError naming a missing one)."""
    def fill(match):
        name = match.group(1)
        if name not in variables:
            raise UserError(f"claim {claim.id}: the measure uses {{{name}}}, which the budget's [vars] does not define")
        return str(variables[name])
    return _PLACEHOLDER.sub(fill, claim.measure)


def expand_measure(claim: "Claim", variables: dict) -> tuple[Term, ...]:
    """The claim's terms at a budget (its ``{name}``s filled)."""
    return parse_measure(fill_measure(claim, variables), f"claim {claim.id}")


def _table(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise UserError(f"{where} must be a table")
    return value


def _text(entry: dict, key: str, where: str, *, required: bool = True) -> str:
    value = entry.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: {key} must be a non-empty string")
    return value


def parse_preset(data: dict, source: Path) -> Preset:
    """A :class:`Preset` from a parsed TOML document (UserError naming the file on anything malformed)."""
    name = source.name
    paper = _text(data, "paper", name)
    unknown_keys = set(data) - {"paper", "title", "reference", "steps", "claims", "figures", "settings", "budgets",
                                "vars"}
    if unknown_keys:
        raise UserError(f"{name}: unknown top-level key(s) {', '.join(sorted(unknown_keys))}")
    budgets = _table(data.get("budgets", {}), f"{name}: [budgets]")
    for b in budgets:
        if b not in BUDGETS:
            raise UserError(f"{name}: unknown budget {b!r} in [budgets]; budgets are {', '.join(BUDGETS)}")
    variables = _table(data.get("vars", {}), f"{name}: [vars]")
    for b, table in variables.items():
        if b not in BUDGETS:
            raise UserError(f"{name}: unknown budget {b!r} in [vars]; budgets are {', '.join(BUDGETS)}")
        _table(table, f"{name}: [vars.{b}]")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise UserError(f"{name}: no [[steps]]; a preset runs at least one step")
    steps, seen = [], set()
    for i, entry in enumerate(raw_steps):
        where = f"{name}: step {i + 1}"
        entry = _table(entry, where)
        sid = _text(entry, "id", where)
        if not _ID.fullmatch(sid):
            raise UserError(f"{where}: id {sid!r} must be lower-case letters, digits, '.', '_' or '-'")
        if sid in seen:
            raise UserError(f"{name}: two steps have the id {sid!r}; give each step its own id")
        seen.add(sid)
        where = f"{name}: step {sid}"
        job = _text(entry, "job", where)
        extra = set(entry) - {"id", "job", "what", "options", "budgets", "uses", *BUDGETS}
        if extra:
            raise UserError(f"{where}: unknown key(s) {', '.join(sorted(extra))}; "
                            f"a step has id, job, what, options, uses, budgets and one table per budget")
        uses = entry.get("uses", [])
        if not isinstance(uses, list) or not all(isinstance(u, str) and u for u in uses):
            raise UserError(f"{where}: uses must list names of [vars.<budget>] tables, e.g. uses = [\"net\"]")
        only = entry.get("budgets", list(BUDGETS))
        if not isinstance(only, list) or any(b not in BUDGETS for b in only):
            raise UserError(f"{where}: budgets must list some of {', '.join(BUDGETS)}")
        per_budget = {b: (dict(_table(entry.get(b, {}), f"{where}: [{b}]")) if b in only else None)
                      for b in BUDGETS}
        steps.append(StepSpec(sid, job, entry.get("what", ""), dict(_table(entry.get("options", {}),
                                                                          f"{where}: options")), per_budget, tuple(uses)))
    claims, claim_ids = [], set()
    for i, entry in enumerate(data.get("claims", [])):
        where = f"{name}: claim {i + 1}"
        entry = _table(entry, where)
        cid = _text(entry, "id", where)
        if cid in claim_ids:
            raise UserError(f"{name}: two claims have the id {cid!r}")
        claim_ids.add(cid)
        where = f"{name}: claim {cid}"
        extra = set(entry) - {"id", "statement", "paper_value", "where", "measure", "holds", "weaker", "unit"}
        if extra:
            raise UserError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        if not isinstance(entry.get("measure"), str):
            raise UserError(f"{where}: measure must be a string such as \"table:accuracy/std/R_0.5\"")
        terms = parse_measure(_PLACEHOLDER.sub("0", entry["measure"]), where)  # syntax; {var}s filled per budget
        for term in terms:
            if term.step is not None and term.step not in seen:
                raise UserError(f"{where}: the measure reads step {term.step!r}, which the preset does not define")
        claims.append(Claim(cid, _text(entry, "statement", where), _text(entry, "paper_value", where),
                            _text(entry, "where", where), entry["measure"], terms,
                            Rule.parse(entry.get("holds"), f"{where}: holds"),
                            Rule.parse(entry["weaker"], f"{where}: weaker") if "weaker" in entry else None,
                            entry.get("unit", "")))
    figures = tuple(_table(f, f"{name}: figure {i + 1}") for i, f in enumerate(data.get("figures", [])))
    for i, fig in enumerate(figures):
        step, _, path = str(fig.get("path", "")).partition(":")
        if step not in seen or not path:
            raise UserError(f"{name}: figure {i + 1}: path must be STEP:file.png of a defined step "
                            f"(got {fig.get('path')!r})")
    settings = tuple(_table(s, f"{name}: setting {i + 1}") for i, s in enumerate(data.get("settings", [])))
    return Preset(paper, data.get("title", paper), data.get("reference", ""), source, tuple(steps), tuple(claims),
                  figures, settings, budgets, variables)


def load_preset(paper: str, directory: str | Path | None = None) -> Preset:
    """The preset of ``paper`` (UserError for an unknown paper or a malformed file)."""
    folder = Path(directory) if directory is not None else preset_directory()
    path = folder / f"{paper}.toml"
    if directory is None and paper not in PAPERS:
        raise UserError(f"unknown paper {paper!r}; choose one of: {', '.join(PAPERS)}, all")
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no preset {path}; choose one of: {', '.join(PAPERS)}, all") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path.name} is not valid TOML ({e}); fix the file") from None
    preset = parse_preset(data, path)
    if preset.paper != paper:
        raise UserError(f"{path.name}: paper = {preset.paper!r} but the file is named for {paper!r}")
    return preset
