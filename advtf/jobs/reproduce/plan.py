"""The plan of a reproduction: a preset's steps at one budget as validated job requests, in dependency order.

Options are merged (``options``, then the budget's table), ``"$name"`` values replaced by the budget's
``[vars.<budget>]``, ``"@id"`` (or ``"@id/file"``) by the run directory of step ``id`` under
``DIR/steps/``, ``data.data_dir`` set from ``--data-dir``, and the result turned into the job's own
Request (so every option is validated before any work). Unknown references and cycles are refused
with one line.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import types
import typing
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from advtf.errors import UserError
from advtf.jobs.reproduce.preset import Preset, StepSpec


@dataclass(frozen=True)
class Step:
    """A step ready to run: its job, validated request, run directory and dependencies."""

    id: str
    job: str
    what: str
    request: Any  # the job's Request
    out: Path
    depends: tuple[str, ...]
    options: dict  # the merged options with references resolved (what the request was built from)


@dataclass(frozen=True)
class Plan:
    paper: str
    budget: str
    preset: Preset
    out: Path
    steps: tuple[Step, ...]  # in dependency order

    def step(self, sid: str) -> Step:
        return next(s for s in self.steps if s.id == sid)


def merge(base: dict, over: dict) -> dict:
    """``over`` merged into ``base`` (tables merged key by key, other values replaced)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _substitute(value, variables: dict, where: str, refs: list):
    if isinstance(value, dict):
        return {k: _substitute(v, variables, where, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables, where, refs) for v in value]
    if isinstance(value, str) and value.startswith("$"):
        name = value[1:]
        if name not in variables:
            raise UserError(f"{where}: {value!r} names no entry of the budget's [vars]; define it or write the value")
        return _substitute(variables[name], variables, where, refs)
    if isinstance(value, str) and value.startswith("@"):
        target = value[1:].split("/", 1)[0]
        refs.append(target)
    return value


def _resolve_refs(value, dirs: dict[str, Path]):
    if isinstance(value, dict):
        return {k: _resolve_refs(v, dirs) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_refs(v, dirs) for v in value]
    if isinstance(value, str) and value.startswith("@"):
        target, _, rest = value[1:].partition("/")
        return str(dirs[target] / rest) if rest else str(dirs[target])
    return value


def topological_order(depends: dict[str, list[str]], where: str) -> list[str]:
    """The ids in an order where every step follows its dependencies (preset order otherwise kept).

    Raises:
        UserError: a reference to an unknown step, or a cycle (named).
    """
    for sid, deps in depends.items():
        for d in deps:
            if d not in depends:
                raise UserError(f"{where}: step {sid} refers to @{d}, which is no step of this budget; "
                                "fix the reference or add the step")
    order, state = [], {}

    def visit(sid, path):
        if state.get(sid) == "done":
            return
        if state.get(sid) == "active":
            cycle = path[path.index(sid):] + [sid]
            raise UserError(f"{where}: the steps depend on each other in a cycle ({' -> '.join(cycle)}); "
                            "remove one of these references")
        state[sid] = "active"
        for d in depends[sid]:
            visit(d, path + [sid])
        state[sid] = "done"
        order.append(sid)

    for sid in depends:
        visit(sid, [])
    return order


def request_class(job: str):
    """The Request dataclass of job ``job`` (the annotation of its ``run``'s ``request``)."""
    from advtf import jobs

    module = importlib.import_module(jobs.JOBS.get(job).module)
    annotation = inspect.signature(module.run).parameters["request"].annotation
    cls = getattr(module, annotation) if isinstance(annotation, str) else annotation
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"job {job}: cannot find its Request class")
    return cls


