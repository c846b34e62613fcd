"""``advtf evaluate``: clean and robust accuracy of a trained model on the test split.

The strategy-aware accuracy counts are :class:`advtf.evaluation.Evaluator`'s; this job validates the
request, loads the model inside the strategy's scope, counts batch by batch in resumable chunks
(``--resume``) and writes results, table and figure.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

from advtf import validation as check
from advtf.attacks import Threat
from advtf.data import make_batches
from advtf.data.rows import split_rows
from advtf.distribute import STRATEGIES, single_machine_strategy
from advtf.evaluation import Evaluator
from advtf.inputs import DataRequest, load_trained_model, model_fingerprint
from advtf.jobs import Request
from advtf.jobs.attack import accuracy_figure, check_threat, chunk_size
from advtf.runs import write_json, write_table
from advtf.runs.chunks import ChunkStore, process_in_chunks
from advtf.runs.directory import BOOKKEEPING

COUNTS = ("n", "clean", "robust")  # per batch, summed over the split


@dataclasses.dataclass(frozen=True)
class EvaluateRequest(Request):
    """Options of ``advtf evaluate``."""

    model: str
    threat: Threat
    data: DataRequest = DataRequest()
    attack: str = "pgd"
    options: dict = dataclasses.field(default_factory=dict)
    batch_size: int = 256
    jit: bool = False
    strategy: str = "auto"
    checks: bool = True
    check_images: int = 64

    def __post_init__(self):
        check_threat(self.attack, self.threat, self.options)
        check.count("--batch-size", self.batch_size)
        check.count("--check-images", self.check_images)
        check.choice("--strategy", self.strategy, STRATEGIES)
        check.seed(self.data.seed)

    def inputs(self) -> list[str]:
        return [self.model, self.data.dataset]


def run(request: EvaluateRequest, run, *, progress=None, report=None) -> dict[str, Any]:
    """Evaluates the model on the test split (the true label attacked) and writes the run directory.

    ``results.json`` keys: ``clean_accuracy``, ``robust_accuracy`` (correct clean and under attack),
    ``n``, ``attack``, ``options`` (the attack's own), ``threat``, ``dataset``, ``model``, and the
    reliability checks of :mod:`advtf.evaluation_checks` on the first ``check_images`` test images:
    ``checks`` (names run; empty with ``checks=False``) and ``warnings`` (a list of ``{check,
    message, measured}``, empty when all pass; null when not checked). Also
    ``results.csv/.md`` and ``accuracy.png`` (accuracy at eps 0 and at eps, chance marked).
    """
    data, threat = request.data, request.threat
    splits = data.load()
    strategy = single_machine_strategy(request.strategy)  # multiworker: each worker its chunks (execute)
    with strategy.scope():
        model = load_trained_model(request.model, splits.info.image_shape)
    run.record_inputs(dataset=splits.fingerprint, model=model_fingerprint(request.model))
    evaluator = Evaluator(model, threat=threat, attack=request.attack, strategy=strategy, seed=data.seed,
                          jit=request.jit, options=request.options)
    # Counts per batch, kept by resumable chunk; batch i is seeded as in one pass (seed, i), whatever resumed.
    rows = split_rows(splits.test, int(splits.sizes.get("test", 0)), run.path / BOOKKEEPING / "rows")

    def batch(index):
        counts = evaluator.sums(make_batches(tf.data.Dataset.from_tensor_slices((rows[index], rows.labels[index])),
                                             len(index), training=False), start=int(index[0]) // request.batch_size)
        return {k: np.array([counts.get(k, 0.0)]) for k in COUNTS}

    store = ChunkStore(run.store)
    done = process_in_chunks(store, len(rows), chunk_size=chunk_size(request.batch_size),
                             batch_size=request.batch_size, batch_fn=batch, progress=progress,
                             desc=f"{request.attack} on test")
    totals = {k: sum(float(np.sum(c[k])) for c in store.iterate(done.chunks, [k])) for k in COUNTS}
    result = evaluator.accuracies(totals)
    results = {**result, "attack": request.attack, "options": dict(request.options), "threat": threat.to_json(),
               "dataset": splits.info.name, "model": str(request.model), "checks": [], "warnings": None}
    if request.checks:
        results.update(_reliability_checks(request, model, splits))
    write_json(run.path / "results.json", results)
    write_table(run.path, "results", [{"model": str(request.model), "dataset": splits.info.name,
                                       "attack": request.attack, "norm": threat.norm, "eps": threat.eps,
                                       "steps": threat.steps, "restarts": threat.restarts, "n": result["n"],
                                       "clean_accuracy": result["clean_accuracy"],
                                       "robust_accuracy": result["robust_accuracy"]}])
    accuracy_figure(request.model, result["clean_accuracy"], result["robust_accuracy"], threat,
                    run.path / "accuracy.png", num_classes=splits.info.num_classes,
                    title=f"{request.attack}-{threat.steps} on {splits.info.name}")
    return results


def _reliability_checks(request: EvaluateRequest, model, splits) -> dict[str, Any]:
    """``{"checks", "warnings"}`` of :func:`advtf.evaluation_checks.run_checks` on the first test images."""
    from advtf.data import split_arrays
    from advtf.evaluation_checks import run_checks

    x, y = split_arrays(splits.test.take(request.check_images))
    report = run_checks(model, x, y, threat=request.threat, attack=request.attack,
                        num_classes=splits.info.num_classes, options=request.options, seed=request.data.seed,
                        jit=request.jit)
    return report.to_json()
