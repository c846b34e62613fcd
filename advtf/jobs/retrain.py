"""``advtf retrain``: the block-wise retraining protocol of Siddiqui & Breuel (2021) as sweeps, resumable per cell.

A job is a list of cells (:class:`advtf.training.retrain.Selection`): one cut-off or module set,
every cut-off for both parts (Figs. 2-4), every per-layer cut-off (Fig. 5), every subset of
modules (Fig. 6), or one unit at a time reinitialised without training (Fig. 7). Each cell
writes ``cells/<name>/results.json`` and is then marked finished in the run's resume store, so
an interrupted sweep resumed with the same options skips what is done (the run directory
refuses a resume with other options). The retraining itself is :mod:`advtf.training.retrain`,
the Fig. 6 medians :mod:`advtf.analysis.retrain`; the cell plan lives here, where the two meet.
Under ``--strategy multiworker`` the workers of the cluster share out whole cells (cell ``i`` to
worker ``i % W``, :func:`share_cells`), each training its own on its own devices.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path
from typing import Callable

from advtf import validation as check
from advtf.analysis.retrain import combination_medians
from advtf.attacks import Threat
from advtf.distribute import single_machine_strategy
from advtf.errors import UserError
from advtf.inputs import DataRequest, check_model_fits, load_trained_model, model_fingerprint
from advtf.jobs import Request
from advtf.jobs.training_checks import check_optimisation, check_training_threat, checked_milestones
from advtf.plots import retrain as plots
from advtf.runs import ResumeStore, read_json, write_json, write_table
from advtf.runs.cluster import WorkerFinished
from advtf.training.loop import AdversarialConfig, TrainConfig
from advtf.training.retrain import (PARTS, Selection, cutoff_selection, evaluate_pretrained, initial_model,
                                    parse_modules, reinit_cell, retrain_cell, retraining_threat, subset_selection,
                                    unit_names)

SWEEPS = ("cutoff", "layers", "combinations")
MODES = ("adversarial", "conventional")
PRETRAINED = "pretrained"  # the cell holding the pretrained model's own accuracy ("only pretrained")
COLUMNS = ["cell", "part", "cutoff", "retrained", "clean_accuracy", "robust_accuracy", "trainable_params",
           "epochs", "seconds"]


@dataclasses.dataclass(frozen=True)
class RetrainRequest(Request):
    """Options of ``advtf retrain`` (defaults: Siddiqui & Breuel 2021, Sec. 3.2).

    ``mode`` is ``adversarial``, ``conventional`` or None with ``reinit_only``. ``norm`` .. ``restarts``
    are the training threat; ``step_size`` becomes the effective
    PGD step of adversarial retraining (eps/4 unless given; None with ``fast``, whose FGSM step is
    1.25 eps). Robust accuracy is PGD-``eval_steps`` on the true label.
    """

    pretrained: str
    data: DataRequest = DataRequest()
    mode: str | None = None
    sweep: str | None = None
    part: str | None = None
    cutoff: int | None = None
    modules: str | None = None
    layers: bool = False
    reinit_only: bool = False
    norm: str = "linf"
    eps: float = 8 / 255
    attack_steps: int = 7
    step_size: float | None = None
    restarts: int = 1
    attack_target: str = "prediction"
    clean_fraction: float = 0.5
    fast: bool = False
    eval_steps: int = 200
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    lr_milestones: tuple = ()
    augment: bool | None = None
    save_models: bool = False
    strategy: str = "auto"

    def __post_init__(self):
        if self.mode is not None:
            check.choice("--mode", self.mode, MODES)
        if self.reinit_only and self.mode is not None:
            raise UserError("--reinit-only does not retrain; drop --mode")
        if not self.reinit_only and self.mode is None:
            raise UserError("choose --mode adversarial or --mode conventional (or --reinit-only)")
        if self.fast and self.mode != "adversarial":
            raise UserError("--fast only applies with --mode adversarial")
        check_selection(sweep=self.sweep, part=self.part, cutoff=self.cutoff, modules=self.modules,
                        layers=self.layers, reinit_only=self.reinit_only)
        check_training_threat(self)
        check_optimisation(self)
        milestones = checked_milestones(self.lr_milestones, self.epochs, self.schedule)
        if self.mode == "adversarial":  # record the step the training attack takes
            step = None if self.fast else retraining_threat(self.threat).alpha
            object.__setattr__(self, "step_size", step)
        object.__setattr__(self, "lr_milestones", tuple(milestones))

    def inputs(self) -> list[str]:
        return [self.pretrained, self.data.dataset]

    @property
    def run_mode(self) -> str:
        """``reinit-only``, ``adversarial`` or ``conventional`` (results.json's ``mode``)."""
        return "reinit-only" if self.reinit_only else self.mode

    @property
    def threat(self) -> Threat:
        return Threat(norm=self.norm, eps=self.eps, steps=self.attack_steps, step_size=self.step_size,
                      restarts=self.restarts)

    @property
    def eval_threat(self) -> Threat:
        """PGD-``eval_steps`` on the same ball, with its own default step (true label attacked)."""
        return dataclasses.replace(self.threat, steps=self.eval_steps, step_size=None)

    def adversarial(self) -> AdversarialConfig | None:
        """The training attack of adversarial retraining (None otherwise)."""
        if self.mode != "adversarial":
            return None
        return AdversarialConfig(threat=self.threat, attack_target=self.attack_target,
                                 clean_fraction=self.clean_fraction, fast=self.fast)

    def train_config(self, natural_images: bool) -> TrainConfig:
        """Each cell's optimisation (augmentation by default for natural images only)."""
        augment = natural_images if self.augment is None else self.augment
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer, lr=self.lr,
                           momentum=self.momentum, nesterov=self.nesterov, weight_decay=self.weight_decay,
                           schedule=self.schedule, lr_milestones=self.lr_milestones, augment=augment,
                           seed=self.data.seed)


