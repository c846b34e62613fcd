"""Robustified datasets R_eps (Springer et al. 2021, Sec. 3.3; Ilyas et al. 2019's robust dataset).

For every ``(x, y)`` of a split, a seed image ``x0`` is drawn uniformly from the *other* images
of the same split, and gradient descent from ``x0`` looks for an image whose representation
(the model's ``representation`` endpoint, its penultimate vector) matches ``x``'s:

    d(x_r) = ||rep(x_r) - rep(x)||_2 / ||rep(x)||_2

with L2-normalised steps of fixed size, no eps bound (the paper's "infinity", Table 4: 400 steps
of 0.05 for CIFAR-10), clipped to [0, 1]. The result is labelled ``y``. Because ``x0`` is
uncorrelated with ``y``, only the model's features carry the label: with a robust model, only
robust features.

Choices where the paper is silent (after Madry et al.'s robustness library, which Ilyas et al.
used): the loss is divided by ||rep(x)|| (the same steps as the plain distance, since each step
is normalised per example; it makes distances comparable across models), and each example keeps
its iterate of lowest distance (the library's ``use_best``), so the distance never ends above
its start.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from advtf.runs.chunks import ChunkStore, chunks_dataset, process_in_chunks
from advtf.errors import UserError

_TINY = 1e-12
ELEMENT_KEYS = ["image", "label", "index", "seed_index", "distance_before", "distance_after"]


def seed_indices(n: int, seed: int) -> np.ndarray:
    """For each of ``n`` images, the index of its seed image: uniform over the others.

    Raises:
        UserError: fewer than two images (no other image to start from).
    """
    if n < 2:
        raise UserError(f"robustification needs at least two images in the split (got {n}); "
                        "raise --test-subset or use a larger split")
    rng = np.random.default_rng([int(seed), 7_010])
    shift = rng.integers(1, n, size=n)  # 1 .. n-1: never the image itself, uniform over the rest
    return ((np.arange(n) + shift) % n).astype(np.int64)


def representation_model(model):
    """The model's ``representation`` endpoint as a model of its own (UserError when it has none)."""
    from advtf.models import endpoints, feature_extractor

    try:
        available = endpoints(model)
    except UserError as e:
        raise UserError(f"cannot robustify with this model: {e}") from None
    if "representation" not in available:
        raise UserError(f"model {model.name!r} has no 'representation' endpoint (it has {', '.join(available)}); "
                        "robustify needs an advtf model with a penultimate representation layer")
    return feature_extractor(model, "representation")


def _relative_distance(extractor, x, target):
    rep = extractor(x, training=False)["representation"]
    rep = tf.reshape(rep, [tf.shape(rep)[0], -1])
    return tf.norm(rep - target, axis=1) / (tf.norm(target, axis=1) + _TINY)


def _invert(extractor, target, x0, step_size, steps):
    """Normalised gradient descent on the relative representation distance from ``x0``."""
    x = x0
    start = _relative_distance(extractor, x0, target)
    best, best_distance = x0, start
    for _ in tf.range(steps):
        with tf.GradientTape() as tape:
            tape.watch(x)
            distance = _relative_distance(extractor, x, target)
            total = tf.reduce_sum(distance)
        grad = tape.gradient(total, x)
        better = distance < best_distance
        best = tf.where(better[:, None, None, None], x, best)
        best_distance = tf.where(better, distance, best_distance)
        norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=[1, 2, 3], keepdims=True))
        x = tf.clip_by_value(x - step_size * grad / (norm + _TINY), 0.0, 1.0)
    distance = _relative_distance(extractor, x, target)
    better = distance < best_distance
    best = tf.where(better[:, None, None, None], x, best)
    best_distance = tf.where(better, distance, best_distance)
    return best, start, best_distance


_compiled = tf.function(_invert, reduce_retracing=True)
_compiled_xla = tf.function(_invert, reduce_retracing=True, jit_compile=True)


def _target(extractor, x):
    rep = extractor(x, training=False)["representation"]
    return tf.reshape(rep, [tf.shape(rep)[0], -1])


_compiled_target = tf.function(_target, reduce_retracing=True)


def robustify_batch(extractor, x, x0, *, steps: int, step_size: float, jit: bool = False):
    """Robustified images of ``x`` starting from ``x0``.

    Args:
        extractor: :func:`representation_model` of the source model.
        x: the images whose representation is matched (B, H, W, C) in [0, 1].
        x0: the seed images, same shape.
        steps, step_size: gradient steps and their L2 length.
        jit: compile with XLA (slower on CPU).

    Returns:
        ``(x_r, distance_before, distance_after)``: images in [0, 1] and the relative
        representation distances at ``x0`` and at ``x_r`` (each (B,)).
    """
    x = tf.convert_to_tensor(x, tf.float32)
    x0 = tf.convert_to_tensor(x0, tf.float32)
    if x.shape != x0.shape:
        raise ValueError(f"images {x.shape} and seeds {x0.shape} differ in shape")
    fn = _compiled_xla if jit else _compiled
    return fn(extractor, _compiled_target(extractor, x), x0, tf.constant(step_size, tf.float32),
              tf.constant(int(steps)))


