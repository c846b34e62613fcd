"""Zero- and negative-robust relabeled datasets (Springer et al. 2021, Sec. 3.2 and Appendix A).

Each ``(x, y)`` becomes ``(x_hat, y_hat)``: ``x_hat`` a targeted adversarial example (L2 PGD in
the paper, Table 4: eps 0.5, 200 steps of 0.1) that the source model classifies as ``y_hat``.

* ``zero`` (Ilyas et al.'s D_rand): ``y_hat`` uniform over all K classes, so robust features
  are uncorrelated with the new label and only non-robust ones predict it. With
  ``per_image="all"`` every image yields K examples, one per target class (the paper's CIFAR-10
  construction).
* ``negative`` (D_det): ``y_hat = (y + 1) mod K``, a fixed permutation, so robust features are
  anti-correlated with the new label.

A classifier trained on such a set ("zero-robust", "negative-robust") can only have learned
non-robust features; its accuracy on a robustified test set then measures robust/non-robust
entanglement.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

from advtf.runs.chunks import ChunkStore, chunks_dataset, process_in_chunks
from advtf.attacks import Threat, attack_outcome, attack_spec, check_attack
from advtf.errors import UserError

MODES = ("zero", "negative")
PER_IMAGE = ("one", "all")
ELEMENT_KEYS = ["image", "label", "original_label", "index", "success"]


def relabel_targets(labels: np.ndarray, num_classes: int, mode: str, *, seed: int = 0,
                    per_image: str = "one") -> tuple[np.ndarray, np.ndarray]:
    """Which image each new example comes from, and its new label.

    Returns:
        ``(index, new_label)``: int arrays of length n (``per_image="one"``) or n*K (``"all"``:
        image-major, targets 0..K-1 for each image).

    Raises:
        UserError: unknown mode, ``all`` with ``negative``, or fewer than two classes.
    """
    if mode not in MODES:
        raise UserError(f"unknown --mode {mode!r}; choose zero or negative")
    if per_image not in PER_IMAGE:
        raise UserError(f"unknown --per-image {per_image!r}; choose one or all")
    if num_classes < 2:
        raise UserError(f"relabeling needs at least two classes (the dataset has {num_classes})")
    labels = np.asarray(labels, np.int64)
    n = len(labels)
    if per_image == "all":
        if mode != "zero":
            raise UserError("--per-image all makes one example per class, a zero-robust set; use it with --mode zero")
        return np.repeat(np.arange(n), num_classes), np.tile(np.arange(num_classes), n)
    if mode == "negative":
        return np.arange(n), (labels + 1) % num_classes
    rng = np.random.default_rng([int(seed), 7_011])
    return np.arange(n), rng.integers(0, num_classes, size=n)


@dataclasses.dataclass(frozen=True)
class RelabelRequest:
    """Options of ``advtf relabel`` (defaults: the paper's Table 4, L2 eps 0.5, 200 steps of 0.1)."""

    mode: str = "zero"
    per_image: str = "one"
    attack: str = "pgd"
    threat: Threat = Threat(norm="l2", eps=0.5, steps=200, step_size=0.1, random_start=False)
    options: dict = dataclasses.field(default_factory=dict)
    split: str = "train"
    batch_size: int = 128
    chunk_size: int = 2000
    jit: bool = False
    figure_examples: int = 8

    def check(self, num_classes: int) -> None:
        check_attack(self.attack, self.threat.norm, self.options)
        relabel_targets(np.zeros(1, np.int64), num_classes, self.mode, per_image=self.per_image)
        if self.batch_size < 1 or self.chunk_size < 1:
            raise UserError("--batch-size and --chunk-size must be >= 1")

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "per_image": self.per_image, "attack": self.attack,
                "threat": self.threat.to_json(), "options": dict(self.options), "split": self.split}


def relabel_batch(model, x, y, new_label, request: RelabelRequest, *, seed) -> dict[str, tf.Tensor]:
    """Targeted adversarial examples of ``x`` towards ``new_label``: ``image``, ``success``, ``l2`` (tensors)."""
    fn = attack_spec(request.attack).fn
    target = tf.convert_to_tensor(new_label, tf.int32)
    x = tf.convert_to_tensor(x, tf.float32)
    x_adv = fn(model, x, y, request.threat, targeted=True, target=target, seed=seed, jit=request.jit,
               **request.options)
    outcome = attack_outcome(model, x, x_adv, y, targeted=True, target=target)
    return {"image": x_adv, "success": outcome["success"], "l2": outcome["l2"]}


