"""``advtf retrain``: the block-wise retraining protocol of Siddiqui & Breuel (2021, papers/001) as sweeps.

A job is a list of cells (:class:`advtf.training.retrain.Selection`): one cut-off or module set,
every cut-off for both parts (Figs. 2-4), every per-layer cut-off (Fig. 5), every subset of
modules (Fig. 6), or one unit at a time reinitialised without training (Fig. 7). Each cell
writes ``cells/<name>/results.json``; ``cells/checkpoint`` records the job's parameters and the
finished cells, so an interrupted sweep resumed with the same options skips what is done and a
resume with other options is refused (the pattern of :class:`advtf.analysis.chunks.ChunkStore`).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from advtf.errors import UserError
from advtf.runs import ResumeStore, read_json, write_json, write_table
from advtf.training.retrain import (PARTS, Selection, cutoff_selection, parse_modules, subset_selection,
                                    unit_names)

SWEEPS = ("cutoff", "layers", "combinations")
MODES = ("adversarial", "conventional")
PRETRAINED = "pretrained"  # the cell holding the pretrained model's own accuracy ("only pretrained")
COLUMNS = ["cell", "part", "cutoff", "retrained", "clean_accuracy", "robust_accuracy", "trainable_params",
           "epochs", "seconds"]


class CellStore:
    """Finished cells of a job: each cell's files under ``<workdir>/cells/<name>`` (outputs), its
    completion in the run's resume store (written only after the cell's ``results.json``)."""

    def __init__(self, workdir: str | Path, store: ResumeStore | None = None):
        self.directory = Path(workdir) / "cells"
        self.store = store if store is not None else ResumeStore(workdir)

    def path(self, name: str) -> Path:
        """The cell's own directory (made on demand)."""
        path = self.directory / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def is_done(self, name: str) -> bool:
        return self.store.is_done(f"cell/{name}")

    def result(self, name: str) -> dict:
        return read_json(self.directory / name / "results.json")

    def save(self, name: str, result: dict) -> None:
        """Writes the cell's ``results.json``, then marks it finished."""
        write_json(self.path(name) / "results.json", result)
        self.store.mark_done(f"cell/{name}")


@dataclasses.dataclass(frozen=True)
class CellPlan:
    """The cells of a job: ``unit`` (modules or layers), its unit names and the selections."""

    unit: str
    names: list[str]
    selections: list[Selection]
    reinit_only: bool


def plan_cells(model, *, sweep: str | None = None, part: str | None = None, cutoff: int | None = None,
               modules: str | None = None, layers: bool = False, reinit_only: bool = False) -> CellPlan:
    """The cells an option set asks for, validated against ``model`` (UserError on a bad combination).

    ``--sweep cutoff``: every cut-off 0..K for both parts (or the given ``--part``);
    ``--sweep layers``: the same over layer units; ``--sweep combinations``: every subset of
    modules, the empty one being the pretrained model; ``--reinit-only``: one unit at a time
    (all, or the ``--modules`` given); otherwise one cell (``--part``/``--cutoff`` or ``--modules``).
    """
    if sweep is not None and sweep not in SWEEPS:
        raise UserError(f"--sweep must be one of {', '.join(SWEEPS)} (got {sweep!r})")
    unit = "layers" if (layers or sweep == "layers") else "modules"
    if sweep == "combinations" and layers:
        raise UserError("--sweep combinations runs over modules (2^K cells); drop --layers")
    if modules is not None and unit == "layers":
        raise UserError("--modules selects modules; drop --layers (or use --part/--cutoff with --layers)")
    names = unit_names(model, unit)  # UserError for a model without module endpoints
    count = len(names)
    if reinit_only:
        if sweep or part or cutoff is not None:
            raise UserError("--reinit-only reinitialises one unit at a time; drop --sweep/--part/--cutoff")
        chosen = parse_modules(modules, count) if modules is not None else range(count)
        return CellPlan(unit, names, [Selection(f"reinit-{names[i]}", unit, (i,)) for i in chosen], True)
    if sweep in ("cutoff", "layers"):
        if cutoff is not None or modules is not None:
            raise UserError(f"--sweep {sweep} runs every cut-off; drop --cutoff/--modules")
        parts = (part,) if part else PARTS
        return CellPlan(unit, names, [cutoff_selection(p, k, count, unit) for p in parts for k in range(count)],
                        False)
    if sweep == "combinations":
        if cutoff is not None or modules is not None or part:
            raise UserError("--sweep combinations runs every subset of modules; drop --part/--cutoff/--modules")
        subsets = [c for r in range(count + 1) for c in itertools.combinations(range(count), r)]
        return CellPlan(unit, names, [subset_selection(s) for s in subsets], False)
    if modules is not None:
        if cutoff is not None or part:
            raise UserError("give either --modules or --part/--cutoff, not both")
        return CellPlan(unit, names, [subset_selection(parse_modules(modules, count))], False)
    if cutoff is None or part is None:
        raise UserError("choose what to retrain: --part before|after with --cutoff K, --modules 0,2,3, "
                        "--sweep cutoff|layers|combinations, or --reinit-only")
    return CellPlan(unit, names, [cutoff_selection(part, cutoff, count, unit)], False)


