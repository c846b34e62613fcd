"""CAM, Grad-CAM and the interpretability score (Xu et al. 2019, Eq. 5-6) against numpy, and refined attacks."""

import keras
import numpy as np
import pytest
from tiny import fitted_test_cnn

from advtf.analysis import cam
from advtf.errors import UserError


@pytest.fixture(scope="module")
def fitted():
    return fitted_test_cnn(test_subset=16, epochs=1)


def test_interpretability_score_equals_a_direct_computation(rng):
    maps = rng.uniform(size=(4, 6, 5)).astype(np.float32)
    delta = rng.normal(size=(4, 6, 5, 3)).astype(np.float32)
    got = cam.interpretability_score(maps, delta, 0.7)
    for i in range(4):
        nu = np.quantile(maps[i].ravel(), 0.7)
        inside = sum(np.sum(delta[i, r, c] ** 2) for r in range(6) for c in range(5) if maps[i, r, c] >= nu)
        assert got[i] == pytest.approx(np.sqrt(inside) / np.linalg.norm(delta[i]), rel=1e-5)
    # all of delta inside the top region: 1; all outside: 0; no perturbation: undefined
    region = cam.discriminative_region(maps, 0.7)[..., None]
    assert np.allclose(cam.interpretability_score(maps, delta * region, 0.7), 1.0)
    assert np.allclose(cam.interpretability_score(maps, delta * ~region, 0.7), 0.0)
    assert np.isnan(cam.interpretability_score(maps[:1], np.zeros_like(delta[:1]), 0.7)[0])
    # a constant (e.g. all-zero) map has no discriminative region
    assert np.isnan(cam.interpretability_score(np.zeros_like(maps[:1]), delta[:1], 0.7)[0])


def test_region_keeps_the_top_share_of_pixels(rng):
    maps = rng.uniform(size=(2, 10, 10))
    region = cam.discriminative_region(maps, 0.7)
    assert np.all(region.reshape(2, -1).sum(1) == 30)


def _hand_is(delta, region):
    """IS of Eq. 6 for one example from an explicit pixel set (a list of (row, col))."""
    inside = sum(float(np.sum(delta[r, c] ** 2)) for r, c in region)
    return np.sqrt(inside) / np.sqrt(float(np.sum(delta ** 2)))


def test_mostly_zero_map_keeps_only_its_positive_pixels(rng):
    # 80% zeros: the 70% quantile is 0, and F >= 0 would take every pixel (IS = 1).
    maps = np.zeros((1, 10, 10))
    positive = [(r, c) for r in range(10) for c in range(10) if (r * 10 + c) % 5 == 0]  # 20 pixels
    for r, c in positive:
        maps[0, r, c] = rng.uniform(0.1, 1.0)
    delta = rng.normal(size=(1, 10, 10, 3))
    region = cam.discriminative_region(maps, 0.7)
    assert sorted(zip(*np.nonzero(region[0]))) == positive
    assert cam.interpretability_score(maps, delta, 0.7)[0] == pytest.approx(_hand_is(delta[0], positive), rel=1e-9)
    assert cam.interpretability_score(maps, delta, 0.7)[0] < 0.7


def test_one_hot_map_region_is_its_single_pixel(rng):
    maps = np.zeros((1, 6, 7))
    maps[0, 4, 2] = 0.3
    delta = rng.normal(size=(1, 6, 7, 2))
    np.testing.assert_array_equal(np.argwhere(cam.discriminative_region(maps, 0.7)[0]), [[4, 2]])
    want = np.linalg.norm(delta[0, 4, 2]) / np.linalg.norm(delta[0])
    assert cam.interpretability_score(maps, delta, 0.7)[0] == pytest.approx(want, rel=1e-9)


def test_pixels_tied_at_a_positive_quantile_are_all_in_the_region(rng):
    # 30 pixels at 0.1, 50 at 0.5, 20 at 1.0: nu = 0.5 > 0, so B holds the 70 pixels >= 0.5, not 30.
    values = np.array([0.1] * 30 + [0.5] * 50 + [1.0] * 20)
    maps = rng.permutation(values).reshape(1, 10, 10)
    region = cam.discriminative_region(maps, 0.7)
    assert region.sum() == 70 and np.all(maps[region] >= 0.5) and np.all(maps[~region] == 0.1)
    delta = rng.normal(size=(1, 10, 10, 1))
    chosen = [(r, c) for r in range(10) for c in range(10) if maps[0, r, c] >= 0.5]
    assert cam.interpretability_score(maps, delta, 0.7)[0] == pytest.approx(_hand_is(delta[0], chosen), rel=1e-9)