def run_relabel(model_path, data, request: RelabelRequest, run, *, strategy: str = "default",
                progress=None) -> dict[str, Any]:
    """Builds a relabeled set from one split and writes the run directory (a saved dataset).

    The run directory's ``<split>/`` (train by default) holds ``image`` (x_hat), ``label`` (y_hat),
    ``original_label`` (y), ``index`` (of x in the split) and ``success`` (the source model predicts
    y_hat on x_hat); the test split comes from the source dataset when loaded, so
    ``advtf train --dataset OUT`` trains a zero-/negative-robust classifier and tests it on the
    original test set. ``results.json``: ``success_rate`` (targeted success over all examples),
    ``success_rate_label_changed`` (over y_hat != y), ``label_histogram`` (y_hat counts per class),
    ``original_label_histogram``, ``n``, ``images_per_second``, the attack and threat. Resumable;
    each batch is split over the local replicas of ``strategy`` (``mirrored``: every GPU).
    """
    from advtf.data import save_dataset, split_arrays
    from advtf.inputs import load_trained_model, model_fingerprint
    from advtf.plots.derived import relabeled_figure
    from advtf.runs import write_json, write_table
    from advtf.distribute.replicas import map_replicas
    from advtf.distribute.strategy import single_machine_strategy

    replicas = single_machine_strategy(strategy)
    splits = data.load()
    num_classes = splits.info.num_classes
    request.check(num_classes)
    images, labels = split_arrays(splits.require(request.split))
    if not len(images):
        raise UserError(f"the {request.split} split of {data.dataset} is empty; nothing to relabel")
    source_index, new_labels = relabel_targets(labels, num_classes, request.mode, seed=data.seed,
                                               per_image=request.per_image)
    model = load_trained_model(model_path, splits.info.image_shape)
    fingerprint = model_fingerprint(model_path)
    parameters = {**request.to_json(), "seed": data.seed, "n": int(len(source_index)),
                  "model_sha256": fingerprint["sha256"], "dataset": splits.fingerprint}
    run.record_inputs(dataset=splits.fingerprint, model=fingerprint, parameters=parameters)
    store = ChunkStore(run.store)

    def batch(pairs):
        index = source_index[pairs]
        seed = tf.constant([data.seed, int(pairs[0])], tf.int64)

        def attack(x, y, target):
            out = relabel_batch(model, x, y, target, request, seed=seed)
            return out["image"], out["success"]

        image, success = map_replicas(replicas, attack, images[index], labels[index],
                                      new_labels[pairs].astype(np.int32))
        return {"image": image.astype(np.float32), "label": new_labels[pairs].astype(np.int32),
                "original_label": labels[index].astype(np.int32), "index": index.astype(np.int32),
                "success": success.astype(bool)}

    done = process_in_chunks(store, len(source_index), chunk_size=request.chunk_size,
                             batch_size=request.batch_size, batch_fn=batch, progress=progress,
                             desc=f"relabel ({request.mode})")
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
        "label_histogram": _histogram(new_labels, names),
        "original_label_histogram": _histogram(labels[source_index], names),
        **request.to_json(),
        "seed": data.seed, "dataset": splits.info.name, "model": str(model_path),
        "images_per_second": done.examples_per_second,
        "resumed_chunks": done.resumed,
    }
    write_json(run.path / "results.json", results)
    write_table(run.path, "labels", [{"class": names[k], "index": k, "new_label_count": results["label_histogram"][names[k]],
                                      "original_label_count": results["original_label_histogram"][names[k]]}
                                     for k in range(num_classes)])
    shown = min(request.figure_examples, len(source_index))
    if shown:
        first = store.load(0, ["image", "label"])
        shown = min(shown, len(first["image"]))
        relabeled_figure(images[source_index[:shown]], np.asarray(first["image"][:shown]),
                         labels[source_index[:shown]], new_labels[:shown], run.path / "relabeled.png",
                         class_names=names, title=f"{request.mode}-robust set ({request.threat.norm} "
                                                  f"eps={request.threat.eps:g}, {request.threat.steps} steps)")
    return results


def _histogram(labels: np.ndarray, names: list[str]) -> dict[str, int]:
    counts = np.bincount(np.asarray(labels, np.int64), minlength=len(names))
    return {names[k]: int(counts[k]) for k in range(len(names))}
