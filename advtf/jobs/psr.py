"""``advtf psr``: grid-level sensitivity and the promotion-suppression ratio of adversarial
perturbations, and attacks refined to S1/S2 (Xu et al. 2019, Section 3, Tables 1 and A1,
Figures 2, 4, 6, A2 and A6).

The statistics are :func:`advtf.analysis.interpret.psr_statistics`; this job validates the
request, loads the dataset and models, attacks every model first as a resumable pass
(:class:`advtf.jobs.attack_passes.AttackPasses`: ``--resume``; shared by the workers of a cluster),
then measures the stored pairs and writes ``results.json``, the tables and the figures. The
refined attacks (``--refine``, on the successful pairs only) run afterwards, on the chief alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from advtf import validation as check
from advtf.adversarial import AttackRequest
from advtf.analysis.cam import DEFAULT_QUANTILE, MapMaker
from advtf.analysis.interpret import REFINEMENTS, psr_statistics
from advtf.analysis.psr import DEFAULT_DROP, DEFAULT_XI, grid_masks
from advtf.inputs import DataRequest, fingerprints, load_models, model_name
from advtf.jobs import Request
from advtf.jobs.attack import check_attack_request
from advtf.jobs.attack_passes import AttackPasses
from advtf.jobs.cam import check_maps, check_models, no_pairs_error
from advtf.plots.interpret import psr_cam_figure, psr_examples_figure, refine_figure
from advtf.runs import write_json, write_table

DEFINITION = {
    "corr_<k>": "Pearson correlation of <k> with ||delta_Gi||_2 over the grids of an image, averaged over images "
                "(pooled_corr_<k>: over all grids at once)",
    "perturbed_<category>": "share of the perturbed grids (delta_G != 0) per PSR category (r<-1 suppression, "
                            "r>1 promotion), mean over images",
    "s1_<category>": "the same among S1, the grids holding the top (1-drop) of s",
    "skipped_empty": "refine: pairs not refined because their S is empty (S2: the CAM F(x0,t0) has no positive "
                     "pixel or is constant)",
    "pairs": "successful adversarial examples of correctly classified test images",
}


def default_grid(height: int, width: int) -> int:
    """The grid side when --grid is not given: the image side / 16, at least 2 (13 of 224 on ImageNet)."""
    return max(2, round(min(height, width) / 16))


@dataclasses.dataclass(frozen=True)
class PsrRequest(Request):
    """Options of ``advtf psr``: one attack on one or more models, the grids, xi, the S1 drop and refinements."""

    models: tuple
    attack: AttackRequest
    data: DataRequest = DataRequest()
    grid: int | None = None
    stride: int | None = None
    xi: float = DEFAULT_XI
    drop: float = DEFAULT_DROP
    refine: tuple = ()
    method: str = "cam"
    layer: str | None = None
    quantile: float = DEFAULT_QUANTILE
    examples: int = 3
    batch_size: int = 50
    chunk: int = 256

    def __post_init__(self):
        check_models(self.models)
        check_attack_request(self.attack)
        check.optional_count("--grid", self.grid)
        check.optional_count("--stride", self.stride)
        check.positive("--xi", self.xi)
        check.in_range("--drop", self.drop, 0.0, 1.0, high_open=True)
        for r in self.refine:
            check.choice("--refine", r, REFINEMENTS)
        check_maps(self.method, self.quantile, self.examples)
        check.count("--batch-size", self.batch_size)
        check.count("--chunk", self.chunk)

    def inputs(self) -> list[str]:
        return [*map(str, self.models), self.data.dataset]


def run(request: PsrRequest, run, *, progress=None, report=None) -> dict[str, Any]:
    """Grid sensitivity, PSR, Table 1 correlations and refined attacks (Table A1), per model.

    Writes ``results.json`` (``rows`` per model: ``corr_d0``, ``corr_dt``, ``corr_s`` (per-image
    Pearson with ||delta_Gi||_2, averaged) and their pooled versions, the share of each PSR
    category over the perturbed grids and over S1; ``refine`` rows per model and refinement: mean
    l0/l1/l2/linf before and after, the success rates and ``skipped_empty``; ``notes``, ``grid``,
    ``stride``, ``xi``, ``drop``, ``method``, ``quantile``, ``definition``, the attack's keys,
    ``dataset``), ``psr.csv/.md``, ``refine.csv/.md``, ``psr_examples.png`` (Figure 2),
    ``psr_cam.png`` (Figure 4/A2) and ``refine_<s>.png`` (Figures 6/A6); ``_<model>`` suffixes for
    several models.
    """
    attack, data, paths = request.attack, request.data, list(request.models)
    refine = tuple(dict.fromkeys(request.refine))
    splits = data.load()
    attack.check(splits.info.num_classes)
    height, width = splits.info.image_shape[:2]
    grid = request.grid or default_grid(height, width)
    stride = request.stride or grid
    masks = grid_masks(height, width, grid, stride)  # a grid larger than the image fails before any attack
    models = load_models(paths, splits.info)
    run.record_inputs(dataset=splits.fingerprint, models=fingerprints(paths))
    makers = [MapMaker(m, request.method, request.layer) for m in models]
    # Every model's attack first, as resumable passes (a cluster's workers share them, then only the chief goes on).
    passes = AttackPasses.of_test_split(run, splits, batch_size=request.batch_size, seed=data.seed,
                                        progress=progress)
    for path, model in zip(paths, models):
        passes.add(model, attack, f"{attack.name} on {model_name(path)}")
    passes.run_all()
    rows, refine_rows, notes, drawn = [], [], [], {}
    for path, model, maker in zip(paths, models, makers):
        name = model_name(path)
        found = psr_statistics(model, maker, splits, attack, masks, xi=request.xi, drop=request.drop, refine=refine,
                               quantile=request.quantile, examples=request.examples, batch_size=request.batch_size,
                               chunk=request.chunk, seed=data.seed, progress=progress, desc=f"{attack.name} on {name}",
                               pairs=passes.pairs)
        row = {"model": name, "attack": attack.name, "grid": grid, "stride": stride, "grids": len(masks),
               **found["stats"]}
        rows.append(row)
        if not row["pairs"]:
            notes.append(f"{name}: no successful adversarial examples among correctly classified images")
        refined = {}
        for r, summary in found["refine"].items():
            summary = dict(summary)
            refined[r] = summary.pop("figure")
            skipped = summary["skipped_empty"]
            if skipped:
                notes.append(f"{name}, {r.upper()}: {skipped} pair(s) skipped, their allowed set S is empty"
                             + (" (CAM with no positive pixel)" if r == "s2" else ""))
            if summary["pairs"]:  # else every pair was skipped: the note above is the whole result
                success = summary.pop("refined_success_rate")
                refine_rows.append({"model": name, "attack": attack.name, "refine": r, **summary,
                                    "original_success_rate": row["success_rate"], "refined_success_rate": success})
            else:
                refined.pop(r)
        if found["figure"] is not None:
            drawn[name] = (found["figure"], refined)
    if not drawn:
        raise no_pairs_error(rows)
    write_table(run.path, "psr", rows)
    if refine_rows:
        write_table(run.path, "refine", refine_rows, list(dict.fromkeys(k for r in refine_rows for k in r)))
    for name, (figure, refined) in drawn.items():
        suffix = "" if len(models) == 1 else f"_{name}"
        for r, (mask, x_ref) in refined.items():
            refine_figure(figure, mask, x_ref, run.path / f"refine_{r}{suffix}.png",
                          title=f"{name}: {attack.name} refined under {r.upper()}")
        psr_examples_figure(figure, run.path / f"psr_examples{suffix}.png", class_names=splits.info.class_names,
                            title=f"{name}: grid sensitivity of {attack.name} perturbations (Xu et al. 2019)")
        psr_cam_figure(figure, run.path / f"psr_cam{suffix}.png", class_names=splits.info.class_names,
                       title=f"{name}: PSR of the top {1 - request.drop:.0%} of s over CAM F(x', t)")
    results = {"rows": rows, "refine": refine_rows, "notes": notes, "grid": grid, "stride": stride, "xi": request.xi,
               "drop": request.drop, "method": request.method, "quantile": request.quantile,
               "definition": DEFINITION, **attack.to_json(), "dataset": splits.info.name}
    write_json(run.path / "results.json", results)
    return results