def _convert(value, hint, where: str):
    """``value`` (from TOML) as the annotated type: nested dataclasses, tuples, numbers written 8/255."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        for arg in args:  # the first member the value fits
            if isinstance(value, dict) and dataclasses.is_dataclass(arg):
                return _convert(value, arg, where)
            if isinstance(value, list) and typing.get_origin(arg) in (tuple, list) or arg in (tuple, list):
                return _convert(value, arg, where)
        return _convert(value, args[0], where) if len(args) == 1 else value
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return build_dataclass(hint, value, where)
    if hint is float and isinstance(value, str):
        try:
            return float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError):
            raise UserError(f"{where}: {value!r} is not a number; write e.g. 0.5 or \"8/255\"") from None
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (origin is tuple or hint is tuple) and isinstance(value, list):
        args = typing.get_args(hint)
        inner = args[0] if args else None
        return tuple(_convert(v, inner, where) if inner is not None else v for v in value)
    return value


def build_dataclass(cls, options: dict, where: str):
    """``cls(**options)`` with nested values converted by the field annotations (unknown keys refused)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise UserError(f"{where}: {cls.__name__} has no option {', '.join(unknown)} "
                        f"(it takes {', '.join(sorted(names))})")
    values = {k: _convert(v, hints[k], f"{where}: {k}") for k, v in options.items()}
    try:
        return cls(**values)
    except UserError as e:  # the job's own validation, placed in the preset
        raise UserError(f"{where}: {e}") from None


def step_options(spec: StepSpec, budget: str, variables: dict, where: str) -> tuple[dict, list[str]]:
    """The options of ``spec`` at ``budget`` and its references.

    ``$vars`` are substituted, then merged in order: ``options``, the budget's table, the ``uses`` tables.
    """
    refs: list[str] = []
    merged = merge(_substitute(spec.options, variables, where, refs),
                   _substitute(spec.budgets[budget] or {}, variables, where, refs))
    for name in spec.uses:  # shared tables last: e.g. the budget's training recipe
        shared = _substitute("$" + name, variables, where, refs)
        if not isinstance(shared, dict):
            raise UserError(f"{where}: uses {name!r}, which must be a table in the budget's [vars]")
        merged = merge(merged, shared)
    return merged, list(dict.fromkeys(refs))


def make_plan(preset: Preset, budget: str, out: str | Path, *, data_dir: str | None = None) -> Plan:
    """The steps of ``preset`` at ``budget`` as validated requests, in dependency order, under ``out/steps``."""
    from advtf import jobs

    name = preset.source.name
    out = Path(out).resolve()
    variables = dict(preset.variables.get(budget, {}))
    specs = [s for s in preset.steps if s.budgets[budget] is not None]
    if not specs:
        raise UserError(f"{name}: no step runs at budget {budget}")
    merged, depends = {}, {}
    for spec in specs:
        if spec.job not in jobs.JOBS or jobs.JOBS.get(spec.job).module is None:
            raise UserError(f"{name}: step {spec.id}: no job {spec.job!r}; a step runs a command of `advtf --help`")
        merged[spec.id], refs = step_options(spec, budget, variables, f"{name}: step {spec.id}")
        depends[spec.id] = refs
    order = topological_order(depends, f"{name} (budget {budget})")
    dirs = {sid: out / "steps" / sid for sid in depends}
    by_id = {s.id: s for s in specs}
    steps = []
    for sid in order:
        spec = by_id[sid]
        options = _resolve_refs(merged[sid], dirs)
        if data_dir is not None and "data" in {f.name for f in dataclasses.fields(request_class(spec.job))}:
            options = merge(options, {"data": {"data_dir": str(data_dir)}})
        request = build_dataclass(request_class(spec.job), options, f"{name}: step {sid} (budget {budget})")
        steps.append(Step(sid, spec.job, spec.what, request, dirs[sid], tuple(depends[sid]), options))
    return Plan(preset.paper, budget, preset, out, tuple(steps))


def datasets_of(plan: Plan) -> list[str]:
    """The registered datasets the plan's steps read (saved-dataset directories of other steps left out)."""
    names = []
    for step in plan.steps:
        data = getattr(step.request, "data", None)
        names.append(getattr(data, "dataset", None))
        for value in (getattr(step.request, "testsets", None) or {}).values():
            names.append(value)
    return [n for n in dict.fromkeys(names) if isinstance(n, str) and not n.startswith(str(plan.out))]