def run_cells(plan: CellPlan, store: CellStore, run_one: Callable[[Selection], dict], *,
              pretrained: Callable[[], dict], report: Callable[[str], None] | None = None) -> tuple[dict, list[dict]]:
    """Runs every unfinished cell of ``plan`` (finished ones are read back), pretrained reference first.

    Returns the pretrained model's accuracy and one row per cell (its selection and results).
    An empty selection (the ``none`` subset of the combinations sweep) is the pretrained model;
    a selection equal to an earlier one (``after-0`` = ``before-K``) reuses its result (``same_as``).
    """
    def finished(name: str, compute: Callable[[], dict], index: int) -> dict:
        total = len(plan.selections)
        if store.is_done(name):
            result, note = store.result(name), "kept from the interrupted run"
        else:
            start = time.time()
            result = compute()
            store.save(name, result)
            note = f"{time.time() - start:.0f} s"
        if report is not None:
            report(f"[{index}/{total}] {name}: clean {result['clean_accuracy']:.4f}  "
                   f"robust {result['robust_accuracy']:.4f}  ({note})")
        return result

    reference = finished(PRETRAINED, pretrained, 0)
    rows, by_units = [], {}
    for i, selection in enumerate(plan.selections, 1):
        if not selection.indices:
            result = dict(reference)
        elif selection.indices in by_units:  # e.g. before-K and after-0 both retrain everything: run once
            first, earlier = by_units[selection.indices]
            result = finished(selection.name, lambda e=earlier, f=first: {**e, "same_as": f}, i)
        else:
            result = finished(selection.name, lambda s=selection: run_one(s), i)
            by_units[selection.indices] = (selection.name, result)
        rows.append({"cell": selection.name, "part": selection.part, "cutoff": selection.cutoff,
                     "retrained": ",".join(plan.names[j] for j in selection.indices) or "none",
                     "indices": list(selection.indices), **result})
    return reference, rows


def combination_medians(rows: list[dict], names: list[str]) -> list[dict]:
    """Per unit: median clean and robust accuracy over the cells that retrain it and over those that don't (Fig. 6)."""
    out = []
    for j, name in enumerate(names):
        with_j = [r for r in rows if j in r["indices"]]
        without = [r for r in rows if j not in r["indices"]]
        entry = {"module": name, "cells_with": len(with_j), "cells_without": len(without)}
        for metric in ("clean_accuracy", "robust_accuracy"):
            entry[f"{metric}_with"] = float(np.median([r[metric] for r in with_j])) if with_j else None
            entry[f"{metric}_without"] = float(np.median([r[metric] for r in without])) if without else None
        out.append(entry)
    return out


def write_outputs(directory: Path, plan: CellPlan, reference: dict, rows: list[dict], *, sweep: str | None,
                  title: str, header: dict) -> dict:
    """``results.json``, ``results.csv/.md``, ``combinations.csv/.md`` and the sweep's figure."""
    from advtf.plots import retrain as plots

    results = {**header, "unit": plan.unit, "units": plan.names, "sweep": sweep, "reinit_only": plan.reinit_only,
               "pretrained_accuracy": reference, "cells": rows}
    table = [{k: ("" if v is None else v) for k, v in row.items()}
             for row in [{"cell": PRETRAINED, "retrained": "none (only pretrained)", **reference}] + rows]
    write_table(directory, "results", table, COLUMNS)
    if sweep == "combinations":
        results["combinations"] = combination_medians(rows, plan.names)
        write_table(directory, "combinations", results["combinations"])
        plots.combinations_figure(results["combinations"], directory / "retrain_combinations.png", title=title)
    elif sweep in ("cutoff", "layers"):
        labels = plan.names if sweep == "layers" else [f"m{i}" for i in range(len(plan.names))]
        name = "retrain_layers.png" if sweep == "layers" else "retrain_cutoff.png"
        plots.cutoff_figure(rows, reference, labels, directory / name, title=title,
                            xlabel="cut-off layer" if sweep == "layers" else "cut-off module")
    elif plan.reinit_only:
        plots.reinit_figure(rows, reference, directory / "retrain_reinit.png", title=title)
    write_json(directory / "results.json", results)
    return results


