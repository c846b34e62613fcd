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

from advtf import __version__
from advtf import validation as check
from advtf.data.registry import list_datasets
from advtf.errors import UserError
from advtf.jobs.reproduce.estimate import gradient_passes
from advtf.jobs.reproduce.plan import Plan, make_plan
from advtf.jobs.reproduce.preset import BUDGETS, PAPERS, load_preset
from advtf.jobs.reproduce.report import PaperReport, write_report
from advtf.jobs.reproduce.runner import locked, on_the_chief, open_directory, results_reader, run_plan
from advtf.jobs.reproduce.verdict import judge
from advtf.runs import normalised
from advtf.runs.cluster import Cluster, agreed, decode_version, encode_version, fingerprint

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
              execute: Callable | None = None, strategy: str = "auto", cluster_timeout: float | None = None,
              cluster: Cluster | None = None) -> dict:
    """Runs the plans' unfinished steps and writes the report; returns ``{paper: [claim outcomes]}``.

    Under ``strategy`` ``multiworker`` (or ``auto`` with TF_CONFIG set) this process is one worker
    of the cluster (joined within ``cluster_timeout`` seconds; ``cluster`` injects one, for tests):
    see :func:`reproduce_on_cluster`. A non-chief worker returns ``{"worker": index, "workers": count}``.
    """
    out = Path(out).resolve()
    if cluster is None and _on_a_cluster(strategy):
        from advtf.distribute.cluster import DEFAULT_TIMEOUT, connect

        _, cluster = connect(DEFAULT_TIMEOUT if cluster_timeout is None else cluster_timeout)
    if cluster is not None:
        return reproduce_on_cluster(request, out, cluster, resume=resume, overwrite=overwrite, progress=progress,
                                    report=report, execute=execute)
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


def _on_a_cluster(strategy: str) -> bool:
    """``--strategy multiworker``, or ``auto`` with TF_CONFIG set (checked without starting TensorFlow's runtime)."""
    if strategy not in ("auto", "multiworker"):
        raise UserError(f"advtf reproduce takes --strategy auto or multiworker (got {strategy!r}); each step "
                        "picks this machine's devices itself")
    from advtf.distribute.strategy import cluster_config

    return strategy == "multiworker" or cluster_config() is not None


def _plan_fingerprint(plans: list[Plan], resume: bool, overwrite: bool) -> int:
    """What every worker's command must agree on: each step's job and request, and --resume/--overwrite."""
    return fingerprint([[(s.id, s.job, normalised(s.request.to_json())) for s in plan.steps] for plan in plans]
                       + [bool(resume), bool(overwrite)])


def reproduce_on_cluster(request: ReproduceRequest, out: Path, cluster: Cluster, *, resume: bool, overwrite: bool,
                         progress: Callable | None, report: Callable[[str], None] | None,
                         execute: Callable | None) -> dict:
    """:func:`reproduce` as one worker of ``cluster``; every worker runs the same command.

    The chief alone owns ``out`` (its lock, ``reproduce.json``, ``state/``, the report). At the
    start every worker's plan, advtf version and run flags are compared (one line, exit 2 on every
    worker when they differ or the chief refuses ``out``); then all walk the plan in lockstep
    (:func:`run_plan`). A lost worker stops the others at the next exchange; ``--resume`` on every
    worker keeps the finished steps and resumes the interrupted one from its chunks.
    """
    say = report or (lambda text: None)
    problem: UserError | None = None
    plans: list[Plan] = []
    lock = None
    try:
        plans = plan_for(request, out)
        check_datasets(plans, request.data_dir)
    except UserError as e:
        problem = e
    if cluster.chief and problem is None:
        lock = locked(out)
        try:
            lock.acquire()
        except UserError as e:
            problem = e
    try:
        rows = cluster.gather([int(problem is None), _plan_fingerprint(plans, resume, overwrite) if plans else 0]
                              + encode_version(__version__))
        bad = [w for w, row in enumerate(rows) if not row[0]]
        versions = [decode_version(row[2:]) for row in rows]
        if problem is not None:
            raise agreed(problem)
        if bad:
            raise agreed(UserError(f"worker(s) {', '.join(map(str, bad))} could not start the reproduction (their "
                                   "message says why); fix it and start every worker again"))
        odd = [w for w, v in enumerate(versions) if v != versions[0]]
        if odd:
            raise agreed(UserError("advtf versions differ across the cluster ("
                                   + ", ".join(f"worker {w} runs {versions[w]}" for w in odd)
                                   + f", the chief {versions[0]}); install the same advtf on every worker"))
        other = [w for w, row in enumerate(rows) if row[1] != rows[0][1]]
        if other:
            raise agreed(UserError(f"worker(s) {', '.join(map(str, other))} were started with another reproduction "
                                   "than the chief (paper, budget, --data-dir, --out, --resume or the presets differ); "
                                   "start every worker with the same command line"))
        problem = None  # all agree: the chief opens (or empties, for --overwrite) out and tells the others
        if cluster.chief:
            try:
                open_directory(out, paper=request.paper, budget=request.budget, resume=resume, overwrite=overwrite)
            except UserError as e:
                problem = e
        if not cluster.agree(problem is None)[0]:
            raise agreed(problem or UserError(f"the chief (worker 0) refused --out {out} (its message says why); fix "
                                              "it and start every worker again"))
        say(f"reproducing on a cluster of {cluster.workers} workers: this is worker {cluster.index}"
            + (f", the chief (it writes {out})" if cluster.chief else ""))
        for plan in plans:
            if len(plans) > 1:
                say(f"{plan.preset.title}: {len(plan.steps)} steps")
            run_plan(plan, progress=progress, report=report, execute=execute, cluster=cluster)
        claims = on_the_chief(  # the chief's last word: whether it wrote the report
            cluster, lambda: write_report(out, [PaperReport(plan, judge(plan.preset.claims, results_reader(plan),
                                                                        plan.preset.variables.get(plan.budget, {})))
                                                for plan in plans]),
            f"the chief (worker 0) did not write the report in {out} (its message says why); run every worker "
            "again with --resume")
        return claims if cluster.chief else {"worker": cluster.index, "workers": cluster.workers}
    finally:
        if lock is not None:
            lock.release()


__all__ = ["ReproduceRequest", "dry_run_rows", "plan_for", "reproduce", "reproduce_on_cluster", "check_datasets"]
