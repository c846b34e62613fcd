"""``advtf perturbations``: adversarial perturbations of several models side by side, with locality
statistics (the local-properties paper, Sec. 3, Figures 3, 7 and 8).

The statistics and the choice of examples are :mod:`advtf.analysis.perturbations`; this job attacks
every model in resumable chunks (:class:`~advtf.jobs.attack_passes.AttackPasses`: ``--resume``,
shared by the workers of a cluster run), then measures and writes the results, tables and figures.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from advtf import validation as check
from advtf.analysis.perturbations import (ONLY, STATS, empty_note, model_summary, outcome_rows, rows_at,
                                          select_examples)
from advtf.errors import UserError
from advtf.inputs import fingerprints, load_models, model_name
from advtf.jobs.attack_passes import AttackPasses
from advtf.jobs.frequency import AttackedModelsRequest
from advtf.plots.local import perturbation_grid
from advtf.plots.robustness import accuracy_vs_eps
from advtf.runs import write_json, write_table


@dataclasses.dataclass(frozen=True)
class PerturbationsRequest(AttackedModelsRequest):
    """Options of ``advtf perturbations``: which examples to show (``only``) and how many (``count``)."""

    only: str = "successful"
    count: int = 6

    def __post_init__(self):
        super().__post_init__()
        check.choice("--only", self.only, ONLY)
        check.count("--count", self.count)


def run(request: PerturbationsRequest, run, *, progress=None, report=None) -> dict[str, Any]:
    """The Figure 3/7/8 grid for the models side by side, and the statistics.

    Writes ``results.json`` (``models``: per model ``model``, ``n``, ``success_rate``, clean and
    adversarial accuracy and the mean :data:`~advtf.analysis.perturbations.STATS` over all images
    and over the ones shown; ``shown``: indices; ``note`` when nothing matched ``--only``),
    ``perturbations.csv/.md`` (the same per model), ``examples.csv/.md`` (per shown example and
    model: label, prediction, success), ``perturbations.png`` (when an example matched) and
    ``accuracy.png`` (each model's accuracy before and after the attack).
    """
    attack, data, paths = request.attack, request.data, list(request.models)
    splits = data.load()
    attack.check(splits.info.num_classes)
    models = load_models(paths, splits.info)
    run.record_inputs(dataset=splits.fingerprint, models=fingerprints(paths))
    passes = AttackPasses.of_test_split(run, splits, batch_size=request.batch_size, seed=data.seed,
                                        progress=progress)
    for k, model in enumerate(models):
        passes.add(model, attack, f"{attack.name} on model {k + 1}")
    passes.run_all()  # a non-chief worker of a cluster run stops here
    # Per model, outcomes and statistics per example (no images); the shown images are read back from the store.
    def batches(model):
        return passes.pairs(model, splits, attack, batch_size=request.batch_size, seed=data.seed)

    attacked = [outcome_rows(batches(model), attack.threat.eps) for model in models]
    if not attacked[0]:
        raise UserError(f"the test split of {data.dataset} is empty; nothing to attack")
    shown = select_examples([r["success"].astype(bool) for r in attacked],
                            [r["clean_correct"].astype(bool) for r in attacked], request.only, request.count)
    threat = attack.threat
    summary, example_rows = [], []
    for path, rows in zip(paths, attacked):
        entry, examples = model_summary(path, rows, shown, threat.eps)
        summary.append(entry)
        example_rows += examples
    note = None
    title = f"{attack.name} ({threat.norm}, eps={threat.eps:g})"
    if len(shown):
        pictures = [rows_at(batches(model), shown) for model in models]
        columns = [{"name": model_name(p), "image": pic["image"],
                    "prediction": r["adversarial_prediction"][shown],
                    "success": r["success"][shown]} for p, r, pic in zip(paths, attacked, pictures)]
        perturbation_grid(pictures[0]["natural"], columns, run.path / "perturbations.png", eps=threat.eps,
                          title=f"{title}, {request.only} attacks")
    else:
        note = empty_note(request.only, len(attacked[0]["label"]))
    accuracy_vs_eps({model_name(e["model"]): [(0.0, e["clean_accuracy"]), (float(threat.eps),
                                                                           e["adversarial_accuracy"])]
                     for e in summary}, run.path / "accuracy.png", xlabel=f"{threat.norm} eps",
                    chance=1.0 / splits.info.num_classes, title=f"accuracy before and after {title}")
    write_table(run.path, "perturbations", summary)
    write_table(run.path, "examples", example_rows, ["index", "model", "label", "prediction", "success", *STATS])
    results = {"models": summary, "shown": shown.tolist(), "only": request.only, "note": note,
               **attack.to_json(), "dataset": splits.info.name}
    write_json(run.path / "results.json", results)
    return results
