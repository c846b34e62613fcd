"""``advtf robustify``: the robustified set R_eps of Springer et al. (2021, Sec. 3.3), resumable by chunk.

The computation (seed images, the representation descent) is :mod:`advtf.analysis.robustify`;
this job streams a split through it chunk by chunk into the run's resume store and writes the
saved dataset, its tables and figure.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from advtf import validation as check
from advtf.analysis.robustify import representation_model, robustify_batch, seed_indices
from advtf.data import save_dataset
from advtf.data.rows import split_rows
from advtf.distribute import map_replicas, single_machine_strategy
from advtf.inputs import DataRequest, load_trained_model, model_fingerprint
from advtf.jobs import Request
from advtf.plots.derived import robustified_figure
from advtf.runs import read_json, write_json, write_table
from advtf.runs.chunks import ChunkStore, chunks_dataset, process_in_chunks
from advtf.runs.directory import BOOKKEEPING

ELEMENT_KEYS = ["image", "label", "index", "seed_index", "distance_before", "distance_after"]


@dataclasses.dataclass(frozen=True)
class RobustifyRequest(Request):
    """Options of ``advtf robustify`` (defaults: Springer et al.'s CIFAR-10 row of Table 4)."""

    model: str
    data: DataRequest = DataRequest()
    split: str = "test"
    steps: int = 400
    step_size: float = 0.05
    batch_size: int = 128
    chunk_size: int = 1000
    robustness: float | None = None  # the source's eps when not recorded beside the model
    jit: bool = False
    figure_examples: int = 8
    strategy: str = "auto"

    def __post_init__(self):
        check.choice("--split", self.split, ("test", "train"))
        check.count("--steps", self.steps)
        check.positive("--step-size", self.step_size)
        check.count("--batch-size", self.batch_size)
        check.count("--chunk-size", self.chunk_size)
        check.count("--figure-examples", self.figure_examples)  # robustified.png is the job's figure
        if self.robustness is not None:
            check.non_negative("--robustness", self.robustness)

    def inputs(self) -> list[str]:
        return [self.model, self.data.dataset]




def source_robustness(model_path: str | Path) -> dict[str, Any] | None:
    """The robustness parameter recorded by ``advtf train`` beside the model, if any.

    Returns ``{"eps": 0.0, "norm": None}`` for a standard model, ``{"eps", "norm"}`` of the
    training threat for a robust one, ``None`` when no ``results.json`` is found.
    """
    path = Path(model_path)
    results = (path if path.is_dir() else path.parent) / "results.json"
    try:
        info = read_json(results)
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or "robust_training" not in info:
        return None
    threat = info.get("training_threat") or {}
    if info["robust_training"] and isinstance(threat, dict) and threat:
        try:
            return {"eps": float(threat["eps"]), "norm": threat.get("norm")}
        except (KeyError, TypeError, ValueError):
            return None
    return {"eps": 0.0, "norm": None}


def run(request: RobustifyRequest, run, *, progress=None, report=None) -> dict[str, Any]:
    """Robustifies one split into ``run`` (a saved dataset of kind robustified).

    The run directory's ``<split>/`` holds elements ``image`` (x_r), ``label`` (y), ``index`` (of x
    in the split), ``seed_index`` (of x0), ``distance_before`` and ``distance_after``; the other
    split comes from the source dataset. Also ``results.json`` (``relative_distance_before`` /
    ``relative_distance_after``: means over the split; medians, ``n``, ``robustness``,
    ``images_per_second``, ...), ``examples.csv/.md`` and ``robustified.png`` (seed, robustified,
    original). Each batch is split over the local replicas of the strategy (``mirrored``: every GPU).
    """
    data = request.data
    replicas = single_machine_strategy(request.strategy)
    splits = data.load()
    # on disk, read by rows: the split is never held in memory (advtf.data.rows)
    images = split_rows(splits.require(request.split), splits.sizes.get(request.split, 0),
                        run.path / BOOKKEEPING / "rows")
    labels = images.labels
    seeds = seed_indices(len(images), data.seed)
    model = load_trained_model(request.model, splits.info.image_shape)
    extractor = representation_model(model)
    robustness = source_robustness(request.model)
    if request.robustness is not None:
        robustness = {"eps": float(request.robustness), "norm": (robustness or {}).get("norm") or "l2"}
    fingerprint = model_fingerprint(request.model)
    parameters = {"n": len(images), "loss": "||rep(x_r) - rep(x)||_2 / ||rep(x)||_2",
                  "keeps": "lowest-distance iterate", "seed_images": "uniform over the other images of the split"}
    run.record_inputs(dataset=splits.fingerprint, model=fingerprint, parameters=parameters)
    store = ChunkStore(run.store)

    def batch(index):
        x_r, before, after = map_replicas(
            replicas, lambda x, x0: robustify_batch(extractor, x, x0, steps=request.steps,
                                                    step_size=request.step_size, jit=request.jit),
            images[index], images[seeds[index]])
        return {"image": x_r.astype(np.float32), "label": labels[index].astype(np.int32),
                "index": index.astype(np.int32), "seed_index": seeds[index].astype(np.int32),
                "distance_before": before.astype(np.float32), "distance_after": after.astype(np.float32)}

    done = process_in_chunks(store, len(images), chunk_size=request.chunk_size, batch_size=request.batch_size,
                             batch_fn=batch, progress=progress, desc=f"robustify {request.split}")
    run.fresh(request.split)  # a kill during an earlier final save may have left it half-written
    section = save_dataset(
        run.path, {request.split: chunks_dataset(store, done.chunks, ELEMENT_KEYS)}, kind="robustified",
        info=splits.info,
        source={"dataset": data.dataset, "model": fingerprint, "robustness": robustness, "split": request.split,
                "fingerprint": splits.fingerprint},
        parameters={"steps": int(request.steps), "step_size": float(request.step_size), "split": request.split,
                    "seed": data.seed, "model_sha256": fingerprint["sha256"], "dataset": splits.fingerprint,
                    **parameters},
    )
    run.extra["dataset"] = section
    columns = {k: np.concatenate([np.asarray(c[k]) for c in store.iterate(done.chunks, ELEMENT_KEYS[1:])])
               for k in ELEMENT_KEYS[1:]}
    before, after = columns["distance_before"].astype(float), columns["distance_after"].astype(float)
    results = {
        "n": int(len(images)),
        "relative_distance_before": float(before.mean()),
        "relative_distance_after": float(after.mean()),
        "median_relative_distance_before": float(np.median(before)),
        "median_relative_distance_after": float(np.median(after)),
        "robustness": robustness,
        "steps": int(request.steps), "step_size": float(request.step_size), "split": request.split,
        "seed": data.seed, "dataset": splits.info.name, "model": str(request.model),
        "images_per_second": done.examples_per_second,
        "resumed_chunks": done.resumed,
    }
    write_json(run.path / "results.json", results)
    rows = ({"index": int(i), "label": int(y), "seed_index": int(s), "distance_before": round(float(d0), 6),
             "distance_after": round(float(d1), 6)}  # a generator: written row by row
            for i, y, s, d0, d1 in zip(columns["index"], columns["label"], columns["seed_index"], before, after))
    write_table(run.path, "examples", rows)
    shown = np.arange(min(request.figure_examples, len(images)))
    if len(shown):  # always: the split holds at least two images
        first = store.load(0, ["image"])["image"]
        shown = shown[shown < len(first)]
        eps = robustness["eps"] if robustness else None
        robustified_figure(images[seeds[shown]], np.asarray(first[shown]), images[shown], labels[shown],
                           run.path / "robustified.png", class_names=splits.info.class_names,
                           title="robustified (Springer et al. 2021)"
                                 + (f" by an eps={eps:g} model" if eps is not None else ""))
    return results
