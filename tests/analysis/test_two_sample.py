"""MMD² (unbiased, RBF, median heuristic), its permutation p-value and the classifier two-sample test
against explicit numpy loops and clearly shifted / identical distributions."""

import itertools

import numpy as np
import pytest

from advtf.analysis import two_sample as T


def _k(a, b, sigma):
    return np.exp(-np.sum((a - b) ** 2) / (2 * sigma ** 2))


def _mmd2_loops(x, y, sigma):
    """Gretton et al. 2012, Lemma 6, written pair by pair."""
    m, n = len(x), len(y)
    xx = sum(_k(x[i], x[j], sigma) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(_k(y[i], y[j], sigma) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(_k(x[i], y[j], sigma) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd2_and_bandwidth_match_explicit_loops():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(0.5, 1.2, size=(9, 3))
    pooled = np.concatenate([x, y])
    distances = [np.linalg.norm(a - b) for a, b in itertools.combinations(pooled, 2)]
    sigma = T.median_bandwidth(pooled)
    assert sigma == pytest.approx(np.median(distances), rel=1e-9)
    assert T.mmd2_unbiased(x, y, sigma) == pytest.approx(_mmd2_loops(x, y, sigma), rel=1e-9, abs=1e-12)
    assert T.mmd2_unbiased(x, y, 0.7) == pytest.approx(_mmd2_loops(x, y, 0.7), rel=1e-9, abs=1e-12)
    result = T.mmd_test(x, y, permutations=5)
    assert result["bandwidth"] == pytest.approx(sigma) and result["mmd2"] == pytest.approx(_mmd2_loops(x, y, sigma))
    # Every permuted split of the batched matrix form equals the loops on that split.
    kernel = T.rbf_kernel(pooled, pooled, sigma)
    masks = np.zeros((16, 4))
    for p in range(4):
        masks[rng.permutation(16)[:7], p] = 1
    batched = T._mmd2_from_masks(kernel, masks)
    for p in range(4):
        a = masks[:, p].astype(bool)
        assert batched[p] == pytest.approx(_mmd2_loops(pooled[a], pooled[~a], sigma), rel=1e-9, abs=1e-12)


def test_rescaling_the_features_leaves_mmd2_unchanged():
    """The median heuristic scales with the data, so MMD² is free of the features' global scale."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 4)), rng.normal(0.3, 1, size=(30, 4))
    assert T.mmd_test(x, y, permutations=1)["mmd2"] == pytest.approx(T.mmd_test(7 * x, 7 * y, permutations=1)["mmd2"])


def test_p_value_shifted_and_identical_distributions():
    rng = np.random.default_rng(2)
    shifted = T.mmd_test(rng.normal(size=(80, 5)), rng.normal(1.0, 1, size=(80, 5)), permutations=99, seed=0,
                         return_null=True)
    assert shifted["p_value"] == pytest.approx(1 / 100)  # no permutation reaches a shift of one sd
    assert shifted["p_value"] < 0.05
    same = T.mmd_test(rng.normal(size=(80, 5)), rng.normal(size=(80, 5)), permutations=99, seed=0, return_null=True)
    assert same["p_value"] > 0.05
    for result in (shifted, same):
        null = result["null"]
        assert len(null) == 99 and 0 < result["p_value"] <= 1
        assert result["p_value"] == pytest.approx((1 + np.sum(null >= result["mmd2"])) / (1 + 99))
    # Seeded: the same seed gives the same p-value, whatever the permutation batch size.
    x, y = rng.normal(size=(20, 2)), rng.normal(0.2, 1, size=(20, 2))
    assert T.mmd_test(x, y, permutations=30, seed=5)["p_value"] == T.mmd_test(x, y, permutations=30, seed=5)["p_value"]


def test_identical_samples_give_p_one():
    x = np.random.default_rng(3).normal(size=(20, 3))
    result = T.mmd_test(x, x.copy(), permutations=20)
    assert result["mmd2"] < 0 and result["p_value"] == 1.0


def test_c2st_separates_shifted_samples_and_holds_out_whole_images():
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(40), 10)  # 40 "images" of 10 positions
    x = rng.normal(size=(400, 6))
    far = T.c2st_accuracy(x, rng.normal(2.0, 1, size=(400, 6)), groups_x=groups, groups_y=groups)
    near = T.c2st_accuracy(x, rng.normal(size=(400, 6)), groups_x=groups, groups_y=groups)
    assert far["accuracy"] > 0.95
    assert 0.4 < near["accuracy"] < 0.6
    assert far["n_test"] == 2 * 10 * 20 and far["n_train"] == 2 * 10 * 20  # half of the images, both sides
    # A single image cannot be split into training and held-out parts.
    one = T.c2st_accuracy(x[:10], x[:10] + 1, groups_x=groups[:10], groups_y=groups[:10])
    assert one["accuracy"] is None
