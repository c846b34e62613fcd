"""``advtf relabel``: zero-/negative-robust relabeled sets of Springer et al. (2021, Sec. 3.2), resumable by chunk.

The computation (new labels, the targeted attack) is :mod:`advtf.analysis.relabel`; this job
streams a split through it chunk by chunk into the run's resume store and writes the saved
dataset, its label table and figure.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

from advtf import validation as check
from advtf.analysis.relabel import MODES, PER_IMAGE, label_histogram, relabel_batch, relabel_targets
from advtf.attacks import NORMS, Threat, check_attack
from advtf.data import save_dataset
from advtf.data.rows import split_rows
from advtf.distribute import map_replicas, single_machine_strategy
from advtf.errors import UserError
from advtf.inputs import DataRequest, load_trained_model, model_fingerprint
from advtf.jobs import Request
from advtf.plots.derived import relabeled_figure
from advtf.runs import write_json, write_table
from advtf.runs.chunks import ChunkStore, chunks_dataset, process_in_chunks
from advtf.runs.directory import BOOKKEEPING

ELEMENT_KEYS = ["image", "label", "original_label", "index", "success"]


@dataclasses.dataclass(frozen=True)
class RelabelRequest(Request):
    """Options of ``advtf relabel`` (defaults: Springer et al.'s Table 4, L2 eps 0.5, 200 steps of 0.1).

    ``random_start`` is the flag as given; the attack starts at random also with ``restarts > 1``.
    """

    model: str
    data: DataRequest = DataRequest()
    mode: str = "zero"
    per_image: str = "one"
    attack: str = "pgd"
    norm: str = "l2"
    eps: float = 0.5
    steps: int = 200
    step_size: float | None = 0.1
    restarts: int = 1
    random_start: bool = False
    options: dict = dataclasses.field(default_factory=dict)
    split: str = "train"
    batch_size: int = 128
    chunk_size: int = 2000
    jit: bool = False
    figure_examples: int = 8
    strategy: str = "auto"

    def __post_init__(self):
        check.choice("--mode", self.mode, MODES)
        check.choice("--per-image", self.per_image, PER_IMAGE)
        if self.per_image == "all" and self.mode != "zero":
            raise UserError("--per-image all makes one example per class, a zero-robust set; use it with --mode zero")
        check.choice("--norm", self.norm, NORMS)
        check.positive("--eps", self.eps)
        check.count("--steps", self.steps)
        if self.step_size is not None:
            check.positive("--step-size", self.step_size)
        check.count("--restarts", self.restarts)
        check_attack(self.attack, self.norm, self.options)
        check.choice("--split", self.split, ("train", "test"))
        check.count("--batch-size", self.batch_size)
        check.count("--chunk-size", self.chunk_size)
        check.count("--figure-examples", self.figure_examples)  # the job's figure shows at least one

    def inputs(self) -> list[str]:
        return [self.model, self.data.dataset]

    @property
    def threat(self) -> Threat:
        """The attack budget (random start when asked for or with several restarts)."""
        return Threat(norm=self.norm, eps=self.eps, steps=self.steps, step_size=self.step_size,
                      restarts=self.restarts, random_start=self.random_start or self.restarts > 1)

    def parameters(self) -> dict[str, Any]:
        """The construction as recorded in results.json and the saved set's manifest."""
        return {"mode": self.mode, "per_image": self.per_image, "attack": self.attack,
                "threat": self.threat.to_json(), "options": dict(self.options), "split": self.split}


def run(request: RelabelRequest, run, *, progress=None, report=None) -> dict[str, Any]:
    """Builds a relabeled set from one split into ``run`` (a saved dataset of kind relabeled).

    The run directory's ``<split>/`` (train by default) holds ``image`` (x_hat), ``label`` (y_hat),
    ``original_label`` (y), ``index`` (of x in the split) and ``success`` (the source model predicts
    y_hat on x_hat); the test split comes from the source dataset when loaded, so
    ``advtf train --dataset OUT`` trains a zero-/negative-robust classifier and tests it on the
    original test set. ``results.json``: ``success_rate`` (targeted success over all examples),
    ``success_rate_label_changed`` (over y_hat != y), ``label_histogram`` (y_hat counts per class),
    ``original_label_histogram``, ``n``, ``images_per_second``, the attack and threat; also
    ``labels.csv/.md`` and ``relabeled.png``. Each batch is split over the local replicas of the
    strategy (``mirrored``: every GPU).
    """
    data = request.data
    replicas = single_machine_strategy(request.strategy)
    splits = data.load()
    num_classes = splits.info.num_classes
    # on disk, read by rows: the split is never held in memory (advtf.data.rows)
    images = split_rows(splits.require(request.split), splits.sizes.get(request.split, 0),
                        run.path / BOOKKEEPING / "rows")
    labels = images.labels
    if not len(images):
        raise UserError(f"the {request.split} split of {data.dataset} is empty; nothing to relabel")
    source_index, new_labels = relabel_targets(labels, num_classes, request.mode, seed=data.seed,
                                               per_image=request.per_image)
    model = load_trained_model(request.model, splits.info.image_shape)
    fingerprint = model_fingerprint(request.model)
    construction = request.parameters()
    parameters = {**construction, "seed": data.seed, "n": int(len(source_index)),
                  "model_sha256": fingerprint["sha256"], "dataset": splits.fingerprint}
    run.record_inputs(dataset=splits.fingerprint, model=fingerprint, parameters=parameters)
    store = ChunkStore(run.store)
    threat = request.threat

    def batch(pairs):
        index = source_index[pairs]
        seed = tf.constant([data.seed, int(pairs[0])], tf.int64)

        def attack(x, y, target):
            out = relabel_batch(model, x, y, target, attack=request.attack, threat=threat, options=request.options,
                                seed=seed, jit=request.jit)
            return out["image"], out["success"]

        image, success = map_replicas(replicas, attack, images[index], labels[index],
                                      new_labels[pairs].astype(np.int32))
        return {"image": image.astype(np.float32), "label": new_labels[pairs].astype(np.int32),
                "original_label": labels[index].astype(np.int32), "index": index.astype(np.int32),
                "success": success.astype(bool)}

    done = process_in_chunks(store, len(source_index), chunk_size=request.chunk_size,
                             batch_size=request.batch_size, batch_fn=batch, progress=progress,
                             desc=f"relabel ({request.mode})")
    run.fresh(request.split)  # a kill during an earlier final save may have left it half-written
    section = save_dataset(
        run.path, {request.split: chunks_dataset(store, done.chunks, ELEMENT_KEYS)}, kind="relabeled",
        info=splits.info,
        source={"dataset": data.dataset, "model": fingerprint, "split": request.split,
                "fingerprint": splits.fingerprint},
        parameters=parameters,
    )
    run.extra["dataset"] = section
    success = np.concatenate([np.asarray(c["success"]) for c in store.iterate(done.chunks, ["success"])])
    changed = new_labels != labels[source_index]
    names = list(splits.info.class_names)
    results = {
        "n": int(len(source_index)),
        "n_images": int(len(images)),
        "success_rate": float(success.mean()),
        "success_rate_label_changed": float(success[changed].mean()) if changed.any() else None,
        "label_histogram": label_histogram(new_labels, names),
        "original_label_histogram": label_histogram(labels[source_index], names),
        **construction,
        "seed": data.seed, "dataset": splits.info.name, "model": str(request.model),
        "images_per_second": done.examples_per_second,
        "resumed_chunks": done.resumed,
    }
    write_json(run.path / "results.json", results)
    write_table(run.path, "labels", [{"class": names[k], "index": k,
                                      "new_label_count": results["label_histogram"][names[k]],
                                      "original_label_count": results["original_label_histogram"][names[k]]}
                                     for k in range(num_classes)])
    first = store.load(0, ["image"])["image"]
    shown = min(request.figure_examples, len(first))
    relabeled_figure(images[source_index[:shown]], np.asarray(first[:shown]), labels[source_index[:shown]],
                     new_labels[:shown], run.path / "relabeled.png", class_names=names,
                     title=f"{request.mode}-robust set, Springer et al. 2021 ({threat.norm} eps={threat.eps:g}, "
                           f"{threat.steps} steps)")
    return results