def test_map_without_positive_pixels_has_an_empty_region_and_undefined_score(rng):
    maps = np.stack([np.zeros((5, 5)), np.full((5, 5), 0.4), rng.uniform(size=(5, 5))])
    region = cam.discriminative_region(maps, 0.7)
    assert not region[0].any() and not region[1].any() and region[2].any()
    scores = cam.interpretability_score(maps, rng.normal(size=(3, 5, 5, 2)), 0.7)
    assert np.isnan(scores[0]) and np.isnan(scores[1]) and np.isfinite(scores[2])


def _bilinear_half_pixel(maps, size):
    """Bilinear resize of ``[B, h, w]`` maps in numpy, tf.image.resize's convention (half-pixel centres):
    output pixel ``i`` samples the input at ``(i + 0.5) * in / out - 0.5``, clamped to the border."""

    def weights(n_in, n_out):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        w = np.zeros((n_out, n_in))
        np.add.at(w, (np.arange(n_out), lo), 1 - (src - lo))
        np.add.at(w, (np.arange(n_out), hi), src - lo)
        return w

    rows, cols = weights(maps.shape[1], size[0]), weights(maps.shape[2], size[1])
    return np.einsum("Hh,bhw,Ww->bHW", rows, maps, cols)


def test_numpy_bilinear_reference_on_a_hand_case():
    # 2 -> 4: samples at -0.25, 0.25, 0.75, 1.25, clamped to 0, 0.25, 0.75, 1
    got = _bilinear_half_pixel(np.array([[[0.0, 1.0], [2.0, 3.0]]]), (4, 4))[0]
    np.testing.assert_allclose(got[0], [0, 0.25, 0.75, 1])
    np.testing.assert_allclose(got[:, 0], [0, 0.5, 1.5, 2])


def test_cam_equals_numpy_and_gradcam_up_to_scale(fitted):
    model, (x, y) = fitted
    x, y = x[:6], y[:6]
    maker = cam.MapMaker(model, "cam")
    got = maker(x, y)
    # independent CAM: the map the GAP reads, weighted by the Dense head's column of the class
    features = keras.Model(model.inputs, model.get_layer(maker.layer).output)(x).numpy()
    kernel = model.get_layer("logits").get_weights()[0]
    small = np.maximum(np.einsum("bhwc,cb->bhw", features, kernel[:, y]), 0)
    assert small.shape[1:] != x.shape[1:3]  # the upsampling is exercised
    want = _bilinear_half_pixel(small.astype(np.float64), x.shape[1:3])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    grad = cam.MapMaker(model, "gradcam")(x, y)
    positions = features.shape[1] * features.shape[2]
    np.testing.assert_allclose(grad * positions, got, rtol=1e-3, atol=1e-4)
    for method in ("gradcam++", "scorecam"):
        maps = cam.MapMaker(model, method)(x[:2], y[:2])
        assert maps.shape == (2, *x.shape[1:3]) and np.all(np.isfinite(maps)) and np.all(maps >= 0)


def test_shared_normalisation_divides_by_the_joint_maximum(rng):
    maps = {"a": rng.uniform(size=(3, 4, 4)), "b": 3 * rng.uniform(size=(3, 4, 4))}
    out = cam.shared_normalisation(maps)
    joint = np.maximum(maps["a"].reshape(3, -1).max(1), maps["b"].reshape(3, -1).max(1))
    np.testing.assert_allclose(out["a"], maps["a"] / joint[:, None, None])
    assert np.allclose(np.maximum(out["a"].reshape(3, -1).max(1), out["b"].reshape(3, -1).max(1)), 1.0)


def test_bad_layers_are_user_errors(fitted):
    model, _ = fitted
    with pytest.raises(UserError, match="no layer or endpoint"):
        cam.MapMaker(model, "gradcam", "nope")
    with pytest.raises(UserError, match="not convolutional"):
        cam.MapMaker(model, "gradcam", "logits")
    with pytest.raises(UserError, match="needs the map"):
        cam.MapMaker(model, "cam", "m1")
    assert cam.MapMaker(model, "gradcam", "m1").layer == "ep_m1"  # endpoints are accepted by name


