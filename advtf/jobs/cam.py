"""``advtf cam``: class activation maps of natural and adversarial images and the interpretability
score of Xu et al. 2019 (Section 4, Eq. 5-6, Table 2, Figures 3 and A1).

The maps and scores are :func:`advtf.analysis.interpret.cam_statistics`; this job validates the
request, loads the dataset and models, attacks every model first as a resumable pass
(:class:`advtf.jobs.attack_passes.AttackPasses`: ``--resume``; shared by the workers of a cluster),
then scores the stored pairs and writes ``results.json``, the tables and the figures.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from advtf import validation as check
from advtf.adversarial import AttackRequest
from advtf.analysis.cam import DEFAULT_QUANTILE, METHODS, MapMaker
from advtf.analysis.interpret import MAP_KEYS, cam_statistics
from advtf.errors import ResultError, UserError
from advtf.inputs import DataRequest, fingerprints, load_models, model_name
from advtf.jobs import Request
from advtf.jobs.attack import check_attack_request
from advtf.jobs.attack_passes import AttackPasses
from advtf.plots.interpret import cam_figure
from advtf.runs import write_json, write_table

COLUMNS = ["model", "attack", "method", "layer", "images", "pairs", "success_rate", "is_x0_t0", "is_xadv_t",
           "is_xadv_t0", "is_x0_t", *[f"undefined_{k}" for k in MAP_KEYS], *[f"map_{k}" for k in MAP_KEYS]]

DEFINITION = {
    "IS": "||B(x,c) o delta||_2 / ||delta||_2 (Eq. 5-6), B = pixels with map >= nu, nu the map's quantile, "
          "when nu > 0; B = the positive pixels when nu = 0",
    "undefined_<key>": "pairs whose map has no region (all zero or constant): IS undefined, left out of the means",
    "pairs": "successful adversarial examples of correctly classified test images",
    "t": "the target (targeted) or the adversarial prediction (untargeted)",
    "map_<key>": "mean of the map after dividing the four maps of a pair by their joint maximum "
                 "(Figure 3's shared baseline)",
}


def check_models(models) -> None:
    """At least one MODEL path (the analyses of Xu et al. 2019 compare models side by side)."""
    if not models:
        raise UserError("give at least one MODEL (a run directory of `advtf train` or a .keras file)")


def check_maps(method: str, quantile: float, examples: int) -> None:
    """The map options shared by ``advtf cam`` and ``advtf psr``; ``examples`` >= 1, the figures are outputs."""
    check.choice("--method", method, METHODS)
    check.fraction("--quantile", quantile)
    check.count("--examples", examples)


@dataclasses.dataclass(frozen=True)
class CamRequest(Request):
    """Options of ``advtf cam``: one attack on one or more models, the map method and nu's quantile."""

    models: tuple
    attack: AttackRequest
    data: DataRequest = DataRequest()
    method: str = "cam"
    layer: str | None = None
    quantile: float = DEFAULT_QUANTILE
    examples: int = 4
    batch_size: int = 100

    def __post_init__(self):
        check_models(self.models)
        check_attack_request(self.attack)
        check_maps(self.method, self.quantile, self.examples)
        check.count("--batch-size", self.batch_size)

    def inputs(self) -> list[str]:
        return [*map(str, self.models), self.data.dataset]


def no_pairs_error(rows: list[dict]) -> ResultError:
    """Every model's attack failed: there is nothing to score or draw.

    A :class:`~advtf.errors.ResultError`: the fix changes the attack's options, so the stored passes
    are discarded with the partial run (a new run with a stronger attack does not meet a partial it
    cannot resume).
    """
    failed = "; ".join(f"{r['model']}: 0 of {r['correct']}" for r in rows)
    return ResultError(f"no successful adversarial examples among correctly classified test images ({failed}); "
                       "use a stronger attack, more --steps or a larger --eps")


def run(request: CamRequest, run, *, progress=None, report=None) -> dict[str, Any]:
    """The four CAMs of every analysed pair and the interpretability scores (Table 2), per model.

    Writes ``results.json`` (``rows``: per model ``is_x0_t0``, ``is_xadv_t`` (Table 2),
    ``is_xadv_t0``, ``is_x0_t``, ``undefined_<key>`` (pairs whose map has no region, left out of
    the means), ``map_<key>`` (mean shared-normalised map), counts; ``notes``, ``method``,
    ``quantile``, ``definition``, the attack's keys, ``dataset``), ``cam.csv/.md``,
    ``examples.csv/.md`` (per pair) and ``cam.png`` (``cam_<model>.png`` for several models;
    Figure 3/A1 for the first pairs).
    """
    attack, data, paths = request.attack, request.data, list(request.models)
    splits = data.load()
    attack.check(splits.info.num_classes)
    models = load_models(paths, splits.info)
    run.record_inputs(dataset=splits.fingerprint, models=fingerprints(paths))
    makers = [MapMaker(m, request.method, request.layer) for m in models]  # bad layers / heads fail before any attack
    # Every model's attack first, as resumable passes (a cluster's workers share them, then only the chief goes on).
    passes = AttackPasses.of_test_split(run, splits, batch_size=request.batch_size, seed=data.seed,
                                        progress=progress)
    for path, model in zip(paths, models):
        passes.add(model, attack, f"{attack.name} on {model_name(path)}")
    passes.run_all()
    rows, per_pair, shown = [], [], {}
    for path, model, maker in zip(paths, models, makers):
        name = model_name(path)
        found = cam_statistics(model, maker, splits, attack, quantile=request.quantile, examples=request.examples,
                               batch_size=request.batch_size, seed=data.seed, progress=progress,
                               desc=f"{attack.name} on {name}", pairs=passes.pairs)
        rows.append({"model": name, "attack": attack.name, "method": request.method, "layer": maker.layer,
                     **found["stats"]})
        per_pair += [{"model": name, **pair} for pair in found["pairs"]]
        if found["figure"] is not None:
            shown[name] = found["figure"]
    if not shown:
        raise no_pairs_error(rows)
    write_table(run.path, "cam", rows, COLUMNS)
    write_table(run.path, "examples", per_pair)
    for name, figure in shown.items():
        suffix = "" if len(shown) == 1 else f"_{name}"
        cam_figure(figure, run.path / f"cam{suffix}.png", class_names=splits.info.class_names,
                   title=f"{name}: {request.method} of natural and {attack.name} adversarial images "
                         "(Xu et al. 2019)")
    notes = [f"{r['model']}: no successful adversarial examples among correctly classified images; "
             "nothing to score (a stronger attack, more --steps or a larger --eps helps)"
             for r in rows if not r["pairs"]]
    results = {"rows": rows, "notes": notes, "method": request.method, "quantile": request.quantile,
               "definition": DEFINITION, **attack.to_json(), "dataset": splits.info.name}
    write_json(run.path / "results.json", results)
    return results
