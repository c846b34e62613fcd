"""Network dissection maths against direct numpy computations on small hand-made cases."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from advtf.analysis.dissect import (HISTOGRAM_BINS, IoUCounts, UnitQuantile, detector_counts, mask_change,
                                    prepare_images, sensitivity_p_values, unit_chunks, unit_masks, unit_table)
from advtf.data.concepts import ConceptSet
from advtf.errors import UserError


def _stream_quantile(maps, q, batch, budget):
    est = UnitQuantile(maps.shape[-1], maps.shape[0] * maps.shape[1] * maps.shape[2], q, budget=budget)
    passes = 0
    while est.needs_pass():
        passes += 1
        for start in range(0, len(maps), batch):
            est.update(tf.constant(maps[start:start + batch]))
        est.finish_pass()
    return est, passes


def _reference(maps, q):
    values = maps.reshape(-1, maps.shape[-1]).astype(np.float64)
    return np.quantile(values, 1 - q, axis=0)


@pytest.mark.parametrize("q", [0.005, 0.05, 0.3])
def test_streaming_threshold_is_np_quantile_over_all_batches(rng, q):
    maps = np.maximum(rng.normal(size=(23, 5, 6, 7)), 0).astype(np.float32)  # ReLU-like, many zeros
    maps[..., 3] *= 10
    est, passes = _stream_quantile(maps, q, batch=4, budget=1 << 20)  # 6 batches, uneven last one
    assert est.exact and passes == 1
    np.testing.assert_allclose(est.thresholds, _reference(maps, q), rtol=1e-6, atol=1e-7)


def test_histogram_threshold_within_one_fine_bin(rng):
    maps = rng.gamma(2.0, size=(40, 6, 6, 5)).astype(np.float32)
    q = 0.01
    est, passes = _stream_quantile(maps, q, batch=7, budget=10)  # too small for exact: histogram mode
    assert not est.exact and passes == 3
    span = maps.max((0, 1, 2)) - maps.min((0, 1, 2))
    np.testing.assert_array_less(np.abs(est.thresholds - _reference(maps, q)), span / HISTOGRAM_BINS ** 2 + 1e-6)


def test_threshold_of_a_constant_unit(rng):
    maps = np.zeros((5, 3, 3, 2), np.float32)
    maps[..., 1] = rng.random((5, 3, 3))
    for budget in (1 << 20, 1):
        est, _ = _stream_quantile(maps, 0.1, batch=2, budget=budget)
        assert est.thresholds[0] == pytest.approx(0.0, abs=1e-9)
        assert est.thresholds[1] == pytest.approx(_reference(maps, 0.1)[1], abs=1e-5)


def test_quantile_out_of_range_is_a_user_error():
    with pytest.raises(UserError, match="quantile"):
        UnitQuantile(3, 100, 1.5)


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


def test_mask_change_is_the_l2_norm_of_the_flip():
    a = np.zeros((2, 3, 3, 2), np.float32)
    b = a.copy()
    b[0, :2, :2, 0] = 1  # 4 flips
    a[1, 0, :, 1] = 1  # 3 flips
    change = mask_change(tf.constant(a), tf.constant(b)).numpy()
    np.testing.assert_allclose(change, [[2.0, 0.0], [0.0, np.sqrt(3)]])


def test_p_value_one_when_every_unit_is_equally_interpretable(rng):
    rows = sensitivity_p_values(np.full(40, 0.02), rng.random(40), [10, 30, 50], draws=500, seed=1)
    assert [r["p_value"] for r in rows[:2]] == [1.0, 1.0]
    assert rows[2]["skipped"] and rows[2]["p_value"] is None


def test_p_value_smallest_when_the_most_sensitive_are_the_most_interpretable(rng):
    sensitivity = rng.random(30)
    iou = 0.1 * sensitivity  # the N most sensitive are exactly the N best; P(random >= observed) = 1 / C(30, N)
    rows = sensitivity_p_values(iou, sensitivity, [5, 10], draws=2000, seed=0)
    for r in rows:
        assert r["p_value"] == pytest.approx(1 / 2001)
        assert r["observed_iou_sum"] == pytest.approx(np.sort(iou)[::-1][:r["n"]].sum())
    reverse = sensitivity_p_values(-iou + 1, sensitivity, [5], draws=2000, seed=0)
    assert reverse[0]["p_value"] == 1.0  # the most sensitive are the least interpretable


def test_p_value_matches_exact_enumeration_on_a_tiny_layer(rng):
    units, n, draws = 9, 3, 40000
    iou = rng.random(units)
    sensitivity = rng.random(units)
    observed = iou[np.argsort(-sensitivity)[:n]].sum()
    sums = np.array([iou[list(s)].sum() for s in itertools.combinations(range(units), n)])
    exact = float((sums >= observed - 1e-12).mean())
    (row,) = sensitivity_p_values(iou, sensitivity, [n], draws=draws, seed=3)
    expected = (1 + exact * draws) / (1 + draws)
    assert abs(row["p_value"] - expected) < 4 * np.sqrt(exact * (1 - exact) / draws) + 1e-4
    assert row["random_iou_sum_mean"] == pytest.approx(n * iou.mean(), rel=0.01)


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


def test_prepare_images_resizes_and_takes_luminance():
    images = np.zeros((2, 8, 8, 3), np.float32)
    images[..., 0] = 1.0  # pure red
    grey = prepare_images(images, (4, 4, 1)).numpy()
    assert grey.shape == (2, 4, 4, 1)
    np.testing.assert_allclose(grey, 0.299, atol=1e-3)  # ITU-R 601 luminance of red
    assert prepare_images(images, (8, 8, 3)).numpy().shape == (2, 8, 8, 3)
    with pytest.raises(UserError, match="channel"):
        prepare_images(images, (8, 8, 2))


class _Stop(Exception):
    pass


def _interrupting(stage: str, after: int):
    """A progress factory whose bars of ``stage`` raise after ``after`` batches (a job cut short)."""
    calls = {"n": 0}

    class Bar:
        def __init__(self, total, desc, unit):
            self.desc = desc

        def update(self, k):
            if self.desc.startswith(stage):
                calls["n"] += 1
                if calls["n"] > after:
                    raise _Stop

        def close(self):
            pass

    return Bar


def test_interrupted_job_resumes_to_the_same_result(tmp_path):
    from advtf.adversarial import AttackRequest
    from advtf.analysis.dissect import run_dissect_job
    from advtf.attacks import Threat
    from advtf.models import create_model, save_model
    from advtf.runs import RunDir

    model = save_model(create_model("test_cnn", input_shape=(12, 12, 1), num_classes=10, seed=0), tmp_path / "m.keras")
    request = AttackRequest("pgd", Threat(norm="linf", eps=0.1, steps=2, step_size=None, restarts=1))
    kwargs = dict(layers=["m0"], concept_images=16, attack_images=12, ns=(5,), draws=100, batch_size=4,
                  checkpoint_every=1, show_images=2, show_units=2)
    with RunDir(tmp_path / "full") as run:
        full = run_dissect_job(model, "synthetic", request, run, **kwargs)
    for stage in ("IoU", "pgd"):
        out = tmp_path / f"cut-{stage}"
        with pytest.raises(_Stop):
            with RunDir(out, resumable=True) as run:
                run_dissect_job(model, "synthetic", request, run, progress=_interrupting(stage, 2), **kwargs)
        partial = out.with_name(out.name + ".partial")
        assert (partial / "resume" / "dissect_thresholds.npz").exists()
        with pytest.raises(UserError, match="other options"):
            with RunDir(out, resume=True, resumable=True) as run:
                run_dissect_job(model, "synthetic", request, run, **{**kwargs, "batch_size": 8})
        with RunDir(out, resume=True, resumable=True) as run:
            resumed = run_dissect_job(model, "synthetic", request, run, **kwargs)
        assert resumed["layers"]["m0"]["unit_rows"] == full["layers"]["m0"]["unit_rows"]
        assert resumed["attack_success_rate"] == full["attack_success_rate"]
        assert not (out / "resume").exists() and (out / "segmentation_m0.png").exists()
