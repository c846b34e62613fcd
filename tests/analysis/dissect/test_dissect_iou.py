"""IoU counts (Eq. 7), best concepts and detectors against set counting image by image on hand-made cases."""

import numpy as np
import pytest
import tensorflow as tf

from advtf.analysis.dissect import IoUCounts, detector_counts, unit_chunks, unit_masks, unit_table
from advtf.data.concepts import ConceptSet


def _reference(maps, q):
    values = maps.reshape(-1, maps.shape[-1]).astype(np.float64)
    return np.quantile(values, 1 - q, axis=0)


def _concepts():
    """Two pixel categories (color: labels 1, 2; object: 5 over two planes) and one image-level one (texture: 7, 8)."""
    return ConceptSet(name="test", size=0, image_shape=(8, 8, 3), seg_shape=(8, 8),
                      categories=("color", "object", "texture"), label_numbers=np.array([1, 2, 5, 7, 8]),
                      label_names=("c1", "c2", "o5", "t7", "t8"),
                      label_categories=("color", "color", "object", "texture", "texture"), batches=None)


def _batch(rng, n, seg):
    color = rng.choice([0, 1, 2], (n, seg, seg))
    obj_a = np.where(rng.random((n, seg, seg)) < 0.3, 5, 0)
    obj_b = np.where((rng.random((n, seg, seg)) < 0.1) & (obj_a == 0), 5, 0)  # a second plane, disjoint
    obj_a[0] = obj_b[0] = 0  # image 0 has no object label: its masks do not count for object concepts
    texture = np.zeros((n, 2), np.int32)
    texture[1] = (7, 8)
    texture[2, 0] = 8
    pixel = np.stack([color, obj_a, obj_b], 1).astype(np.int32)
    present = np.stack([(color > 0).any((1, 2)), ((obj_a > 0) | (obj_b > 0)).any((1, 2)), (texture > 0).any(1)], 1)
    return {"image": None, "pixel_labels": pixel, "image_labels": texture, "present": present}


def _reference_iou(masks, batch, concepts, rule="labelled"):
    """IoU by set counting, image by image; a unit's mask counts on an image when the image is labelled in the
    concept's category (``labelled``) or when the mask touches a label of that category (``overlap``)."""
    category_of = dict(zip(concepts.label_numbers.tolist(), concepts.label_categories))
    n, units = masks.shape[0], masks.shape[-1]
    out = np.zeros((units, len(concepts.label_numbers)))
    for c, (number, category) in enumerate(zip(concepts.label_numbers, concepts.label_categories)):
        k = concepts.categories.index(category)
        for u in range(units):
            inter = union = 0
            for i in range(n):
                m = masks[i, ..., u] > 0
                if category == "texture":
                    label = np.full(m.shape, number in batch["image_labels"][i])
                else:
                    label = np.any(batch["pixel_labels"][i] == number, 0)
                if rule == "overlap":
                    under = {category_of.get(v) for v in np.unique(batch["pixel_labels"][i][:, m])}
                    scalars = {category_of.get(v) for v in batch["image_labels"][i] if v}
                    counted = category in under | scalars
                else:
                    counted = batch["present"][i, k]
                if not counted:  # the mask does not count here; the label (if any) still does
                    union += label.sum()
                    continue
                inter += (m & label).sum()
                union += (m | label).sum()
            out[u, c] = inter / union if union else 0.0
    return out


