"""Jobs: one module per command, each a validated ``Request`` and ``run(request, run) -> results``.

A job is one command's work: a request in, one run directory out. :func:`execute` gives every job
the same guarantees (:class:`advtf.runs.RunDir`: the lock, exact-or-refused resume, safe
overwrite, crash safety; SIGINT/SIGTERM as :class:`advtf.runs.Interrupted`), so a job module
holds only its own work. ``JOBS`` is the one table of commands: the CLI takes its command list
and summaries from it, and imports a job's module only when that command runs (TensorFlow takes
seconds to import; ``advtf --help`` should not wait for it).

Adding an analysis command: a job module here (Request + run), its computation in
``advtf/analysis``, its figure in ``advtf/plots``, one ``register`` line below, and one Click
function in ``cli/`` that maps options onto the Request.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from advtf.registry import Registry
from advtf.runs import RunDir, interruptible, normalised


@dataclass(frozen=True)
class JobSpec:
    """A registered command: its job module (None for listings that write no run directory),
    its Click function (``module:function``), one-line summary and whether it can resume."""

    name: str
    summary: str
    cli: str
    module: str | None = None
    resumable: bool = False
    cluster: bool = False  # under --strategy multiworker, workers share its chunks or cells (advtf.runs.cluster)


JOBS: Registry[JobSpec] = Registry("command", "see `advtf --help`")


def register(name: str, summary: str, *, cli: str, module: str | None = None, resumable: bool = False,
             cluster: bool = False) -> None:
    JOBS.register(name, JobSpec(name, summary, cli, module, resumable, cluster))


class Request:
    """Base of every job's request: a frozen dataclass validated in ``__post_init__``.

    ``to_json()`` is what a resume must match (every field; run-control flags are not fields);
    ``inputs()`` the paths the job reads, which ``--overwrite`` never replaces.
    """

    def to_json(self) -> dict[str, Any]:
        return normalised(dataclasses.asdict(self))

    def inputs(self) -> list[str]:
        return []


def execute(name: str, request: Request, *, out, overwrite: bool = False, resume: bool = False,
            progress: Callable | None = None, report: Callable[[str], None] | None = None,
            cluster_timeout: float | None = None, cluster=None) -> dict:
    """Runs the job ``name`` on ``request`` into the run directory ``out``; returns its results.

    A cluster job (``JobSpec.cluster``) under ``--strategy multiworker`` first joins the cluster of
    ``TF_CONFIG`` (within ``cluster_timeout`` seconds); its workers share the chunks or cells and
    the chief alone writes ``out`` (:mod:`advtf.runs.cluster`). A non-chief worker returns
    ``{"worker": index, "workers": count}`` instead of the job's results. ``cluster`` (an
    :class:`advtf.runs.cluster.Cluster`) runs a cluster job on that one instead (tests: threads).
    """
    spec = JOBS.get(name)
    module = importlib.import_module(spec.module)
    if not spec.cluster and _trains_on_cluster(request):
        from advtf.distribute.cluster import DEFAULT_TIMEOUT, connect

        # TensorFlow configures collective ops only before the first tensor (loading the data makes
        # some): join now; make_strategy("multiworker") hands out this strategy later.
        connect(DEFAULT_TIMEOUT if cluster_timeout is None else cluster_timeout)
    if spec.cluster:  # a job without --strategy runs as "auto": a cluster run when TF_CONFIG is set
        from advtf.distribute import is_multiworker

        if cluster is not None or is_multiworker(getattr(request, "strategy", "auto")):
            return _execute_on_cluster(spec, module, request, out=out, overwrite=overwrite, resume=resume,
                                       progress=progress, report=report, timeout=cluster_timeout, cluster=cluster)
    with interruptible(), RunDir(out, overwrite=overwrite, resume=resume, resumable=spec.resumable,
                                 request=request.to_json(), inputs=request.inputs()) as run:
        results = module.run(request, run, progress=progress, report=report)
        _check_outputs(name, run.path)
    return results


def _trains_on_cluster(request: Request) -> bool:
    """Whether a job with its own ``--strategy`` (train) trains with MultiWorkerMirroredStrategy."""
    strategy = getattr(request, "strategy", None)
    if not isinstance(strategy, str):
        return False
    from advtf.distribute import is_multiworker

    return is_multiworker(strategy)


def _execute_on_cluster(spec: JobSpec, module, request: Request, *, out, overwrite, resume, progress, report,
                        timeout, cluster=None) -> dict:
    """:func:`execute` as one worker of a cluster: the chief's results, or a worker's place."""
    from advtf.distribute.cluster import DEFAULT_TIMEOUT, connect
    from advtf.runs.cluster import cluster_run

    if cluster is None:
        _, cluster = connect(DEFAULT_TIMEOUT if timeout is None else timeout)
    results: dict = {"worker": cluster.index, "workers": cluster.workers}
    with interruptible(), cluster_run(cluster, out, overwrite=overwrite, resume=resume, resumable=spec.resumable,
                                      request=request.to_json(), inputs=request.inputs()) as run:
        results = module.run(request, run, progress=progress, report=report)
        _check_outputs(spec.name, run.path)
    return results


def _check_outputs(name: str, path: Path) -> None:
    """Every job writes results.json, at least one table (CSV + Markdown) and one figure."""
    missing = [what for what, pattern in (("results.json", "results.json"), ("a CSV table", "*.csv"),
                                          ("a Markdown table", "*.md"), ("a figure", "*.png"))
               if not any(path.glob(pattern))]
    if missing:
        raise RuntimeError(f"job {name} wrote no {', no '.join(missing)}")
    json.loads((path / "results.json").read_text())


# The command table, in the order `advtf --help` lists it.
register("train", "Train a standard or adversarially robust classifier.", cli="advtf.cli.train:train",
         module="advtf.jobs.train", resumable=True)
register("evaluate", "Clean and robust accuracy of a trained model.", cli="advtf.cli.evaluate:evaluate",
         module="advtf.jobs.evaluate", resumable=True, cluster=True)
register("attack", "Attack a model; save the adversarial dataset with success and norms.",
         cli="advtf.cli.attack:attack", module="advtf.jobs.attack", resumable=True,
         cluster=True)
register("quickstart", "The main job: standard vs L2-robust model on Fashion-MNIST, with a report.",
         cli="advtf.cli.quickstart:quickstart", module="advtf.jobs.quickstart", resumable=True)
register("frequency", "Filtered and frequency-swapped accuracy, mean spectra of adversarial examples "
         "(the local-properties paper).", cli="advtf.cli.local:frequency",
         module="advtf.jobs.frequency", resumable=True, cluster=True)
register("perturbations", "Adversarial perturbations side by side, with local-consistency statistics "
         "(the local-properties paper).",
         cli="advtf.cli.local:perturbations", module="advtf.jobs.perturbations", resumable=True,
         cluster=True)
register("response", "Local response differences per layer, natural vs adversarial (the local-properties paper).",
         cli="advtf.cli.local:response", module="advtf.jobs.response", resumable=True, cluster=True)
register("kernels", "Kernel smoothness per conv layer (magnitude, variance, TV; the local-properties paper).",
         cli="advtf.cli.local:kernels", module="advtf.jobs.kernels")
register("features", "Natural vs adversarial feature-vector distributions per module: MMD, C2ST, t-SNE "
         "(Siddiqui & Breuel 2021).", cli="advtf.cli.features:features", module="advtf.jobs.features",
         resumable=True, cluster=True)
register("robustify", "Robustified test set R_eps from a model's representation (Springer et al. 2021).",
         cli="advtf.cli.derived:robustify", module="advtf.jobs.robustify", resumable=True,
         cluster=True)
register("relabel", "Zero-robust / negative-robust relabeled dataset, targeted attacks (Springer et al. 2021).",
         cli="advtf.cli.derived:relabel", module="advtf.jobs.relabel", resumable=True,
         cluster=True)
register("robust-table", "Accuracy matrix: classifiers x test sets (e.g. robustified sets), with chance marked.",
         cli="advtf.cli.transfer:robust_table", module="advtf.jobs.robust_table", resumable=True,
         cluster=True)
register("transfer-eval", "Transfer attacks: sources of varying robustness x victim models (Springer et al. 2021).",
         cli="advtf.cli.transfer:transfer_eval", module="advtf.jobs.transfer_eval", resumable=True,
         cluster=True)
register("retrain", "Block-wise retraining: reinitialise and retrain modules, the rest frozen "
         "(Siddiqui & Breuel 2021).", cli="advtf.cli.retrain:retrain", module="advtf.jobs.retrain",
         resumable=True, cluster=True)
register("dissect", "Network dissection: unit concepts (IoU), sensitivity to attacks, p-values (Xu et al. 2019).",
         cli="advtf.cli.dissect:dissect", module="advtf.jobs.dissect", resumable=True, cluster=True)
register("cam", "CAMs of natural/adversarial images and the interpretability score (Xu et al. 2019).",
         cli="advtf.cli.interpret:cam", module="advtf.jobs.cam", resumable=True, cluster=True)
register("psr", "Grid sensitivity and promotion-suppression ratio of perturbations, refined attacks "
         "(Xu et al. 2019).", cli="advtf.cli.interpret:psr", module="advtf.jobs.psr", resumable=True,
         cluster=True)
register("reproduce", "A paper's experiments in one resumable command, with a report judging its claims.",
         cli="advtf.cli.reproduce:reproduce", module="advtf.jobs.reproduce", resumable=True)
register("datasets", "List registered datasets and where they are found.", cli="advtf.cli.info:datasets")
register("models", "List registered models.", cli="advtf.cli.info:models")
register("attacks", "List registered attacks, their norms and options.", cli="advtf.cli.info:attacks")
register("env", "Versions, devices and strategy, for bug reports.", cli="advtf.cli.info:env")