def test_refined_attack_stays_inside_its_mask_and_ball(fitted):
    from advtf.adversarial import AttackRequest
    from advtf.analysis.refine import refined_attack
    from advtf.attacks import Threat, get_attack

    model, (x, y) = fitted
    x, y = x[:8], y[:8].astype(np.int32)
    threat = Threat(norm="linf", eps=0.1, steps=5, step_size=0.03)
    request = AttackRequest(name="ifgsm", threat=threat)
    mask = np.zeros(x.shape[:3], np.float32)
    mask[:, 4:12, 4:12] = 1
    refined = refined_attack(model, x, y, mask, request)
    delta = refined - x
    assert np.all(delta[mask == 0] == 0)
    assert np.abs(delta).max() <= 0.1 + 1e-6 and refined.min() >= 0 and refined.max() <= 1
    assert np.abs(delta[mask == 1]).max() > 0.05
    # an all-ones mask gives the unrefined attack
    full = refined_attack(model, x, y, np.ones_like(mask), request)
    plain = get_attack("ifgsm")(model, x, y, threat, seed=np.array([0, 7])).numpy()
    np.testing.assert_allclose(full, plain, atol=1e-6)


def test_cam_statistics_aggregate_batches_like_a_direct_computation(rng, monkeypatch):
    """Per-model means, undefined counts and per-pair rows over two batches, against numpy by hand:
    a fake map maker (maps drawn per call) and hand-made pairs stand in for the model and the attack."""
    from types import SimpleNamespace

    from advtf.analysis import interpret

    h, w = 6, 5
    batches = []
    for n, correct, images in ((3, 4, 5), (2, 3, 4)):
        natural = rng.uniform(size=(n, h, w, 1))
        batches.append(({"natural": natural, "image": natural + rng.normal(scale=0.1, size=(n, h, w, 1)),
                         "label": rng.integers(0, 10, n), "target": rng.integers(0, 10, n)},
                        {"images": images, "correct": correct, "successful": n}))
    for kept, _ in batches:
        kept["delta"] = kept["image"] - kept["natural"]
    batches.insert(1, ({k: v[:0] for k, v in batches[0][0].items()}, {"images": 2, "correct": 0, "successful": 0}))
    monkeypatch.setattr(interpret, "analysed_pairs", lambda *a, **k: iter(batches))
    maps_drawn = []

    def maker(x, classes):
        maps = rng.uniform(-0.5, 1.0, size=(len(x), h, w))
        if len(maps_drawn) == 4:  # the second batch's F(x0, t0): pair 0 all zero -> no region, IS undefined
            maps[0] = 0.0
        maps_drawn.append(maps)
        return maps

    found = interpret.cam_statistics(None, maker, None, SimpleNamespace(targeted=True), quantile=0.7, examples=2)
    stats = found["stats"]
    assert (stats["images"], stats["correct"], stats["pairs"]) == (11, 7, 5)
    assert stats["success_rate"] == pytest.approx(5 / 7) and stats["clean_accuracy"] == pytest.approx(7 / 11)

    def hand_is(m, d):  # Eq. 5-6 with nu the 70% quantile (np.percentile), positive pixels when nu <= 0
        nu = np.percentile(m, 70)
        region = m >= nu if nu > 0 else m > 0
        if not region.any() or m.max() == m.min():
            return np.nan
        return np.sqrt(np.sum(d[region] ** 2)) / np.sqrt(np.sum(d ** 2))

    keys = ["x0_t0", "xadv_t0", "x0_t", "xadv_t"]  # four_maps' call order
    want = {k: [] for k in keys}
    mean_maps = {k: [] for k in keys}
    for b, (kept, _) in zip((0, 1), (batches[0], batches[2])):
        calls = maps_drawn[4 * b:4 * b + 4]
        peak = np.max([c.reshape(len(c), -1).max(1) for c in calls], axis=0)
        for k, m in zip(keys, calls):
            want[k] += [hand_is(m[i], kept["delta"][i, ..., 0]) for i in range(len(m))]
            mean_maps[k] += [float((m[i] / peak[i]).mean()) for i in range(len(m))]
    for k in keys:
        assert stats[f"is_{k}"] == pytest.approx(np.nanmean(want[k]), rel=1e-9)
        assert stats[f"undefined_{k}"] == int(np.isnan(want[k]).sum())
        assert stats[f"map_{k}"] == pytest.approx(np.mean(mean_maps[k]), rel=1e-9)
    assert stats["undefined_x0_t0"] == 1
    assert [p["pair"] for p in found["pairs"]] == [0, 1, 2, 3, 4]
    assert [p["target"] for p in found["pairs"]] == [*batches[0][0]["target"], *batches[2][0]["target"]]
    assert np.isnan(found["pairs"][3]["is_x0_t0"])
    assert len(found["figure"]["label"]) == 2 and np.array_equal(found["figure"]["natural"], batches[0][0]["natural"][:2])
