"""IoU of unit masks with concept labels, counted batch by batch (Xu et al. 2019, Eq. 7; Bau et al. 2017).

``IoU(k, c) = sum_x |M_k ∩ L_c| / sum_x |M_k ∪ L_c|``, where a unit's mask counts only on images
having some label in the concept's (primary) category (``union="labelled"``), or, as
NetDissect-Lite's tally does, only on images where the mask touches such a label or that carry
an image-level label of the category (``union="overlap"``); an image-level label (scene,
texture) covers the whole image. Accumulated as counts per unit x concept with segment sums (no
loops over units, concepts or images). A unit is a concept detector when ``max_c IoU(k, c)``
exceeds 0.04 (the paper's footnote 2); its interpretability ``IoU(k)`` is the mean over concepts
(the paper's definition) or the max.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from advtf.analysis.dissect.features import (concept_batches, layer_maps, prepare_images, unit_chunks,
                                             unit_masks)

UNION_RULES = ("labelled", "overlap")
UNIT_SCORES = ("mean", "max")


@tf.function(reduce_retracing=True)
def _overlap_categories(masks, pixel_labels, image_labels, label_category, categories):
    """``[B, U, K]``: the unit's mask touches a pixel labelled in category k, or the image has an image-level
    label of category k (NetDissect-Lite's tally). ``label_category`` maps label numbers to 0..K-1, K = none."""
    pixel_hot = tf.reduce_max(tf.one_hot(tf.gather(label_category, pixel_labels), categories + 1), 1)  # [B,sh,sw,K+1]
    touched = tf.einsum("bhwu,bhwk->buk", masks, pixel_hot[..., :categories]) > 0
    image_hot = tf.reduce_max(tf.one_hot(tf.gather(label_category, image_labels), categories + 1), 1)  # [B, K+1]
    return tf.logical_or(touched, image_hot[:, None, :categories] > 0)


@tf.function(reduce_retracing=True)
def _batch_counts(masks, pixel_labels, image_labels, present, num_segments):
    """One batch's intersections ``[S, U]``, label areas ``[S]`` and unit areas per category ``[K, U]``.

    ``present [B, U, K]``: image b counts for unit u's area in category k (see :class:`IoUCounts`)."""
    units = tf.shape(masks)[-1]
    pixels = tf.shape(masks)[1] * tf.shape(masks)[2]
    flat_masks = tf.reshape(masks, [-1, units])  # [B*sh*sw, U]
    area = tf.reduce_sum(masks, [1, 2])  # [B, U]
    planes = tf.transpose(pixel_labels, [1, 0, 2, 3])  # [P, B, sh, sw]

    def plane_counts(labels):
        ids = tf.reshape(labels, [-1])
        return (tf.math.unsorted_segment_sum(flat_masks, ids, num_segments),
                tf.math.bincount(ids, minlength=num_segments, maxlength=num_segments, dtype=tf.float32))

    inter, label_area = tf.map_fn(plane_counts, planes, fn_output_signature=(tf.float32, tf.float32))
    image_hot = tf.reduce_sum(tf.one_hot(image_labels, num_segments), 1)  # [B, S]
    inter = tf.reduce_sum(inter, 0) + tf.einsum("bs,bu->su", image_hot, area)
    label_area = tf.reduce_sum(label_area, 0) + tf.reduce_sum(image_hot, 0) * tf.cast(pixels, tf.float32)
    unit_area = tf.einsum("buk,bu->ku", tf.cast(present, tf.float32), area)
    return inter, label_area, unit_area


@dataclasses.dataclass
class IoUCounts:
    """Counts over the concept set for one layer: intersections ``[S, U]`` (``S`` = max label number + 1),
    label areas ``[S]`` and unit mask areas over the images of each category ``[K, U]``.

    Which images count for category k: with ``label_category`` None, those labelled in k anywhere
    (``batch["present"]``); else (NetDissect-Lite's tally) those where the unit's mask touches a pixel
    labelled in k or that carry an image-level label of k. ``label_category [S]`` maps label numbers to
    category indices (-1: no category).
    """

    intersection: np.ndarray
    label_area: np.ndarray
    unit_area: np.ndarray

    @classmethod
    def zeros(cls, segments: int, categories: int, units: int) -> "IoUCounts":
        return cls(np.zeros((segments, units)), np.zeros(segments), np.zeros((categories, units)))

    def add(self, masks, batch: dict, units: slice = slice(None), label_category=None) -> None:
        """Adds one batch's counts; ``masks`` may hold a slice ``units`` of the layer's units (label areas
        are counted with the chunk starting at unit 0)."""
        segments = self.label_area.shape[0]
        labels = tf.constant(np.where(batch["pixel_labels"] < segments, batch["pixel_labels"], 0), tf.int32)
        image_labels = tf.constant(np.where(batch["image_labels"] < segments, batch["image_labels"], 0), tf.int32)
        masks = tf.convert_to_tensor(masks, tf.float32)
        if label_category is None:
            present = np.broadcast_to(batch["present"][:, None, :], (len(batch["present"]), masks.shape[-1],
                                                                     batch["present"].shape[-1]))
            present = tf.constant(present)
        else:
            categories = self.unit_area.shape[0]
            table = np.where(np.asarray(label_category) >= 0, label_category, categories)
            present = _overlap_categories(masks, labels, image_labels, tf.constant(table, tf.int32),
                                          tf.constant(categories))
        inter, label_area, unit_area = _batch_counts(masks, labels, image_labels, present, tf.constant(segments))
        self.intersection[:, units] += inter.numpy()
        if units.start in (None, 0):
            self.label_area += label_area.numpy()
        self.unit_area[:, units] += unit_area.numpy()

    def iou(self, numbers: np.ndarray, category_index: np.ndarray) -> np.ndarray:
        """``IoU[U, C]`` of the concepts with global ``numbers`` and category indices (Eq. 7)."""
        inter = self.intersection[numbers].T  # [U, C]
        union = self.unit_area[category_index].T + self.label_area[numbers][None, :] - inter
        return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def iou_pass(extractor, concepts, input_shape, layers, thresholds, *, batch_size, progress=None, state=None,
             every: int = 50, union: str = "labelled") -> dict:
    """``{layer: IoUCounts}`` over the whole concept set; the counts so far saved every ``every`` batches.

    ``union``: the images a unit's mask counts on for a category (:class:`IoUCounts`): ``labelled`` or
    ``overlap`` (NetDissect-Lite's tally). ``state`` (``load(name)`` / ``save(name, arrays)``, or None)
    keeps the counts so far, so a resumed job continues after the last saved batch."""
    label_category = concepts.category_of_number() if union == "overlap" else None
    segments = int(concepts.label_numbers.max(initial=0)) + 1
    counts = {n: IoUCounts.zeros(segments, len(concepts.categories), len(thresholds[n])) for n in layers}
    saved = state.load("iou") if state is not None else None
    done = 0
    if saved is not None:
        done = int(saved["images"])
        counts = {n: IoUCounts(saved[f"i{i}"], saved[f"l{i}"], saved[f"u{i}"]) for i, n in enumerate(layers)}
    seg_shape = tf.constant(concepts.seg_shape, tf.int32)
    for b, batch in enumerate(concept_batches(concepts, batch_size, progress, "IoU", start=done)):
        maps = layer_maps(extractor, prepare_images(batch["image"], input_shape))
        for n in layers:
            for units in unit_chunks(maps[n].shape, concepts.seg_shape):
                counts[n].add(unit_masks(maps[n][..., units], thresholds[n][units], seg_shape), batch, units,
                              label_category)
        done += len(batch["image"])
        if state is not None and ((b + 1) % every == 0 or done == concepts.size):
            state.save("iou", {"images": np.asarray(done), **{
                f"{key}{i}": value for i, n in enumerate(layers) for key, value in
                (("i", counts[n].intersection), ("l", counts[n].label_area), ("u", counts[n].unit_area))}})
    return counts


def category_indices(concepts) -> np.ndarray:
    """The category index of every concept (label) of ``concepts``."""
    return np.asarray([concepts.categories.index(c) for c in concepts.label_categories], np.int64)


def unit_table(iou: np.ndarray, concepts, unit_score: str, detector_iou: float) -> dict[str, np.ndarray]:
    """Per unit: best concept index, its IoU, ``IoU(k)`` (mean or max over concepts) and the detector flag."""
    best = np.argmax(iou, 1) if iou.shape[1] else np.zeros(iou.shape[0], int)
    best_iou = iou[np.arange(len(best)), best] if iou.shape[1] else np.zeros(len(best))
    score = iou.mean(1) if unit_score == "mean" else best_iou
    return {"best": best, "best_iou": best_iou, "score": score, "detector": best_iou > detector_iou}


def detector_counts(table: dict, concepts, units: np.ndarray | None = None) -> dict[str, int]:
    """Detectors per category (of their best concept), among ``units`` (all when None)."""
    chosen = np.arange(len(table["best"])) if units is None else np.asarray(units, np.int64)
    found = category_indices(concepts)[table["best"][chosen[table["detector"][chosen]]]]
    counts = np.bincount(found, minlength=len(concepts.categories))
    return {c: int(counts[k]) for k, c in enumerate(concepts.categories)}
