"""Runs a plan step by step, in-process through :func:`advtf.jobs.execute`, skipping finished steps.

The reproduction directory ``DIR`` holds ``reproduce.json`` (what it reproduces), ``steps/<id>/``
(each an ordinary run directory) and ``state/<id>.json`` (per finished step: its request and the
sha256 of each dependency's manifest). A step is skipped when its run directory is finished, its
recorded request equals the step's request and its dependencies are the ones it was run on; so a
changed preset value reruns exactly the steps whose request changed and everything downstream.
``DIR.lock`` keeps a second reproduction out of ``DIR`` while one runs. On a cluster the workers
walk the plan in lockstep and the chief alone owns ``DIR`` (:func:`run_plan`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from advtf import jobs
from advtf.errors import UserError
from advtf.jobs.reproduce.plan import Plan, Step
from advtf.runs import MANIFEST, OutLock, normalised, read_json, sha256_file, write_json
from advtf.runs.cluster import Cluster, agreed

MARKER = "reproduce.json"


def _manifest_digest(step_dir: Path) -> str | None:
    path = step_dir / MANIFEST
    return sha256_file(path) if path.is_file() else None


def step_state(plan: Plan, step: Step) -> dict:
    """What a finished step must match to be kept: job, request and the dependencies' manifests."""
    return {"job": step.job, "request": normalised(step.request.to_json()),
            "depends": {d: _manifest_digest(plan.step(d).out) for d in step.depends}}


def is_finished(plan: Plan, step: Step) -> bool:
    """True when ``step``'s run directory is finished with the same request on the same dependencies."""
    state_path = plan.out / "state" / f"{step.id}.json"
    try:
        manifest = read_json(step.out / MANIFEST)
        state = read_json(state_path)
    except (OSError, ValueError):
        return False
    want = step_state(plan, step)
    return (isinstance(manifest, dict) and manifest.get("options") == want["request"]
            and isinstance(state, dict) and {k: state.get(k) for k in want} == want)


def _partial_matches(step: Step) -> bool:
    """Whether the step's interrupted run (``.partial``) was started with this request (then it resumes)."""
    record = step.out.with_name(step.out.name + ".partial") / ".advtf" / "request.json"
    try:
        return read_json(record).get("request") == normalised(step.request.to_json())
    except (OSError, ValueError, AttributeError):
        return False


def open_directory(out: Path, *, paper: str, budget: str, resume: bool, overwrite: bool) -> None:
    """Checks ``--out`` for a new, resumed or overwritten reproduction (UserError otherwise) and marks it."""
    marker = out / MARKER
    if resume and overwrite:
        raise UserError("--resume continues a reproduction and --overwrite starts it again; give one of them")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a directory name")
    if out.exists() and any(out.iterdir()):
        if not marker.is_file():
            raise UserError(f"--out {out} exists and is no advtf reproduction; choose another --out")
        recorded = read_json(marker)
        if not resume and not overwrite:
            raise UserError(f"{out} exists; pass --resume to continue it (finished steps with unchanged settings "
                            "are kept) or --overwrite to start again")
        if resume and (recorded.get("paper"), recorded.get("budget")) != (paper, budget):
            raise UserError(f"{out} reproduces {recorded.get('paper')} at budget {recorded.get('budget')}; "
                            "resume with those or choose another --out")
        if overwrite:
            for child in out.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    elif resume:
        raise UserError(f"nothing to resume at {out}; drop --resume to start a reproduction")
    out.mkdir(parents=True, exist_ok=True)
    write_json(marker, {"paper": paper, "budget": budget})


def shares_work(step: Step) -> bool:
    """Whether every worker of a cluster runs ``step`` (a cluster job: they share its chunks or cells).

    Under a cluster, a request's ``strategy`` of ``auto`` means ``multiworker`` (TF_CONFIG is set).
    """
    return jobs.JOBS.get(step.job).cluster and getattr(step.request, "strategy", "auto") in ("auto", "multiworker")


