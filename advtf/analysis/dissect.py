"""Network dissection of units and their sensitivity to adversarial examples (Xu et al. 2019, papers/003,
Sec. 5, Eq. 7-8, Figures 7-8; Bau et al. 2017).

For a layer (a named endpoint with a ``[B, h, w, U]`` feature map) and unit ``k``:

* ``T_k``: the dataset-level top-``q`` quantile of the unit's activations over all images and
  positions of the native-resolution map (NetDissect: q = 0.005; the paper writes "top 5%"),
  i.e. ``np.quantile(values, 1 - q)`` (linear interpolation). Computed in a streaming pass:
  exactly from a per-unit top-k of the ``ceil(q N h w) + 1`` largest values when that fits the
  memory budget, else from a per-unit histogram refined once inside the bin holding the quantile;
* ``M_k(x) = S_k(x) > T_k`` with ``S_k`` the map upsampled bilinearly to the segmentation size
  (``>`` as NetDissect, so a unit that is zero on 99.5% of positions does not fire everywhere);
* ``IoU(k, c) = sum_x |M_k ∩ L_c| / sum_x |M_k ∪ L_c|`` (Eq. 7), where a unit's mask counts only
  on images having some label in the concept's (primary) category (``union="labelled"``), or, as
  NetDissect-Lite's tally does, only on images where the mask touches such a label or that carry
  an image-level label of the category (``union="overlap"``); an image-level label (scene,
  texture) covers the whole image; accumulated as counts per unit x concept, batch by batch,
  with segment sums (no loops over units, concepts or images);
* a concept detector: ``max_c IoU(k, c) > 0.04`` (the paper's footnote 2); unit interpretability
  ``IoU(k)`` = the mean over concepts (the paper's definition) or the max (``unit_iou="max"``);
* sensitivity ``v(k) = E ||M_k(x) - M_k(x')||_2`` over natural / adversarial pairs (Eq. 8): the
  square root of the number of mask pixels that flip, averaged over the attacked images;
* the p-value of the summed ``IoU(k)`` of the ``N`` most sensitive units against ``draws`` random
  ``N``-subsets: ``p = (1 + #{random >= observed}) / (1 + draws)`` (Figure 7a).

Concept images are resized (bilinear, antialiased) to the model's input size and turned into
luminance for a greyscale model. Concept images carry no class labels, so the untargeted attack
moves away from the model's own prediction on the natural image.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from advtf.errors import UserError

DEFAULT_NS = (10, 20, 30, 50, 80, 100)
RESNET_LAYERS = ("layer1", "layer2", "layer3", "layer4")
HISTOGRAM_BINS = 1024
UNION_RULES = ("labelled", "overlap")


# --- concepts and model inputs -------------------------------------------------------------------


def load_concepts(spec: str, input_shape, *, count: int | None, seed: int = 0, split: str | None = None):
    """The concept set of ``--concepts``: ``synthetic`` (at the model's input size) or ``broden:DIR``."""
    from advtf.data.broden import load_broden
    from advtf.data.concepts import synthetic_concepts

    if spec == "synthetic":
        return synthetic_concepts(count or 1000, tuple(input_shape[:2]), seed=seed)
    if spec.startswith("broden:") and spec[len("broden:"):].strip():
        return load_broden(spec[len("broden:"):].strip(), split=split, limit=count)
    raise UserError(f"--concepts {spec!r}: write synthetic or broden:DIR (a Broden directory)")


def prepare_images(images, input_shape) -> tf.Tensor:
    """Concept images ``[B, H, W, 3]`` -> the model's input size (bilinear, antialiased) and channels
    (luminance for a greyscale model), in [0, 1]."""
    height, width, channels = input_shape
    x = tf.convert_to_tensor(images, tf.float32)
    if tuple(x.shape[1:3]) != (height, width):
        x = tf.clip_by_value(tf.image.resize(x, (height, width), antialias=True), 0.0, 1.0)
    if channels == 1:
        x = tf.image.rgb_to_grayscale(x)
    elif channels != 3:
        raise UserError(f"the model takes {channels}-channel images; dissection needs 1 (greyscale) or 3 (RGB)")
    return x


def default_layers(model: keras.Model) -> list[str]:
    """ResNet-18's ``layer1..layer4`` when present, else every spatial module endpoint ``m0..``."""
    from advtf.models import endpoints

    available = endpoints(model)
    if all(n in available for n in RESNET_LAYERS):
        return list(RESNET_LAYERS)
    return [n for n, t in available.items() if n[0] == "m" and n[1:].isdigit() and len(t.shape) == 4]


def dissection_extractor(model: keras.Model, layers) -> keras.Model:
    """``{layer: [B, h, w, U]}`` of the named endpoints.

    Raises:
        UserError: an unknown endpoint (listing the available ones) or a non-spatial one.
    """
    from advtf.models import endpoints, feature_extractor

    extractor = feature_extractor(model, list(layers))
    flat = [n for n, t in endpoints(model).items() if len(t.shape) != 4]
    spatial = [n for n, t in endpoints(model).items() if len(t.shape) == 4]
    for name, tensor in extractor.output.items():
        if len(tensor.shape) != 4:
            raise UserError(f"endpoint {name!r} has shape {tuple(tensor.shape)[1:]}, not a spatial feature map; "
                            f"dissection needs [h, w, units] endpoints: {', '.join(spatial)}"
                            + (f" (not {', '.join(flat)})" if flat else ""))
    return extractor


@tf.function(reduce_retracing=True)
def _features(extractor, x):
    return extractor(x, training=False)


# --- thresholds ----------------------------------------------------------------------------------


class UnitQuantile:
    """Streaming per-unit ``np.quantile(values, 1 - q)`` over every ``[B, h, w, U]`` batch of maps.

    ``total`` is the number of values per unit over the whole pass (``N h w``). Exact mode keeps
    the per-unit top ``k = total - floor((1 - q)(total - 1))`` values (``k U <= budget``) and
    interpolates between the two order statistics as ``np.quantile`` does; one pass. Histogram
    mode (larger ``k U``): a min/max pass, a ``HISTOGRAM_BINS``-bin histogram pass and a second
    histogram pass inside the bin holding the quantile (plus the smallest value above that bin):
    both order statistics, hence the estimate, are within one fine bin (``(max - min) / bins**2``)
    of ``np.quantile``; three passes.
    """

    def __init__(self, units: int, total: int, quantile: float, *, budget: int = 1 << 25):
        if not 0 < quantile < 1:
            raise UserError(f"--quantile {quantile:g}: give a fraction in (0, 1), e.g. 0.005 (NetDissect)")
        self.units, self.total, self.quantile = int(units), int(total), float(quantile)
        position = (1.0 - quantile) * (total - 1)
        self.rank = int(math.floor(position))  # ascending rank of the lower order statistic
        self.frac = position - self.rank
        self.k = self.total - self.rank
        self.exact = self.k * self.units <= budget
        self.stage = "top" if self.exact else "range"
        self._top = None
        self._low = self._high = None
        self._counts = None
        self.thresholds: np.ndarray | None = None

    @property
    def method(self) -> str:
        return "exact (top-k)" if self.exact else f"histogram ({HISTOGRAM_BINS}x{HISTOGRAM_BINS} bins)"

    def needs_pass(self) -> bool:
        return self.thresholds is None

    def update(self, maps) -> None:
        values = tf.transpose(tf.reshape(tf.cast(maps, tf.float32), [-1, self.units]))  # [U, n]
        if self.stage == "top":
            merged = values if self._top is None else tf.concat([self._top, values], 1)
            self._top = tf.math.top_k(merged, k=min(self.k, int(merged.shape[1])), sorted=True).values
        elif self.stage == "range":
            low, high = tf.reduce_min(values, 1).numpy(), tf.reduce_max(values, 1).numpy()
            self._low = low if self._low is None else np.minimum(self._low, low)
            self._high = high if self._high is None else np.maximum(self._high, high)
        else:
            counts = _histogram(values, self._low, self._high, self._coarse if self.stage == "fine" else None)
            self._counts = counts if self._counts is None else self._counts + counts
            if self.stage == "fine":  # the smallest value above the coarse bin: the next order statistic's home
                edge = (self._low + (self._coarse + 1) * (self._high - self._low) / HISTOGRAM_BINS).astype(np.float32)
                above = tf.where(values >= edge[:, None], values, np.inf)
                self._next = np.minimum(self._next, tf.reduce_min(above, 1).numpy())

    def finish_pass(self) -> None:
        if self.stage == "top":
            top = self._top.numpy().astype(np.float64)
            if top.shape[1] < self.k:
                raise ValueError(f"saw {top.shape[1]} values per unit, expected {self.total}")
            lower = top[:, self.k - 1]
            upper = top[:, self.k - 2] if self.k >= 2 else lower
            self.thresholds = lower + self.frac * (upper - lower)
            self._top = None
        elif self.stage == "range":
            self._high = np.where(self._high > self._low, self._high, self._low + 1e-12)
            self.stage = "coarse"
        elif self.stage == "coarse":
            self._coarse, self._below = _find_bin(self._counts, self.rank)
            self._counts, self.stage = None, "fine"
            self._next = np.full(self.units, np.inf, np.float32)
        else:
            lower = self._order_statistic(self.rank - self._below)
            inbin = self._counts.sum(1)
            following = self.rank - self._below + 1
            upper = np.where(following < inbin, self._order_statistic(np.minimum(following, inbin - 1)),
                             np.where(np.isfinite(self._next), self._next, lower))
            self.thresholds = lower + self.frac * (upper - lower)
            self._counts = None

    def _order_statistic(self, rank_in_bin) -> np.ndarray:
        """The value of a rank inside each unit's coarse bin, placed within its fine bin by rank."""
        fine, below = _find_bin(self._counts, rank_in_bin)
        inside = self._counts[np.arange(self.units), fine]
        width = (self._high - self._low) / HISTOGRAM_BINS
        left = self._low + width * (self._coarse + fine / HISTOGRAM_BINS)
        return left + width / HISTOGRAM_BINS * (rank_in_bin - below + 0.5) / np.maximum(inside, 1)


def _histogram(values, low, high, coarse=None) -> np.ndarray:
    """Per-unit counts ``[U, bins]`` of ``values [U, n]`` over ``[low, high]``; with ``coarse``, only the
    values in each unit's coarse bin, binned finely inside it."""
    units = int(values.shape[0])
    scaled = (values - low[:, None].astype(np.float32)) / (high - low)[:, None].astype(np.float32) * HISTOGRAM_BINS
    index = tf.clip_by_value(tf.floor(scaled), 0, HISTOGRAM_BINS - 1)
    if coarse is not None:
        keep = tf.equal(index, coarse[:, None].astype(np.float32))
        index = tf.clip_by_value(tf.floor((scaled - index) * HISTOGRAM_BINS), 0, HISTOGRAM_BINS - 1)
        index = tf.where(keep, index, -1.0)
    flat = tf.cast(index, tf.int64) + HISTOGRAM_BINS * tf.range(units, dtype=tf.int64)[:, None]
    flat = tf.boolean_mask(flat, index >= 0)
    return tf.math.bincount(flat, minlength=units * HISTOGRAM_BINS, dtype=tf.int64).numpy().reshape(
        units, HISTOGRAM_BINS)


def _find_bin(counts: np.ndarray, rank) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, the bin holding the value of ascending ``rank`` and the count below that bin."""
    cumulative = np.cumsum(counts, 1)
    rank = np.broadcast_to(np.asarray(rank), (counts.shape[0],))
    found = (cumulative <= rank[:, None]).sum(1)
    below = np.where(found > 0, cumulative[np.arange(len(found)), np.maximum(found - 1, 0)], 0)
    return found, below


# --- IoU counts ----------------------------------------------------------------------------------


@tf.function(reduce_retracing=True)
def unit_masks(maps, thresholds, seg_shape):
    """``M_k``: maps ``[B, h, w, U]`` upsampled bilinearly to ``seg_shape``, ``> T_k``, as float32."""
    upsampled = tf.image.resize(maps, seg_shape, method="bilinear")
    return tf.cast(upsampled > tf.cast(thresholds, tf.float32), tf.float32)


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
    category indices (-1: none)."""

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


# --- sensitivity and significance ----------------------------------------------------------------


@tf.function(reduce_retracing=True)
def mask_change(masks, adversarial_masks):
    """``||M_k(x) - M_k(x')||_2`` per image and unit: ``[B, U]``."""
    return tf.sqrt(tf.reduce_sum(tf.abs(masks - adversarial_masks), [1, 2]))


def sensitivity_p_values(unit_iou: np.ndarray, sensitivity: np.ndarray, ns, *, draws: int = 10000,
                         seed: int = 0) -> list[dict]:
    """Figure 7a: p-value of the summed ``IoU(k)`` of the ``N`` most sensitive units, per ``N``.

    The background distribution is the summed IoU of ``draws`` uniformly random ``N``-subsets (one
    random permutation of the units per draw; its prefixes give every ``N``), seeded.
    ``p = (1 + #{random >= observed}) / (1 + draws)``; ``N`` above the unit count is skipped.
    """
    unit_iou = np.asarray(unit_iou, np.float64)
    units = len(unit_iou)
    order = np.argsort(-np.asarray(sensitivity, np.float64), kind="stable")
    valid = [n for n in ns if 0 < n <= units]
    observed = {n: float(unit_iou[order[:n]].sum()) for n in valid}
    at_least = {n: 0 for n in valid}
    random_sum = {n: 0.0 for n in valid}
    rng = np.random.default_rng([seed, 7])
    chunk = max(1, (1 << 22) // max(units, 1))
    for start in range(0, draws, chunk):
        size = min(chunk, draws - start)
        permutations = np.argsort(rng.random((size, units)), axis=1)
        prefix = np.cumsum(unit_iou[permutations], axis=1)
        for n in valid:
            sums = prefix[:, n - 1]
            tolerance = 1e-9 * max(1.0, abs(observed[n]))  # the same units summed in another order
            at_least[n] += int((sums >= observed[n] - tolerance).sum())
            random_sum[n] += float(sums.sum())
    rows = []
    for n in ns:
        if n in observed:
            rows.append({"n": n, "observed_iou_sum": observed[n], "random_iou_sum_mean": random_sum[n] / draws,
                         "p_value": (1 + at_least[n]) / (1 + draws), "skipped": None})
        else:
            rows.append({"n": n, "observed_iou_sum": None, "random_iou_sum_mean": None, "p_value": None,
                         "skipped": f"the layer has {units} units"})
    return rows


# --- the job -------------------------------------------------------------------------------------


def _bar(progress, total, desc):
    return progress(total=total, desc=desc, unit="img") if progress else None


def _stream(concepts, batch_size, progress, desc, limit=None, start=0):
    """Concept batches from image ``start`` up to ``limit`` images, with a progress bar over all of them."""
    total = min(concepts.size, limit or concepts.size)
    bar = _bar(progress, total, desc)
    seen = start
    if bar is not None and start:
        bar.update(min(start, total))
    try:
        for batch in concepts.batches(batch_size, start):
            if seen >= total:
                break
            batch = {k: v[:total - seen] for k, v in batch.items()}
            seen += len(batch["image"])
            if bar is not None:
                bar.update(len(batch["image"]))
            yield batch
    finally:
        if bar is not None:
            bar.close()


class _Snapshots:
    """The passes' view of the run's resume store: ``load(name)`` / ``save(name, arrays)`` of one snapshot each."""

    def __init__(self, store):
        self.store = store

    def load(self, name: str) -> dict | None:
        return self.store.load_snapshot(f"dissect_{name}")

    def save(self, name: str, arrays: dict) -> None:
        self.store.save_snapshot(f"dissect_{name}", arrays)


def thresholds_pass(extractor, concepts, input_shape, layers, quantile, *, batch_size, budget, progress=None,
                    state=None) -> tuple[dict, dict]:
    """``({layer: T [U]}, {layer: method})``, after as many passes over the concepts as the layers need."""
    saved = state.load("thresholds") if state is not None else None
    if saved is not None:
        return ({n: saved[f"t{i}"] for i, n in enumerate(layers)},
                {n: str(saved["methods"][i]) for i, n in enumerate(layers)})
    shapes = {n: tuple(extractor.output[n].shape[1:]) for n in layers}
    estimators = {n: UnitQuantile(s[2], concepts.size * s[0] * s[1], quantile, budget=budget)
                  for n, s in shapes.items()}
    passes = 0
    while any(e.needs_pass() for e in estimators.values()):
        passes += 1
        active = [n for n, e in estimators.items() if e.needs_pass()]
        for batch in _stream(concepts, batch_size, progress, f"thresholds (pass {passes})"):
            maps = _features(extractor, prepare_images(batch["image"], input_shape))
            for n in active:
                estimators[n].update(maps[n])
        for n in active:
            estimators[n].finish_pass()
    thresholds = {n: e.thresholds.astype(np.float32) for n, e in estimators.items()}
    methods = {n: e.method for n, e in estimators.items()}
    if state is not None:
        state.save("thresholds", {**{f"t{i}": thresholds[n] for i, n in enumerate(layers)},
                                  "methods": np.asarray([methods[n] for n in layers])})
    return thresholds, methods


def unit_chunks(map_shape, seg_shape, limit: int = 1 << 25) -> list[slice]:
    """Slices of units whose upsampled masks (``B x sh x sw x units`` floats) stay within ``limit`` values."""
    batch, units = int(map_shape[0]), int(map_shape[-1])
    size = max(1, limit // max(1, batch * int(seg_shape[0]) * int(seg_shape[1])))
    return [slice(start, min(start + size, units)) for start in range(0, units, size)]


def iou_pass(extractor, concepts, input_shape, layers, thresholds, *, batch_size, progress=None, state=None,
             every: int = 50, union: str = "labelled") -> dict:
    """``{layer: IoUCounts}`` over the whole concept set; the counts so far saved every ``every`` batches.

    ``union``: the images a unit's mask counts on for a category (:class:`IoUCounts`): ``labelled`` or
    ``overlap`` (NetDissect-Lite's tally)."""
    label_category = concepts.category_of_number() if union == "overlap" else None
    segments = int(concepts.label_numbers.max(initial=0)) + 1
    counts = {n: IoUCounts.zeros(segments, len(concepts.categories), len(thresholds[n])) for n in layers}
    saved = state.load("iou") if state is not None else None
    done = 0
    if saved is not None:
        done = int(saved["images"])
        counts = {n: IoUCounts(saved[f"i{i}"], saved[f"l{i}"], saved[f"u{i}"]) for i, n in enumerate(layers)}
    seg_shape = tf.constant(concepts.seg_shape, tf.int32)
    for b, batch in enumerate(_stream(concepts, batch_size, progress, "IoU", start=done)):
        maps = _features(extractor, prepare_images(batch["image"], input_shape))
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


def sensitivity_pass(model, extractor, concepts, input_shape, layers, thresholds, request, *, count, batch_size,
                     seed=0, progress=None, keep=0, state=None, every: int = 10):
    """Eq. 8 on the first ``count`` concept images: ``{layer: v [U]}``, the attack's success rate, the
    number of images attacked and the first ``keep`` natural / adversarial model inputs (Figure 8).
    The sums so far are saved every ``every`` batches."""
    from advtf.adversarial import attack_batches

    seg_shape = tf.constant(concepts.seg_shape, tf.int32)
    totals = {n: np.zeros(len(thresholds[n])) for n in layers}
    seen, flipped = 0, 0
    kept_natural = kept_adversarial = np.zeros((0, *input_shape), np.float32)
    saved = state.load("sensitivity") if state is not None else None
    if saved is not None:
        seen, flipped = int(saved["images"]), int(saved["flipped"])
        totals = {n: saved[f"v{i}"] for i, n in enumerate(layers)}
        kept_natural, kept_adversarial = saved["natural"], saved["adversarial"]
    num_classes = int(model.output_shape[-1])
    total = min(count, concepts.size)
    for b, batch in enumerate(_stream(concepts, batch_size, progress, f"{request.name} + masks", limit=count,
                                      start=seen)):
        x = prepare_images(batch["image"], input_shape)
        predicted = tf.argmax(model(x, training=False), -1, output_type=tf.int32)
        pairs = tf.data.Dataset.from_tensors((x, predicted))
        (row,) = attack_batches(model, pairs, request, num_classes=num_classes, seed=seed + seen // batch_size)
        x_adv = tf.constant(row["image"])
        natural, adversarial = _features(extractor, x), _features(extractor, x_adv)
        for n in layers:
            for units in unit_chunks(natural[n].shape, concepts.seg_shape):
                change = mask_change(unit_masks(natural[n][..., units], thresholds[n][units], seg_shape),
                                     unit_masks(adversarial[n][..., units], thresholds[n][units], seg_shape))
                totals[n][units] += change.numpy().sum(0)
        seen += len(row["image"])
        flipped += int(row["success"].sum())
        room = keep - len(kept_natural)
        if room > 0:
            kept_natural = np.concatenate([kept_natural, x.numpy()[:room]])
            kept_adversarial = np.concatenate([kept_adversarial, row["image"][:room]])
        if state is not None and ((b + 1) % every == 0 or seen == total):
            state.save("sensitivity", {"images": np.asarray(seen), "flipped": np.asarray(flipped),
                                       "natural": kept_natural, "adversarial": kept_adversarial,
                                       **{f"v{i}": totals[n] for i, n in enumerate(layers)}})
    return ({n: t / max(seen, 1) for n, t in totals.items()}, (flipped / seen if seen else None), seen,
            (kept_natural, kept_adversarial))


def unit_table(iou: np.ndarray, concepts, unit_score: str, detector_iou: float) -> dict[str, np.ndarray]:
    """Per unit: best concept index, its IoU, ``IoU(k)`` (mean or max over concepts) and the detector flag."""
    best = np.argmax(iou, 1) if iou.shape[1] else np.zeros(iou.shape[0], int)
    best_iou = iou[np.arange(len(best)), best] if iou.shape[1] else np.zeros(len(best))
    score = iou.mean(1) if unit_score == "mean" else best_iou
    return {"best": best, "best_iou": best_iou, "score": score, "detector": best_iou > detector_iou}


def detector_counts(table: dict, concepts, units: np.ndarray | None = None) -> dict[str, int]:
    """Detectors per category (of their best concept), among ``units`` (all when None)."""
    chosen = np.arange(len(table["best"])) if units is None else np.asarray(units, np.int64)
    category_index = np.asarray([concepts.categories.index(c) for c in concepts.label_categories], np.int64)
    found = category_index[table["best"][chosen[table["detector"][chosen]]]]
    counts = np.bincount(found, minlength=len(concepts.categories))
    return {c: int(counts[k]) for k, c in enumerate(concepts.categories)}


def run_dissect_job(model_path, concepts_spec: str, request, run, *, layers=None, quantile=0.005,
                    detector_iou=0.04, unit_score="mean", concept_images=None, split=None, attack_images=100,
                    ns=DEFAULT_NS, draws=10000, detector_top=100, show_units=4, show_images=2, batch_size=32,
                    seed=0, budget=1 << 25, union="labelled", progress=None, checkpoint_every=50) -> dict:
    """``advtf dissect``: dissection, sensitivity and significance per layer; tables and figures in ``run.path``.

    Writes results.json, units.csv/.md, detectors.csv/.md, pvalues.csv/.md, detectors.png,
    pvalues.png and segmentation_<layer>.png (Figure 8). The thresholds, the IoU counts and the
    sensitivity sums so far are kept in ``state/`` (every ``checkpoint_every`` batches) until the
    job completes, so an interrupted run continues where it stopped (``RunDir(resume=True)``).
    """
    from advtf.inputs import fingerprints, model_name
    from advtf.inputs import load_trained_model
    from advtf.plots.dissect import detectors_figure, pvalues_figure, segmentation_figure
    from advtf.runs import write_json, write_table

    if unit_score not in ("mean", "max"):
        raise UserError(f"unit IoU {unit_score!r}: choose mean (the paper's) or max")
    if not 0 <= detector_iou < 1:
        raise UserError(f"--detector-iou {detector_iou:g}: give an IoU in [0, 1), e.g. 0.04")
    if union not in UNION_RULES:
        raise UserError(f"union rule {union!r}: choose {' or '.join(UNION_RULES)}")
    if union not in UNION_RULES:
        raise UserError(f"union rule {union!r}: choose {' or '.join(UNION_RULES)}")
    if not 0 < quantile < 1:
        raise UserError(f"--quantile {quantile:g}: give a fraction in (0, 1), e.g. 0.005 (NetDissect)")
    if draws < 1 or attack_images < 1:
        raise UserError("--draws and --attack-images must be at least 1")
    model = load_trained_model(model_path)
    input_shape = tuple(int(d) for d in model.input_shape[1:])
    layers = list(layers) if layers else default_layers(model)
    extractor = dissection_extractor(model, layers)
    request.check(int(model.output_shape[-1]))
    if request.targeted:
        raise UserError("dissection uses an untargeted attack (concept images have no class labels)")
    request = dataclasses.replace(request, attack_target="prediction")
    concepts = load_concepts(concepts_spec, input_shape, count=concept_images, seed=seed, split=split)
    fingerprint = fingerprints([model_path])[0]
    state = _Snapshots(run.store)
    run.record_inputs(model=fingerprint, concepts=concepts.name, parameters={
        "model_sha256": fingerprint.get("sha256"), "concepts": concepts.description, "layers": layers,
        "quantile": quantile, "budget": budget, "batch_size": batch_size, "seed": seed, "union": union,
        "attack": request.to_json(), "attack_images": attack_images, "show_images": show_images})

    thresholds, methods = thresholds_pass(extractor, concepts, input_shape, layers, quantile, batch_size=batch_size,
                                          budget=budget, progress=progress, state=state)
    counts = iou_pass(extractor, concepts, input_shape, layers, thresholds, batch_size=batch_size,
                      progress=progress, state=state, every=checkpoint_every, union=union)
    sensitivity, success_rate, attacked, kept = sensitivity_pass(
        model, extractor, concepts, input_shape, layers, thresholds, request, count=attack_images,
        batch_size=batch_size, seed=seed, progress=progress, keep=show_images, state=state,
        every=max(1, checkpoint_every // 5))

    category_index = np.asarray([concepts.categories.index(c) for c in concepts.label_categories], np.int64)
    unit_rows, detector_rows, pvalue_rows, per_layer, notes = [], [], [], {}, []
    for n in layers:
        iou = counts[n].iou(concepts.label_numbers, category_index)
        table = unit_table(iou, concepts, unit_score, detector_iou)
        v = sensitivity[n]
        order = np.argsort(-v, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(1, len(order) + 1)
        units = len(v)
        top = order[:min(detector_top, units)]
        pvalues = sensitivity_p_values(table["score"], v, ns, draws=draws, seed=seed)
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
        shown = order[:min(show_units, units)]
        if len(kept[0]):
            x, x_adv = tf.constant(kept[0]), tf.constant(kept[1])
            seg = tf.constant(concepts.seg_shape, tf.int32)
            chosen = tf.constant(shown, tf.int32)
            masks = [unit_masks(tf.gather(_features(extractor, im)[n], chosen, axis=3),
                                tf.gather(thresholds[n], chosen), seg).numpy() for im in (x, x_adv)]
            display = [tf.image.resize(im, concepts.seg_shape).numpy().clip(0, 1) for im in (x, x_adv)]
            titles = [f"unit {k}: {rows[k]['concept']} ({rows[k]['category']})\nIoU {rows[k]['iou']:.3f}, "
                      f"v={rows[k]['sensitivity']:.2f}" for k in shown]
            segmentation_figure(display[0], display[1], masks[0], masks[1], titles,
                                run.path / f"segmentation_{n}.png",
                                title=f"{model_name(model_path)} {n}: the {len(shown)} most sensitive units, "
                                      "natural vs adversarial (Fig. 8)")

    results = {
        "model": str(model_path), "input_shape": list(input_shape),
        "concepts": {"source": concepts.name, "description": concepts.description, "images": concepts.size,
                     "image_shape": list(concepts.image_shape), "segmentation_shape": list(concepts.seg_shape),
                     "categories": list(concepts.categories), "labels": len(concepts.label_numbers),
                     "model_input": f"concept images resized (bilinear, antialiased) to {input_shape[0]}x"
                                    f"{input_shape[1]}" + (", luminance" if input_shape[2] == 1 else "")},
        "quantile": quantile, "mask": "upsampled activation > T_k (NetDissect)", "detector_iou": detector_iou,
        "union_images": union,
        "unit_iou": unit_score, "attack": request.to_json(), "attack_images": attacked,
        "attack_labels": "the model's own prediction on the natural image (concept images have no class labels)",
        "attack_success_rate": success_rate, "draws": draws, "ns": list(ns), "detector_top": detector_top,
        "seed": seed, "layers": per_layer, "notes": notes,
    }
    write_json(run.path / "results.json", results)
    write_table(run.path, "units", unit_rows)
    write_table(run.path, "detectors", detector_rows,
                ["layer", "units", "n_units", *concepts.categories, "total"])
    write_table(run.path, "pvalues", pvalue_rows,
                ["layer", "n", "observed_iou_sum", "random_iou_sum_mean", "p_value", "skipped"])
    detectors_figure(detector_rows, list(concepts.categories), run.path / "detectors.png",
                     title=f"{model_name(model_path)}: concept detectors (IoU > {detector_iou:g}) per layer")
    pvalues_figure(pvalue_rows, layers, run.path / "pvalues.png",
                   title=f"{model_name(model_path)}: p-value of IoU({unit_score}) of the top-N sensitive units")
    return results