def check_selection(*, sweep: str | None = None, part: str | None = None, cutoff: int | None = None,
                    modules: str | None = None, layers: bool = False, reinit_only: bool = False) -> None:
    """UserError for an option combination that selects no cells, or contradictory ones (no model needed)."""
    if sweep is not None:
        check.choice("--sweep", sweep, SWEEPS)
    if part is not None:
        check.choice("--part", part, PARTS)
    unit = "layers" if (layers or sweep == "layers") else "modules"
    if sweep == "combinations" and layers:
        raise UserError("--sweep combinations runs over modules (2^K cells); drop --layers")
    if modules is not None and unit == "layers":
        raise UserError("--modules selects modules; drop --layers (or use --part/--cutoff with --layers)")
    if reinit_only:
        if sweep or part or cutoff is not None:
            raise UserError("--reinit-only reinitialises one unit at a time; drop --sweep/--part/--cutoff")
    elif sweep in ("cutoff", "layers"):
        if cutoff is not None or modules is not None:
            raise UserError(f"--sweep {sweep} runs every cut-off; drop --cutoff/--modules")
    elif sweep == "combinations":
        if cutoff is not None or modules is not None or part:
            raise UserError("--sweep combinations runs every subset of modules; drop --part/--cutoff/--modules")
    elif modules is not None:
        if cutoff is not None or part:
            raise UserError("give either --modules or --part/--cutoff, not both")
    elif cutoff is None or part is None:
        raise UserError("choose what to retrain: --part before|after with --cutoff K, --modules 0,2,3, "
                        "--sweep cutoff|layers|combinations, or --reinit-only")


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
    check_selection(sweep=sweep, part=part, cutoff=cutoff, modules=modules, layers=layers, reinit_only=reinit_only)
    unit = "layers" if (layers or sweep == "layers") else "modules"
    names = unit_names(model, unit)  # UserError for a model without module endpoints
    count = len(names)
    if reinit_only:
        chosen = parse_modules(modules, count) if modules is not None else range(count)
        return CellPlan(unit, names, [Selection(f"reinit-{names[i]}", unit, (i,)) for i in chosen], True)
    if sweep in ("cutoff", "layers"):
        parts = (part,) if part else PARTS
        return CellPlan(unit, names, [cutoff_selection(p, k, count, unit) for p in parts for k in range(count)],
                        False)
    if sweep == "combinations":
        subsets = [c for r in range(count + 1) for c in itertools.combinations(range(count), r)]
        return CellPlan(unit, names, [subset_selection(s) for s in subsets], False)
    if modules is not None:
        return CellPlan(unit, names, [subset_selection(parse_modules(modules, count))], False)
    return CellPlan(unit, names, [cutoff_selection(part, cutoff, count, unit)], False)


