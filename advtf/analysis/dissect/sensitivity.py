"""Sensitivity of units to adversarial examples (Xu et al. 2019, Eq. 8, Figure 8).

``v(k) = E ||M_k(x) - M_k(x')||_2`` over natural / adversarial pairs: the square root of the
number of mask pixels that flip, averaged over the attacked images. Concept images carry no
class labels, so the untargeted attack moves away from the model's own prediction.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advtf.adversarial import attack_batches
from advtf.analysis.dissect.features import (concept_batches, layer_maps, prepare_images, unit_chunks,
                                             unit_masks)


@tf.function(reduce_retracing=True)
def mask_change(masks, adversarial_masks):
    """``||M_k(x) - M_k(x')||_2`` per image and unit: ``[B, U]``."""
    return tf.sqrt(tf.reduce_sum(tf.abs(masks - adversarial_masks), [1, 2]))


def sensitivity_pass(model, extractor, concepts, input_shape, layers, thresholds, request, *, count, batch_size,
                     seed=0, progress=None, keep=0, state=None, every: int = 10):
    """Eq. 8 on the first ``count`` concept images: ``{layer: v [U]}``, the attack's success rate, the
    number of images attacked and the first ``keep`` natural / adversarial model inputs (Figure 8).

    ``request`` is an :class:`advtf.adversarial.AttackRequest`; ``state`` (``load(name)`` /
    ``save(name, arrays)``, or None) keeps the sums so far every ``every`` batches."""
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
    for b, batch in enumerate(concept_batches(concepts, batch_size, progress, f"{request.name} + masks",
                                              limit=count, start=seen)):
        x = prepare_images(batch["image"], input_shape)
        predicted = tf.argmax(model(x, training=False), -1, output_type=tf.int32)
        pairs = tf.data.Dataset.from_tensors((x, predicted))
        (row,) = attack_batches(model, pairs, request, num_classes=num_classes, seed=seed + seen // batch_size)
        x_adv = tf.constant(row["image"])
        natural, adversarial = layer_maps(extractor, x), layer_maps(extractor, x_adv)
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


def sensitivity_ranks(sensitivity) -> tuple[np.ndarray, np.ndarray]:
    """``(order, rank)``: units from the most to the least sensitive (ties by unit index) and each unit's
    rank in that order, 1 for the most sensitive."""
    order = np.argsort(-np.asarray(sensitivity, np.float64), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(1, len(order) + 1)
    return order, rank
