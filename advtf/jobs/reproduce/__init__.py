"""``advtf reproduce PAPER``: a paper's experiments as one resumable plan of jobs, with a report.

A preset (``data/presets/<paper>.toml``) lists the steps (jobs with their options per budget and
their dependencies) and the claims with the rules that decide them. :func:`plan_for` turns it into
validated job requests in dependency order; :func:`reproduce` runs the unfinished steps in-process
through :func:`advtf.jobs.execute` into ``DIR/steps/<id>/`` (``DIR/<paper>/steps/<id>/`` for
``all``) and writes ``report.md`` / ``report.html``. It does not itself run inside one RunDir: the
steps are the run directories, so a finished step survives a kill and a changed preset reruns only
what it changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from advtf import validation as check
from advtf.data.registry import list_datasets
from advtf.errors import UserError
from advtf.jobs.reproduce.estimate import gradient_passes
from advtf.jobs.reproduce.plan import Plan, make_plan
from advtf.jobs.reproduce.preset import BUDGETS, PAPERS, load_preset
from advtf.jobs.reproduce.report import PaperReport, write_report
from advtf.jobs.reproduce.runner import locked, open_directory, results_reader, run_plan
from advtf.jobs.reproduce.verdict import judge

# How to get a dataset a budget needs (the tensorflow-datasets builds advtf's loaders read).
GET_DATASET = {
    "cifar10": "`tfds build cifar10 --data_dir DIR` on a machine with internet",
    "imagenet9": "`tfds build imagenet_resized/64x64 --data_dir DIR` (needs the ImageNet download terms)",
    "imagenette": "`tfds build imagenette/320px-v2 --data_dir DIR` on a machine with internet",
    "mnist": "`tfds build mnist --data_dir DIR` on a machine with internet",
    "fashion_mnist": "`apt-get install dataset-fashion-mnist` (Debian) or the idx files in DIR",
}


@dataclass(frozen=True)
class ReproduceRequest:
    """What to reproduce: a paper (or ``all``), a budget, and the ``--data-dir`` passed to every step."""

    paper: str
    budget: str = "smoke"
    data_dir: str | None = None
    preset_dir: str | None = None  # tests: presets from another folder

    def __post_init__(self):
        if self.preset_dir is None:
            check.choice("PAPER", self.paper, (*PAPERS, "all"))
        check.choice("--budget", self.budget, BUDGETS)

    @property
    def papers(self) -> tuple[str, ...]:
        return PAPERS if self.paper == "all" else (self.paper,)


def plan_for(request: ReproduceRequest, out: str | Path) -> list[Plan]:
    """One validated plan per paper (``out`` itself for one paper, ``out/<paper>`` for ``all``)."""
    out = Path(out).resolve()
    plans = []
    for paper in request.papers:
        preset = load_preset(paper, request.preset_dir)
        plans.append(make_plan(preset, request.budget, out / paper if request.paper == "all" else out,
                               data_dir=request.data_dir))
    return plans


def check_datasets(plans: list[Plan], data_dir: str | None) -> None:
    """UserError (one line, how to get it) when a registered dataset a plan reads is not on this machine."""
    from advtf.jobs.reproduce.plan import datasets_of

    available = {row["name"]: (row["available"], row["where"]) for row in list_datasets(data_dir)}
    for plan in plans:
        for name in datasets_of(plan):
            if name in available and not available[name][0]:
                how = GET_DATASET.get(name, "its download")
                raise UserError(f"{plan.preset.title}, budget {plan.budget}, needs {name}, which is {available[name][1]}; "
                                f"get it with {how}, then pass --data-dir DIR")


def dry_run_rows(plans: list[Plan]) -> list[dict]:
    """Per step: paper, id, job, dependencies and the estimated gradient passes."""
    return [{"paper": plan.paper, "step": step.id, "job": step.job, "depends": list(step.depends),
             "gradient_passes": gradient_passes(plan, step), "request": step.request}
            for plan in plans for step in plan.steps]


def reproduce(request: ReproduceRequest, out: str | Path, *, resume: bool = False, overwrite: bool = False,
              progress: Callable | None = None, report: Callable[[str], None] | None = None,
              execute: Callable | None = None) -> dict:
    """Runs the plans' unfinished steps and writes the report; returns ``{paper: [claim outcomes]}``."""
    out = Path(out).resolve()
    plans = plan_for(request, out)
    check_datasets(plans, request.data_dir)
    lock = locked(out)
    lock.acquire()
    try:
        open_directory(out, paper=request.paper, budget=request.budget, resume=resume, overwrite=overwrite)
        say = report or (lambda text: None)
        reports = []
        for plan in plans:
            if len(plans) > 1:
                say(f"{plan.preset.title}: {len(plan.steps)} steps")
            run_plan(plan, progress=progress, report=report, execute=execute)
            reports.append(PaperReport(plan, judge(plan.preset.claims, results_reader(plan),
                                                      plan.preset.variables.get(plan.budget, {}))))
        return write_report(out, reports)
    finally:
        lock.release()


__all__ = ["ReproduceRequest", "dry_run_rows", "plan_for", "reproduce", "check_datasets"]