class CellStore:
    """Finished cells of a job: each cell's files under ``<workdir>/cells/<name>`` (outputs), its
    completion in the run's resume store (marked only after the cell's ``results.json`` is written)."""

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


def run_cells(plan: CellPlan, store: CellStore, run_one: Callable[[Selection], dict], *,
              pretrained: Callable[[], dict], report: Callable[[str], None] | None = None) -> tuple[dict, list[dict]]:
    """Runs every unfinished cell of ``plan`` (finished ones are read back), pretrained reference first.

    Returns the pretrained model's accuracy and one row per cell (its selection and results).
    An empty selection (the ``none`` subset of the combinations sweep) is the pretrained model;
    a selection equal to an earlier one (``after-0`` = ``before-K``) reuses its result (``same_as``).
    """
    total = len(plan.selections)
    notes = share_cells(plan, store, run_one, pretrained=pretrained, report=report)

    def finished(name: str, compute: Callable[[], dict], index: int) -> dict:
        if store.is_done(name):
            result, note = store.result(name), notes.get(name, "kept from the interrupted run")
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


def share_cells(plan: CellPlan, store: CellStore, run_one: Callable[[Selection], dict], *,
                pretrained: Callable[[], dict], report: Callable[[str], None] | None = None) -> dict[str, str]:
    """In a cluster run, every worker's share of the cells; elsewhere nothing. Returns who did which.

    The cells to compute are the pretrained reference and each distinct non-empty selection, in
    plan order; cell ``i`` goes to worker ``i % W``, and a cell finished in any worker's store
    (this run or an earlier one) is not done again. All workers then meet at a barrier; the
    chief goes on to read every cell back, a non-chief worker stops (WorkerFinished).
    """
    cluster = getattr(store.store, "cluster", None)
    if cluster is None:
        return {}
    cluster.start()
    work, seen = [(PRETRAINED, pretrained)], set()
    for selection in plan.selections:
        if selection.indices and selection.indices not in seen:
            seen.add(selection.indices)
            work.append((selection.name, lambda s=selection: run_one(s)))
    before = {name for name, _ in work if store.is_done(name)}
    mine = [(name, compute) for i, (name, compute) in enumerate(work) if cluster.owns(i) and name not in before]
    for name, compute in mine:
        start = time.time()
        store.save(name, compute())
        if report is not None:
            report(f"worker {cluster.index}: cell {name} done ({time.time() - start:.0f} s)")
    cluster.barrier()  # every worker's cells are written
    store.store.refresh()
    if not cluster.chief:
        raise WorkerFinished(cluster.index, len(mine))
    return {name: f"worker {i % cluster.workers}" for i, (name, _) in enumerate(work) if name not in before}


def write_outputs(directory: Path, plan: CellPlan, reference: dict, rows: list[dict], *, sweep: str | None,
                  title: str, header: dict) -> dict:
    """``results.json``, ``results.csv/.md``, ``combinations.csv/.md`` and the sweep's (or single cell's) figure."""
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
    else:
        plots.cell_figure(rows, reference, directory / "retrain_cell.png", title=title)
    write_json(directory / "results.json", results)
    return results