@dataclasses.dataclass(frozen=True)
class RetrainJob:
    """Everything ``advtf retrain`` needs; the CLI fills it from its options.

    ``adversarial`` is the training attack (``None``: conventional retraining); ``eval_threat``
    the PGD threat of the robust accuracy (true label attacked, as in the paper's Sec. 3.2).
    """

    pretrained: str
    data: Any  # advtf.inputs.DataRequest
    config: Any  # advtf.training.loop.TrainConfig
    adversarial: Any  # advtf.training.loop.AdversarialConfig | None
    eval_threat: Any  # advtf.attacks.Threat
    sweep: str | None = None
    part: str | None = None
    cutoff: int | None = None
    modules: str | None = None
    layers: bool = False
    reinit_only: bool = False
    save_models: bool = False
    strategy: str = "auto"

    @property
    def mode(self) -> str:
        return "reinit-only" if self.reinit_only else ("adversarial" if self.adversarial else "conventional")

    def plan(self, model) -> CellPlan:
        return plan_cells(model, sweep=self.sweep, part=self.part, cutoff=self.cutoff, modules=self.modules,
                          layers=self.layers, reinit_only=self.reinit_only)

    def parameters(self, model_sha256: str) -> dict:
        """What determines the cells' results (a resume must match them); not --save-models or --strategy."""
        adversarial = dataclasses.asdict(self.adversarial) if self.adversarial else {"mode": "conventional"}
        adversarial["training_threat"] = adversarial.pop("threat", None)
        return {"pretrained_sha256": model_sha256, **dataclasses.asdict(self.data),
                **dataclasses.asdict(self.config), **adversarial,
                "eval_threat": self.eval_threat.to_json(), "sweep": self.sweep, "part": self.part,
                "cutoff": self.cutoff, "modules": self.modules, "layers": self.layers, "reinit_only": self.reinit_only}


def run_retrain(job: RetrainJob, run, *, progress=None, report: Callable[[str], None] | None = None) -> dict:
    """Runs (or resumes) every cell of ``job`` in the run directory ``run`` and writes its tables and figures.

    Returns ``results.json``'s content plus ``dataset_fingerprint``.
    """
    import dataclasses as dc

    from advtf.inputs import check_model_fits, load_trained_model, model_fingerprint
    from advtf.training.retrain import (evaluate_pretrained, initial_model, reinit_cell, retrain_cell)
    from advtf.distribute.strategy import make_strategy

    workdir = Path(run.path)
    data = job.data.load()
    model = load_trained_model(job.pretrained)
    check_model_fits(model, data.info, what=f"pretrained model {job.pretrained}")
    plan = job.plan(model)
    fingerprint = model_fingerprint(job.pretrained)
    run.record_inputs(model=fingerprint, dataset=data.fingerprint, parameters=job.parameters(fingerprint["sha256"]))
    store = CellStore(workdir, run.store)
    strategy = make_strategy(job.strategy)
    config = job.config
    if config.augment is None:
        config = dc.replace(config, augment=data.info.natural_images)
    if not job.reinit_only:
        data.require("train")
    batch_size = config.batch_size
    initialisation = f"fresh (each layer's initializers, seed {config.seed})"
    if job.reinit_only:
        with strategy.scope():
            initial, source = initial_model(model, job.pretrained, config.seed)
        initialisation = {"saved": "the training run's initial weights (initial.weights.h5)",
                          "config": "the training run's initial weights, redrawn from the seeded initializers "
                                    "in the model's config",
                          "fresh": f"fresh (each layer's initializers, seed {config.seed}); the run saved no "
                                   "initial weights"}[source]

        def run_one(selection):
            return reinit_cell(job.pretrained, selection, data, job.eval_threat, batch_size=batch_size,
                               strategy=strategy, seed=config.seed, initial=initial, progress=progress)
    else:
        def run_one(selection):
            return retrain_cell(job.pretrained, selection, data, config, job.adversarial, job.eval_threat,
                                store.path(selection.name), strategy=strategy, progress=progress,
                                save_model=job.save_models)

    def pretrained():
        return evaluate_pretrained(job.pretrained, data, job.eval_threat, batch_size=batch_size, strategy=strategy,
                                   seed=config.seed, progress=progress)

    reference, rows = run_cells(plan, store, run_one, pretrained=pretrained, report=report)
    threat = job.eval_threat
    header = {"pretrained": str(job.pretrained), "dataset": data.info.name, "mode": job.mode,
              "initialisation": initialisation,
              "training_threat": job.adversarial.threat.to_json() if job.adversarial else None,
              "clean_fraction": job.adversarial.clean_fraction if job.adversarial else None,
              "fast": bool(job.adversarial and job.adversarial.fast),
              "attack_target": job.adversarial.attack_target if job.adversarial else None,
              "epochs": None if job.reinit_only else config.epochs,
              "eval_threat": threat.to_json(), "eval_attack": "pgd (true label)"}
    what = {"reinit-only": "one unit reinitialised, no retraining",
            "adversarial": "adversarial retraining", "conventional": "conventional retraining"}[job.mode]
    title = (f"{Path(job.pretrained).name} on {data.info.name}: {what}; robust = PGD-{threat.steps} "
             f"{threat.norm} eps={threat.eps:g}")
    results = write_outputs(workdir, plan, reference, rows, sweep=job.sweep, title=title, header=header)
    return {**results, "dataset_fingerprint": data.fingerprint, "model_fingerprint": fingerprint}
