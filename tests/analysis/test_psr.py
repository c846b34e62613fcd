"""Grid sensitivity and PSR (Xu et al. 2019, Definition 1) against closed forms and numpy."""

import keras
import numpy as np
import pytest

from advtf.analysis import psr
from advtf.errors import UserError


def _linear(shape=(8, 8, 2), classes=4, seed=0):
    rng = np.random.default_rng(seed)
    inputs = keras.Input(shape)
    dense = keras.layers.Dense(classes)
    outputs = dense(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    w = rng.normal(size=(int(np.prod(shape)), classes)).astype(np.float32)
    dense.set_weights([w, rng.normal(size=classes).astype(np.float32)])
    return model, w


def test_grids_cover_every_pixel_and_respect_size():
    windows = psr.grid_windows(10, 7, 4, 3)
    masks = psr.grid_masks(10, 7, 4, 3)
    assert windows == [(0, 0), (0, 3), (3, 0), (3, 3), (6, 0), (6, 3)]
    assert masks.sum(axis=0).min() >= 1
    assert np.all(masks.reshape(len(masks), -1).sum(1) == 16)
    # a stride that leaves a remainder gets a last window flush with the border
    assert psr.grid_windows(9, 4, 4, 4) == [(0, 0), (4, 0), (5, 0)]
    non_overlapping = psr.grid_masks(8, 8, 4, 4)
    assert len(non_overlapping) == 4 and np.all(non_overlapping.sum(0) == 1)
    with pytest.raises(UserError):
        psr.grid_masks(8, 8, 9, 1)
    with pytest.raises(UserError):
        psr.grid_masks(8, 8, 2, 0)


def test_sensitivity_on_a_linear_model_equals_its_closed_form(rng):
    model, w = _linear()
    b = 5
    x_adv = rng.uniform(size=(b, 8, 8, 2)).astype(np.float32)
    delta = rng.normal(scale=0.1, size=(b, 8, 8, 2)).astype(np.float32)
    label, target = np.array([0, 1, 2, 3, 0]), np.array([1, 2, 3, 0, 3])
    masks = psr.grid_masks(8, 8, 3, 2)
    xi = 1e-3
    got = psr.grid_sensitivity(model, x_adv, delta, label, target, masks, xi=xi, chunk=7)  # chunk not dividing B*m
    flat = (delta[:, None] * masks[None, ..., None]).reshape(b, len(masks), -1)  # delta_Gi
    change = np.einsum("bmn,nk->bmk", flat, w)                                     # W . delta_Gi
    d0 = np.maximum(-change[np.arange(b), :, label], xi)
    dt = np.maximum(change[np.arange(b), :, target], xi)
    np.testing.assert_allclose(got["d0"], d0, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["dt"], dt, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["s"], d0 + dt, rtol=1e-4, atol=1e-4)
    # r recomputed from the closed-form d0, dt on entries well above the xi floor
    clear = (d0 > 0.05) & (dt > 0.05)
    np.testing.assert_allclose(got["r"][clear], np.log2(dt / d0)[clear], rtol=1e-3)


def test_categories_thresholds():
    r = np.array([[-3.0, -1.0, -0.99, 0.0, 1.0, 1.01]])
    np.testing.assert_array_equal(psr.categories(r), [[0, 1, 1, 1, 1, 2]])


def test_significant_grids_follow_footnote_3():
    s = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 1.0, 1.0, 1.0]])
    # row 0: sorted 1,2,3,4 (total 10), cumulative .1 .3 -> k=2, beta=2 -> keep s > 2
    # row 1: sorted 1,1,1,5 (total 8), cumulative .125 .25 .375 -> beta=1 -> keep only 5
    np.testing.assert_array_equal(psr.significant_grids(s), [[False, False, True, True], [True, False, False, False]])


def test_grid_norms_and_pixel_mask_equal_direct_loops(rng):
    delta = rng.normal(size=(3, 6, 6, 2)).astype(np.float32)
    masks = psr.grid_masks(6, 6, 3, 2)
    norms = psr.grid_norms(delta, masks)
    for bi in range(3):
        for i, m in enumerate(masks):
            part = delta[bi][m > 0]
            assert np.isclose(norms["l2"][bi, i], np.linalg.norm(part), rtol=1e-5)
            assert np.isclose(norms["linf"][bi, i], np.abs(part).max())
    chosen = np.zeros((3, len(masks)), bool)
    chosen[0, 0] = chosen[1, -1] = True
    pix = psr.pixel_mask(chosen, masks)
    assert pix[0].sum() == 9 and pix[0, :3, :3].all() and pix[2].sum() == 0 and pix[1, -3:, -3:].all()


def test_pearson_per_image_matches_numpy(rng):
    a, b = rng.normal(size=(4, 10)), rng.normal(size=(4, 10))
    b[1] = 2 * a[1] + 1
    got = psr.pearson_per_image(a, b)
    want = [np.corrcoef(a[i], b[i])[0, 1] for i in range(4)]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert np.isclose(got[1], 1.0)
    assert np.isnan(psr.pearson_per_image(np.ones((1, 5)), rng.normal(size=(1, 5)))[0])


def test_category_map_takes_the_most_significant_shown_grid():
    masks = psr.grid_masks(4, 4, 2, 2)  # four quadrants
    r = np.array([[-2.0, 0.0, 2.0, 2.0]])
    s = np.array([[3.0, 2.0, 1.0, 5.0]])
    shown = np.array([[True, True, True, False]])
    got = psr.category_map(r, s, shown, masks)[0]
    assert got[0, 0] == 0 and got[0, 3] == 1 and got[3, 0] == 2 and got[3, 3] == -1


def test_s2_skips_pairs_whose_cam_has_no_region(rng):
    """S2 = B(x0, t0) (Appendix 3): a CAM without positive pixels gives an empty S; that pair is not
    refined, and a mostly-zero CAM allows only its positive pixels."""
    from advtf.adversarial import AttackRequest
    from advtf.analysis.cam import discriminative_region
    from advtf.analysis.refine import refine_pairs
    from advtf.attacks import Threat

    model, _ = _linear()
    x = rng.uniform(0.2, 0.8, size=(3, 8, 8, 2)).astype(np.float32)
    y = np.argmax(model(x).numpy(), -1).astype(np.int32)
    maps = np.zeros((3, 8, 8), np.float32)
    maps[1].flat[rng.choice(64, 10, replace=False)] = rng.uniform(0.1, 1.0, 10)  # 84% zeros
    maps[2] = rng.uniform(size=(8, 8))
    mask = discriminative_region(maps, 0.7).astype(np.float32)
    np.testing.assert_array_equal(mask[1], maps[1] > 0)
    # nu lies between sorted values 44 and 45 (0-based; position 0.7 * 63 = 44.1): the 19 above it
    assert mask[0].sum() == 0 and mask[2].sum() == 19
    request = AttackRequest(name="ifgsm", threat=Threat(norm="linf", eps=0.1, steps=3))
    out, refined = refine_pairs(model, x, y, mask, request)
    np.testing.assert_array_equal(refined, [False, True, True])
    np.testing.assert_array_equal(out[0], x[0])
    delta = out - x
    allowed = np.broadcast_to(mask[..., None] > 0, delta.shape)
    assert np.all(delta[~allowed] == 0) and np.abs(delta).max() <= 0.1 + 1e-6
    assert np.mean(np.abs(delta[allowed]) > 0) > 0.9