def source_robustness(model_path: str | Path) -> dict[str, Any] | None:
    """The robustness parameter recorded by ``advtf train`` beside the model, if any.

    Returns ``{"eps": 0.0, "norm": None}`` for a standard model, ``{"eps", "norm"}`` of the
    training threat for a robust one, ``None`` when no ``results.json`` is found.
    """
    from advtf.runs import read_json

    path = Path(model_path)
    results = (path if path.is_dir() else path.parent) / "results.json"
    try:
        info = read_json(results)
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or "robust_training" not in info:
        return None
    threat = info.get("training_threat") or {}
    if info["robust_training"] and threat:
        return {"eps": float(threat["eps"]), "norm": threat.get("norm")}
    return {"eps": 0.0, "norm": None}


@dataclasses.dataclass(frozen=True)
class RobustifyRequest:
    """Options of ``advtf robustify`` (defaults: the paper's CIFAR-10 row of Table 4)."""

    split: str = "test"
    steps: int = 400
    step_size: float = 0.05
    batch_size: int = 128
    chunk_size: int = 1000
    robustness: float | None = None  # the source's eps when not recorded beside the model
    jit: bool = False
    figure_examples: int = 8

    def __post_init__(self):
        if int(self.steps) < 1:
            raise UserError(f"--steps must be >= 1 (got {self.steps})")
        if not self.step_size > 0:
            raise UserError(f"--step-size must be > 0 (got {self.step_size})")
        if self.batch_size < 1 or self.chunk_size < 1:
            raise UserError("--batch-size and --chunk-size must be >= 1")


def run_robustify(model_path, data, request: RobustifyRequest, run, *, strategy: str = "default",
                  progress=None) -> dict[str, Any]:
    """Robustifies one split and writes the run directory (a saved dataset of kind robustified).

    The run directory's ``<split>/`` holds elements ``image`` (x_r), ``label`` (y), ``index`` (of x
    in the split), ``seed_index`` (of x0), ``distance_before`` and ``distance_after``; the other
    split comes from the source dataset when loaded. Also ``results.json`` (keys
    ``relative_distance_before`` / ``relative_distance_after``: means over the split; medians,
    ``n``, ``robustness``, ``images_per_second``, ...), ``examples.csv/.md`` and
    ``robustified.png`` (seed, robustified, original). Resumable chunk by chunk; each batch is
    split over the local replicas of ``strategy`` (``mirrored``: every GPU).
    """
    from advtf.data import save_dataset, split_arrays
    from advtf.inputs import load_trained_model, model_fingerprint
    from advtf.plots.derived import robustified_figure
    from advtf.runs import write_json, write_table
    from advtf.training.distributed import map_replicas
    from advtf.training.strategy import single_machine_strategy

    replicas = single_machine_strategy(strategy)
    splits = data.load()
    images, labels = split_arrays(splits.require(request.split))
    seeds = seed_indices(len(images), data.seed)
    model = load_trained_model(model_path, splits.info.image_shape)
    extractor = representation_model(model)
    robustness = source_robustness(model_path)
    if request.robustness is not None:
        robustness = {"eps": float(request.robustness), "norm": (robustness or {}).get("norm") or "l2"}
    fingerprint = model_fingerprint(model_path)
    parameters = {"steps": int(request.steps), "step_size": float(request.step_size), "split": request.split,
                  "seed": data.seed, "n": len(images), "model_sha256": fingerprint["sha256"],
                  "dataset": splits.fingerprint, "loss": "||rep(x_r) - rep(x)||_2 / ||rep(x)||_2",
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
    section = save_dataset(
        run.path, {request.split: chunks_dataset(store, done.chunks, ELEMENT_KEYS)}, kind="robustified",
        info=splits.info,
        source={"dataset": data.dataset, "model": fingerprint, "robustness": robustness, "split": request.split,
                "fingerprint": splits.fingerprint},
        parameters=parameters,
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
        "seed": data.seed, "dataset": splits.info.name, "model": str(model_path),
        "images_per_second": done.examples_per_second,
        "resumed_chunks": done.resumed,
    }
    write_json(run.path / "results.json", results)
    rows = [{"index": int(i), "label": int(y), "seed_index": int(s), "distance_before": round(float(d0), 6),
             "distance_after": round(float(d1), 6)}
            for i, y, s, d0, d1 in zip(columns["index"], columns["label"], columns["seed_index"], before, after)]
    write_table(run.path, "examples", rows)
    shown = np.arange(min(request.figure_examples, len(images)))
    if len(shown):
        first = store.load(0, ["image"])["image"]
        shown = shown[shown < len(first)]
        eps = robustness["eps"] if robustness else None
        robustified_figure(images[seeds[shown]], np.asarray(first[shown]), images[shown], labels[shown],
                           run.path / "robustified.png", class_names=splits.info.class_names,
                           title="robustified" + (f" by an eps={eps:g} model" if eps is not None else ""))
    return results
