"""``advtf dissect``: network dissection of units and their sensitivity to adversarial examples
(Xu et al. 2019, Sec. 5, Eq. 7-8, Figures 7-8; Bau et al. 2017), resumable, its attack shared by
the workers of a cluster.

The computation (thresholds, IoU counts, sensitivity, p-values) is :mod:`advtf.analysis.dissect`;
this job loads the model and the concept set, attacks the ``--attack-images`` first concept images
in resumable chunks (:class:`~advtf.jobs.attack_passes.AttackPasses`, shared by cluster workers),
keeps the chief's later passes' state in the run's resume store (:class:`Snapshots`) and writes
the tables, figures and results.json.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

from advtf import validation as check
from advtf.adversarial import AttackRequest
from advtf.analysis.dissect import (DEFAULT_NS, UNION_RULES, UNIT_SCORES, attack_inputs, category_indices,
                                    default_layers, detector_counts, dissection_extractor, iou_pass,
                                    segmentation_masks, sensitivity_p_values, sensitivity_pass, sensitivity_ranks,
                                    thresholds_pass, unit_table)
from advtf.data.broden import load_broden
from advtf.data.concepts import synthetic_concepts
from advtf.data.rows import split_rows
from advtf.errors import UserError
from advtf.inputs import fingerprints, load_trained_model, model_name
from advtf.jobs import Request
from advtf.jobs.attack import check_attack_request
from advtf.jobs.attack_passes import AttackPasses
from advtf.plots.dissect import detectors_figure, pvalues_figure, segmentation_figure
from advtf.runs import write_json, write_table
from advtf.runs.directory import BOOKKEEPING

BRODEN_SPLITS = ("all", "train", "val")
BRODEN = "broden:"


def broden_directory(spec: str) -> str | None:
    """The directory of ``--concepts broden:DIR`` (None for ``synthetic``).

    Raises:
        UserError: neither ``synthetic`` nor ``broden:DIR``.
    """
    if spec == "synthetic":
        return None
    if spec.startswith(BRODEN) and spec[len(BRODEN):].strip():
        return spec[len(BRODEN):].strip()
    raise UserError(f"--concepts {spec!r}: write synthetic or broden:DIR (a Broden directory)")


def load_concepts(spec: str, input_shape, *, count: int | None, seed: int = 0, split: str | None = None):
    """The concept set of ``--concepts``: ``synthetic`` (at the model's input size) or ``broden:DIR``."""
    directory = broden_directory(spec)
    if directory is None:
        return synthetic_concepts(count or 1000, tuple(input_shape[:2]), seed=seed)
    return load_broden(directory, split=split, limit=count)


@dataclasses.dataclass(frozen=True)
class DissectRequest(Request):
    """Options of ``advtf dissect`` (defaults: NetDissect's quantile 0.005, the paper's detector IoU 0.04,
    its N of Figure 7a and 10000 random draws).

    ``attack`` is untargeted; it runs away from the model's own prediction (concept images have no
    class labels). ``budget`` is ``--quantile-budget``; ``checkpoint_every`` the batches between
    saved IoU counts (the sensitivity sums every fifth of it).
    """

    model: str
    attack: AttackRequest
    concepts: str = "synthetic"
    split: str = "all"
    concept_images: int | None = None
    layers: tuple[str, ...] | None = None
    quantile: float = 0.005
    detector_iou: float = 0.04
    union: str = "labelled"
    unit_score: str = "mean"
    attack_images: int = 100
    ns: tuple[int, ...] = DEFAULT_NS
    draws: int = 10000
    detector_top: int = 100
    show_units: int = 4
    show_images: int = 2
    budget: int = 1 << 25
    batch_size: int = 32
    seed: int = 0
    checkpoint_every: int = 50

    def __post_init__(self):
        broden_directory(self.concepts)
        check.choice("--split", self.split, BRODEN_SPLITS)
        check.optional_count("--concept-images", self.concept_images)
        if self.layers is not None and not all(isinstance(n, str) and n for n in self.layers):
            raise UserError("--layers: give endpoint names separated by commas, e.g. --layers m0,m1")
        check.fraction("--quantile", self.quantile)
        check.fraction("--detector-iou", self.detector_iou)
        check.choice("--union-images", self.union, UNION_RULES)
        check.choice("--unit-iou", self.unit_score, UNIT_SCORES)
        check_attack_request(self.attack)
        if self.attack.targeted:
            raise UserError("dissection uses an untargeted attack (concept images have no class labels); "
                            "drop --targeted")
        check.count("--attack-images", self.attack_images)
        if not self.ns:
            raise UserError("--top-n: give at least one N, e.g. --top-n 10,20,30")
        for n in self.ns:
            check.count("--top-n", n)
        check.count("--draws", self.draws)
        check.count("--detector-top", self.detector_top)
        check.count("--show-units", self.show_units)
        check.count("--show-images", self.show_images)
        check.count("--quantile-budget", self.budget)
        check.count("--batch-size", self.batch_size)
        check.seed(self.seed)
        check.count("checkpoint_every", self.checkpoint_every)

    def inputs(self) -> list[str]:
        directory = broden_directory(self.concepts)
        return [self.model] + ([directory] if directory else [])


class Snapshots:
    """The passes' view of the run's resume store: ``load(name)`` / ``save(name, arrays)`` of one
    snapshot each (written atomically by the store)."""

    def __init__(self, store):
        self.store = store

    def load(self, name: str) -> dict | None:
        return self.store.load_snapshot(f"dissect_{name}")

    def save(self, name: str, arrays: dict) -> None:
        self.store.save_snapshot(f"dissect_{name}", arrays)


def attack_rows(concepts, input_shape, total: int, batch_size: int, directory):
    """The model inputs of the first ``total`` concept images (:func:`attack_inputs`), written once per run
    into ``directory`` with dummy labels (the attack moves away from the model's prediction)."""
    # a model input the concepts cannot make raises its UserError here, not inside tf.data
    next(attack_inputs(concepts, input_shape, count=min(total, 1), batch_size=1), None)

    def generate():  # called again when the rows are rewritten as float32
        for x in attack_inputs(concepts, input_shape, count=total, batch_size=batch_size):
            yield x, np.zeros(len(x), np.int32)

    signature = (tf.TensorSpec((None, *input_shape), tf.float32), tf.TensorSpec((None,), tf.int32))
    return split_rows(tf.data.Dataset.from_generator(generate, output_signature=signature).unbatch(), total,
                      directory)


def stored_pairs(passes: AttackPasses):
    """:func:`advtf.analysis.dissect.attacked_concepts` read from the stored pass of ``passes``."""

    def pairs(model, concepts, input_shape, request, *, count, batch_size, seed, progress=None, start=0):
        total = min(count, concepts.size)
        bar = progress(total=total, desc="sensitivity masks", unit="img") if progress else None
        if bar is not None and start:
            bar.update(min(start, total))
        try:
            skip = -(-start // batch_size)  # batches whose sums the resume store holds
            for b, row in enumerate(passes.pairs(model, None, request, batch_size=batch_size, seed=seed)):
                if b >= skip:
                    if bar is not None:
                        bar.update(len(row["image"]))
                    yield row
        finally:
            if bar is not None:
                bar.close()

    return pairs


def run(request: DissectRequest, run, *, progress=None, report=None) -> dict[str, Any]:
    """Dissection, sensitivity and significance per layer; tables and figures in ``run.path``.

    Writes results.json, units.csv/.md, detectors.csv/.md, pvalues.csv/.md, detectors.png,
    pvalues.png and segmentation_<layer>.png (Figure 8). The attack comes first, in resumable
    chunks shared by the workers of a cluster (a non-chief worker stops after it); the thresholds,
    the IoU counts and the sensitivity sums so far (the chief's passes, forward only) are kept in
    the run's resume store every ``checkpoint_every`` batches until the job completes, so an
    interrupted run continues where it stopped.
    """
    model_path = request.model
    model = load_trained_model(model_path)
    input_shape = tuple(int(d) for d in model.input_shape[1:])
    layers = list(request.layers) if request.layers else default_layers(model)
    extractor = dissection_extractor(model, layers)
    request.attack.check(int(model.output_shape[-1]))
    attack = dataclasses.replace(request.attack, attack_target="prediction")
    concepts = load_concepts(request.concepts, input_shape, count=request.concept_images, seed=request.seed,
                             split=request.split)
    fingerprint = fingerprints([model_path])[0]
    state = Snapshots(run.store)
    run.record_inputs(model=fingerprint, concepts=concepts.name, parameters={
        "model_sha256": fingerprint.get("sha256"), "concepts": concepts.description, "layers": layers})

    # The attack of Eq. 8 first: its chunks are the job's heavy work, shared by cluster workers.
    total = min(request.attack_images, concepts.size)
    rows = attack_rows(concepts, input_shape, total, request.batch_size, run.path / BOOKKEEPING / "attack-rows")
    passes = AttackPasses(run, rows, num_classes=int(model.output_shape[-1]), batch_size=request.batch_size,
                          seed=request.seed, progress=progress, seeding="offset")
    passes.add(model, attack, f"{attack.name} on {total} concept images")
    passes.run_all()  # a non-chief worker stops here

    thresholds, methods = thresholds_pass(extractor, concepts, input_shape, layers, request.quantile,
                                          batch_size=request.batch_size, budget=request.budget, progress=progress,
                                          state=state)
    counts = iou_pass(extractor, concepts, input_shape, layers, thresholds, batch_size=request.batch_size,
                      progress=progress, state=state, every=request.checkpoint_every, union=request.union)
    sensitivity, success_rate, attacked, kept = sensitivity_pass(
        model, extractor, concepts, input_shape, layers, thresholds, attack, count=request.attack_images,
        batch_size=request.batch_size, seed=request.seed, progress=progress, keep=request.show_images,
        state=state, every=max(1, request.checkpoint_every // 5), pairs=stored_pairs(passes))

    category_index = category_indices(concepts)
    name = model_name(model_path)
    unit_rows, detector_rows, pvalue_rows, per_layer, notes = [], [], [], {}, []
    for n in layers:
        table = unit_table(counts[n].iou(concepts.label_numbers, category_index), concepts, request.unit_score,
                           request.detector_iou)
        v = sensitivity[n]
        order, rank = sensitivity_ranks(v)
        units = len(v)
        top = order[:min(request.detector_top, units)]
        pvalues = sensitivity_p_values(table["score"], v, request.ns, draws=request.draws, seed=request.seed)
        skipped = [p["n"] for p in pvalues if p["skipped"]]
        if skipped:
            notes.append(f"{n}: N = {', '.join(map(str, skipped))} skipped (the layer has {units} units)")
        rows = [{"layer": n, "unit": k, "threshold": float(thresholds[n][k]),
                 "concept": concepts.label_names[table["best"][k]],
                 "category": concepts.label_categories[table["best"][k]], "iou": float(table["best_iou"][k]),
                 "unit_iou": float(table["score"][k]), "detector": bool(table["detector"][k]),
                 "sensitivity": float(v[k]), "sensitivity_rank": int(rank[k])} for k in range(units)]
        unit_rows += rows
        all_counts = detector_counts(table, concepts)
        top_counts = detector_counts(table, concepts, top)
        detector_rows += [{"layer": n, "units": "all", "n_units": units, **all_counts,
                           "total": sum(all_counts.values())},
                          {"layer": n, "units": f"top {len(top)} sensitive", "n_units": len(top), **top_counts,
                           "total": sum(top_counts.values())}]
        pvalue_rows += [{"layer": n, **p} for p in pvalues]
        per_layer[n] = {"units": units, "feature_map": list(extractor.output[n].shape[1:3]),
                        "threshold_method": methods[n], "unit_rows": rows,
                        "detectors": all_counts, "detectors_top_sensitive": top_counts,
                        "top_sensitive": int(len(top)), "p_values": pvalues,
                        "mean_unit_iou": float(table["score"].mean()),
                        "mean_sensitivity": float(v.mean())}
        shown = order[:min(request.show_units, units)]
        if len(kept[0]):
            (natural, natural_masks), (adversarial, adversarial_masks) = (
                segmentation_masks(extractor, n, thresholds[n], images, shown, concepts.seg_shape) for images in kept)
            titles = [f"unit {k}: {rows[k]['concept']} ({rows[k]['category']})\nIoU {rows[k]['iou']:.3f}, "
                      f"v={rows[k]['sensitivity']:.2f}" for k in shown]
            segmentation_figure(natural, adversarial, natural_masks, adversarial_masks, titles,
                                run.path / f"segmentation_{n}.png",
                                title=f"{name} {n}: the {len(shown)} most sensitive units, "
                                      "natural vs adversarial (Xu et al. 2019, Fig. 8)")

    results = {
        "model": str(model_path), "input_shape": list(input_shape),
        "concepts": {"source": concepts.name, "description": concepts.description, "images": concepts.size,
                     "image_shape": list(concepts.image_shape), "segmentation_shape": list(concepts.seg_shape),
                     "categories": list(concepts.categories), "labels": len(concepts.label_numbers),
                     "model_input": f"concept images resized (bilinear, antialiased) to {input_shape[0]}x"
                                    f"{input_shape[1]}" + (", luminance" if input_shape[2] == 1 else "")},
        "quantile": request.quantile, "mask": "upsampled activation > T_k (NetDissect)",
        "detector_iou": request.detector_iou, "union_images": request.union,
        "unit_iou": request.unit_score, "attack": attack.to_json(), "attack_images": attacked,
        "attack_labels": "the model's own prediction on the natural image (concept images have no class labels)",
        "attack_success_rate": success_rate, "draws": request.draws, "ns": list(request.ns),
        "detector_top": request.detector_top, "seed": request.seed, "layers": per_layer, "notes": notes,
    }
    write_json(run.path / "results.json", results)
    write_table(run.path, "units", unit_rows)
    write_table(run.path, "detectors", detector_rows,
                ["layer", "units", "n_units", *concepts.categories, "total"])
    write_table(run.path, "pvalues", pvalue_rows,
                ["layer", "n", "observed_iou_sum", "random_iou_sum_mean", "p_value", "skipped"])
    detectors_figure(detector_rows, list(concepts.categories), run.path / "detectors.png",
                     title=f"{name}: concept detectors (IoU > {request.detector_iou:g}) per layer (Xu et al. 2019)")
    pvalues_figure(pvalue_rows, layers, run.path / "pvalues.png",
                   title=f"{name}: p-value of IoU({request.unit_score}) of the top-N sensitive units "
                         "(Xu et al. 2019)")
    return results
