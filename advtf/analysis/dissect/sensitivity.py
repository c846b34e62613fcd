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


def attack_inputs(concepts, input_shape, *, count, batch_size):
    """The first ``count`` concept images as model inputs (:func:`prepare_images`), ``[B, H, W, C]`` numpy
    batches of ``batch_size``: the natural images of Eq. 8, whether attacked here or in a job's stored pass."""
    for batch in concept_batches(concepts, batch_size, limit=count):
        yield prepare_images(batch["image"], input_shape).numpy()


def attacked_concepts(model, concepts, input_shape, request, *, count, batch_size, seed=0, progress=None, start=0):
    """The untargeted attack of Eq. 8, batch by batch from concept image ``start`` up to ``count``: dicts of
    :func:`advtf.adversarial.attack_batches` (``natural`` model inputs, adversarial ``image``, ``success``...).

    Concept images carry no class labels: the attack moves away from the model's own prediction.
    Global batch ``b`` is seeded ``[seed + b, 0]``, so a resumed pass draws what one pass draws.
    """
    num_classes = int(model.output_shape[-1])
    for batch in concept_batches(concepts, batch_size, progress, f"{request.name} + masks", limit=count,
                                 start=start):
        x = prepare_images(batch["image"], input_shape)
        predicted = tf.argmax(model(x, training=False), -1, output_type=tf.int32)
        pairs = tf.data.Dataset.from_tensors((x, predicted))
        (row,) = attack_batches(model, pairs, request, num_classes=num_classes, seed=seed + start // batch_size)
        start += len(row["image"])
        yield row


def sensitivity_pass(model, extractor, concepts, input_shape, layers, thresholds, request, *, count, batch_size,
                     seed=0, progress=None, keep=0, state=None, every: int = 10, pairs=attacked_concepts):
    """Eq. 8 on the first ``count`` concept images: ``{layer: v [U]}``, the attack's success rate, the
    number of images attacked and the first ``keep`` natural / adversarial model inputs (Figure 8).

    ``request`` is an :class:`advtf.adversarial.AttackRequest`; ``state`` (``load(name)`` /
    ``save(name, arrays)``, or None) keeps the sums so far every ``every`` batches. ``pairs`` yields
    the attacked batches (``natural``, ``image``, ``success``) with :func:`attacked_concepts`'
    signature: that function by default, or a job's stored pass of the same attack."""
    seg_shape = tf.constant(concepts.seg_shape, tf.int32)
    totals = {n: np.zeros(len(thresholds[n])) for n in layers}
    seen, flipped = 0, 0
    kept_natural = kept_adversarial = np.zeros((0, *input_shape), np.float32)
    saved = state.load("sensitivity") if state is not None else None
    if saved is not None:
        seen, flipped = int(saved["images"]), int(saved["flipped"])
        totals = {n: saved[f"v{i}"] for i, n in enumerate(layers)}
        kept_natural, kept_adversarial = saved["natural"], saved["adversarial"]
    total = min(count, concepts.size)
    for b, row in enumerate(pairs(model, concepts, input_shape, request, count=count, batch_size=batch_size,
                                  seed=seed, progress=progress, start=seen)):
        x, x_adv = tf.constant(row["natural"]), tf.constant(row["image"])
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
            kept_natural = np.concatenate([kept_natural, row["natural"][:room]])
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