def test_iou_counts_match_set_counting_over_batches(rng):
    concepts = _concepts()
    n, h, units, seg = 9, 4, 6, 8
    maps = rng.random((n, h, h, units)).astype(np.float32)
    thresholds = _reference(maps, 0.2).astype(np.float32)
    batch = _batch(rng, n, seg)
    masks = unit_masks(tf.constant(maps), thresholds, tf.constant([seg, seg])).numpy()
    # the masks: the bilinearly upsampled map above the threshold
    up = tf.image.resize(maps, (seg, seg), method="bilinear").numpy()
    np.testing.assert_array_equal(masks, (up > thresholds).astype(np.float32))
    category_index = np.array([0, 0, 1, 2, 2])
    counts = IoUCounts.zeros(9, 3, units)
    for start in (0, 4):  # two batches: 4 + 5 images
        stop = 4 if start == 0 else n
        counts.add(tf.constant(masks[start:stop]), {k: v[start:stop] for k, v in batch.items() if v is not None})
    iou = counts.iou(concepts.label_numbers, category_index)
    np.testing.assert_allclose(iou, _reference_iou(masks, batch, concepts), rtol=1e-6)
    chunked = IoUCounts.zeros(9, 3, units)  # units in chunks, as iou_pass bounds memory
    chunks = unit_chunks(masks.shape, (seg, seg), limit=n * seg * seg * 4)
    assert [(c.start, c.stop) for c in chunks] == [(0, 4), (4, 6)]
    for units_ in chunks:
        chunked.add(tf.constant(masks[..., units_]), {k: v for k, v in batch.items() if v is not None}, units_)
    np.testing.assert_allclose(chunked.iou(concepts.label_numbers, category_index), iou, rtol=1e-12)
    overlap = IoUCounts.zeros(9, 3, units)  # NetDissect-Lite's rule: images where the mask touches the category
    table = np.full(9, -1)
    table[concepts.label_numbers] = category_index
    overlap.add(tf.constant(masks), {k: v for k, v in batch.items() if v is not None}, label_category=table)
    np.testing.assert_allclose(overlap.iou(concepts.label_numbers, category_index),
                               _reference_iou(masks, batch, concepts, "overlap"), rtol=1e-6)
    assert not np.allclose(overlap.iou(concepts.label_numbers, category_index), iou)
    # the category rule matters: counting image 0's masks for the object concept lowers its IoU
    everything = dict(batch, present=np.ones_like(batch["present"]))
    loose = IoUCounts.zeros(9, 3, units)
    loose.add(tf.constant(masks), {k: v for k, v in everything.items() if v is not None})
    assert np.all(loose.iou(concepts.label_numbers, category_index)[:, 2] <= iou[:, 2] + 1e-12)
    assert np.any(loose.iou(concepts.label_numbers, category_index)[:, 2] < iou[:, 2] - 1e-6)


def test_image_level_label_covers_the_whole_image():
    concepts = _concepts()
    masks = np.zeros((2, 4, 4, 1), np.float32)
    masks[0, :2, :, 0] = 1  # 8 of 16 pixels on image 0 (texture 7), 4 on image 1 (no texture)
    masks[1, :1, :, 0] = 1
    batch = {"pixel_labels": np.zeros((2, 1, 4, 4), np.int32), "image_labels": np.array([[7], [0]], np.int32),
             "present": np.array([[False, False, True], [False, False, False]])}
    counts = IoUCounts.zeros(9, 3, 1)
    counts.add(tf.constant(masks), batch)
    iou = counts.iou(concepts.label_numbers, np.array([0, 0, 1, 2, 2]))
    assert iou[0, 3] == pytest.approx(8 / 16)  # image 1 is not in the texture category: its 4 pixels do not count
    assert iou[0, 4] == 0 and iou[0, 0] == 0


def test_unit_table_and_detector_counts():
    concepts = _concepts()
    iou = np.array([[0.01, 0.05, 0.0, 0.0, 0.0],  # detector: c2 (color)
                    [0.0, 0.0, 0.03, 0.0, 0.0],  # best o5 but 0.03 <= 0.04: no detector
                    [0.0, 0.0, 0.0, 0.2, 0.1],  # detector: t7 (texture)
                    [0.0, 0.0, 0.06, 0.0, 0.0]])  # detector: o5 (object)
    table = unit_table(iou, concepts, "mean", 0.04)
    np.testing.assert_array_equal(table["best"], [1, 2, 3, 2])
    np.testing.assert_array_equal(table["detector"], [True, False, True, True])
    np.testing.assert_allclose(table["score"], iou.mean(1))
    assert detector_counts(table, concepts) == {"color": 1, "object": 1, "texture": 1}
    assert detector_counts(table, concepts, [1, 2]) == {"color": 0, "object": 0, "texture": 1}
    np.testing.assert_allclose(unit_table(iou, concepts, "max", 0.04)["score"], iou.max(1))