def run(request: RetrainRequest, run, *, progress=None, report: Callable[[str], None] | None = None) -> dict:
    """Runs (or resumes) every cell of ``request`` in ``run`` and writes its tables and figure.

    Writes ``results.json`` (``pretrained_accuracy``, ``cells``, ``combinations`` for that sweep,
    the threats, ``initialisation``), ``results.csv/.md``, ``cells/<cell>/`` and one figure:
    ``retrain_cutoff.png``, ``retrain_layers.png``, ``retrain_combinations.png``,
    ``retrain_reinit.png`` or, for a single cell, ``retrain_cell.png``. Returns the results.
    """
    data = request.data.load()
    model = load_trained_model(request.pretrained)
    check_model_fits(model, data.info, what=f"pretrained model {request.pretrained}")
    plan = plan_cells(model, sweep=request.sweep, part=request.part, cutoff=request.cutoff, modules=request.modules,
                      layers=request.layers, reinit_only=request.reinit_only)
    if not request.reinit_only:
        data.require("train")
    adversarial = request.adversarial()
    eval_threat = request.eval_threat
    fingerprint = model_fingerprint(request.pretrained)
    config = request.train_config(data.info.natural_images)
    run.record_inputs(model=fingerprint, dataset=data.fingerprint,
                      parameters={"pretrained_sha256": fingerprint["sha256"], "augment": config.augment,
                                  "training_threat": adversarial.threat.to_json() if adversarial else None,
                                  "eval_threat": eval_threat.to_json()})
    store = CellStore(run.path, run.store)
    strategy = single_machine_strategy(request.strategy)  # a cluster shares out whole cells
    initialisation = f"fresh (each layer's initializers, seed {config.seed})"
    if request.reinit_only:
        with strategy.scope():
            initial, source = initial_model(model, request.pretrained, config.seed)
        initialisation = {"saved": "the training run's initial weights (initial.weights.h5)",
                          "config": "the training run's initial weights, redrawn from the seeded initializers "
                                    "in the model's config",
                          "fresh": f"fresh (each layer's initializers, seed {config.seed}); the run saved no "
                                   "initial weights"}[source]

        def run_one(selection):
            return reinit_cell(request.pretrained, selection, data, eval_threat, batch_size=config.batch_size,
                               strategy=strategy, seed=config.seed, initial=initial, progress=progress)
    else:
        def run_one(selection):
            return retrain_cell(request.pretrained, selection, data, config, adversarial, eval_threat,
                                store.path(selection.name), strategy=strategy, progress=progress,
                                save_model=request.save_models)

    def pretrained():
        return evaluate_pretrained(request.pretrained, data, eval_threat, batch_size=config.batch_size,
                                   strategy=strategy, seed=config.seed, progress=progress)

    reference, rows = run_cells(plan, store, run_one, pretrained=pretrained, report=report)
    header = {"pretrained": str(request.pretrained), "dataset": data.info.name, "mode": request.run_mode,
              "initialisation": initialisation,
              "training_threat": adversarial.threat.to_json() if adversarial else None,
              "clean_fraction": adversarial.clean_fraction if adversarial else None,
              "fast": bool(adversarial and adversarial.fast),
              "attack_target": adversarial.attack_target if adversarial else None,
              "epochs": None if request.reinit_only else config.epochs,
              "eval_threat": eval_threat.to_json(), "eval_attack": "pgd (true label)"}
    what = {"reinit-only": "one unit reinitialised, no retraining",
            "adversarial": "adversarial retraining", "conventional": "conventional retraining"}[request.run_mode]
    title = (f"{Path(request.pretrained).name} on {data.info.name}: {what} (Siddiqui & Breuel 2021); robust = "
             f"PGD-{eval_threat.steps} {eval_threat.norm} eps={eval_threat.eps:g}")
    return write_outputs(run.path, plan, reference, rows, sweep=request.sweep, title=title, header=header)

