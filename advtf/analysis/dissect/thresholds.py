"""Per-unit activation thresholds ``T_k`` of network dissection (Xu et al. 2019, Sec. 5; Bau et al. 2017).

``T_k`` is the dataset-level top-``q`` quantile of unit ``k``'s activations over all images and
positions of the native-resolution map (NetDissect: q = 0.005; the paper writes "top 5%"), i.e.
``np.quantile(values, 1 - q)`` (linear interpolation). Computed in a streaming pass: exactly
from a per-unit top-k of the ``ceil(q N h w) + 1`` largest values when that fits the memory
budget, else from a per-unit histogram refined once inside the bin holding the quantile.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from advtf.analysis.dissect.features import concept_batches, layer_maps, prepare_images
from advtf.errors import UserError

HISTOGRAM_BINS = 1024


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


def thresholds_pass(extractor, concepts, input_shape, layers, quantile, *, batch_size, budget, progress=None,
                    state=None) -> tuple[dict, dict]:
    """``({layer: T [U]}, {layer: method})``, after as many passes over the concepts as the layers need.

    ``state`` (duck-typed: ``load(name)`` / ``save(name, arrays)``, or None) keeps the finished
    thresholds, so a resumed job skips these passes.
    """
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
        for batch in concept_batches(concepts, batch_size, progress, f"thresholds (pass {passes})"):
            maps = layer_maps(extractor, prepare_images(batch["image"], input_shape))
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
