"""``advtf evaluate``: clean and robust accuracy of a trained model on the test split.

The strategy-aware accuracy loop is :func:`advtf.evaluation.evaluate`; this job validates the
request, loads the model inside the strategy's scope and writes results, table and figure.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from advtf import validation as check
from advtf.attacks import Threat
from advtf.data import make_batches
from advtf.distribute import STRATEGIES, make_strategy
from advtf.evaluation import evaluate
from advtf.inputs import DataRequest, load_trained_model, model_fingerprint
from advtf.jobs import Request
from advtf.jobs.attack import accuracy_figure, check_threat
from advtf.runs import write_json, write_table


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
    strategy = make_strategy(request.strategy)
    with strategy.scope():
        model = load_trained_model(request.model, splits.info.image_shape)
    run.record_inputs(dataset=splits.fingerprint, model=model_fingerprint(request.model))
    bar = progress(total=None, desc=f"{request.attack} on test") if progress else None
    result = evaluate(model, make_batches(splits.test, request.batch_size, training=False), threat=threat,
                      attack=request.attack, strategy=strategy, seed=data.seed, progress=bar, jit=request.jit,
                      options=request.options)
    if bar is not None:
        bar.close()
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