@contextmanager
def alone():
    """The chief running a step by itself: TF_CONFIG hidden, so the job's ``--strategy auto`` picks
    this machine's devices instead of waiting for the workers (who wait at a barrier)."""
    saved = os.environ.pop("TF_CONFIG", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["TF_CONFIG"] = saved


def run_plan(plan: Plan, *, progress: Callable | None = None, report: Callable[[str], None] | None = None,
             execute: Callable = None, cluster: Cluster | None = None) -> dict[str, dict]:
    """Runs every unfinished step of ``plan`` in order; returns ``{step id: {"ran": bool, "seconds"}}``.

    An exception in a step propagates (the finished steps stay finished, an interrupted resumable
    step keeps its ``.partial``): the next ``--resume`` continues from there.

    On a ``cluster`` every worker walks the plan in lockstep: the chief decides which steps are
    finished and tells the others (``cluster.gather``). A cluster job (:func:`shares_work`) runs on
    every worker, sharing its chunks or cells; any other step (training, kernels, an analysis that
    is no cluster job) runs on the chief alone while the others wait at a barrier. Only the chief
    writes ``DIR``; a worker writes only its own resume stores inside the steps' ``.partial``.
    """
    execute = execute or jobs.execute
    say = report or (lambda text: None)
    chief = cluster is None or cluster.chief
    done: dict[str, dict] = {}
    total = len(plan.steps)
    if chief:
        (plan.out / "steps").mkdir(parents=True, exist_ok=True)
        (plan.out / "state").mkdir(parents=True, exist_ok=True)
    for k, step in enumerate(plan.steps, 1):
        finished = chief and is_finished(plan, step)
        resume = chief and not finished and _partial_matches(step) and jobs.JOBS.get(step.job).resumable
        if cluster is not None:  # the chief's word, so every worker skips the same steps (and says so)
            finished, resume = (bool(v) for v in cluster.gather([int(finished), int(resume)])[0])
        if finished:
            say(f"step {k} of {total}: {step.id} (kept: finished with the same settings)")
            done[step.id] = {"ran": False, "seconds": 0.0}
            continue
        overwrite = chief and not resume and (step.out.exists()
                                              or step.out.with_name(step.out.name + ".partial").exists())
        shared = cluster is not None and shares_work(step)
        where = "" if cluster is None else ", every worker" if shared else ", on the chief"
        say(f"step {k} of {total}: {step.id} ({step.job}{', resumed' if resume else ''}{where})")
        start = time.time()
        if cluster is None:
            execute(step.job, step.request, out=step.out, overwrite=overwrite, resume=resume, progress=progress,
                    report=report)
        elif shared:
            execute(step.job, step.request, out=step.out, overwrite=overwrite, resume=resume, progress=progress,
                    report=report, cluster=cluster)
        else:
            _step_on_the_chief(cluster, step, lambda: execute(step.job, step.request, out=step.out, overwrite=overwrite,
                                                         resume=resume, progress=progress, report=report))
        seconds = time.time() - start
        if chief:
            state = step_state(plan, step)
            write_json(plan.out / "state" / f"{step.id}.json", {**state, "seconds": round(seconds, 3)})
        done[step.id] = {"ran": True, "seconds": seconds}
    return done


def on_the_chief(cluster: Cluster, run: Callable[[], object], refused: str):
    """``run()`` on the chief alone; every worker then learns whether it finished, so all go on or stop.

    Returns the chief's result (None on the others); a failure on the chief reaches every other
    worker as ``UserError(refused)``.
    """
    if not cluster.chief:
        if not all(cluster.agree(True)):
            raise agreed(UserError(refused))
        return None
    try:
        result = run()
    except BaseException:
        try:
            cluster.agree(False)
        except Exception:  # a lost worker: nobody is waiting for the word
            pass
        raise
    cluster.agree(True)
    return result


def _step_on_the_chief(cluster: Cluster, step: Step, run: Callable[[], object]) -> None:
    """A step that is no cluster job: the chief runs it alone (on its own devices) while the others wait."""
    def alone_run():
        with alone():
            run()

    on_the_chief(cluster, alone_run, f"the chief (worker 0, {_address(cluster)}) stopped at step {step.id} (its "
                                     "message says why); fix it and run every worker again with --resume")


def _address(cluster: Cluster) -> str:
    return cluster.addresses[0] if cluster.addresses else "worker 0"


def results_reader(plan: Plan) -> Callable[[str], dict | None]:
    """``step id -> results.json`` of the plan's finished steps (None for a step absent or unfinished)."""
    ids = {s.id: s for s in plan.steps}

    def read(sid: str):
        step = ids.get(sid)
        if step is None:
            return None
        try:
            return json.loads((step.out / "results.json").read_text())
        except (OSError, ValueError):
            return None
    return read


def locked(out: Path):
    """The lock of a reproduction directory (``DIR.lock``) for the whole run."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return OutLock(out)
