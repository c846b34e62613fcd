"""Two-sample statistics between natural and adversarial feature vectors (``advtf features``).

* **MMD²** (Gretton et al., JMLR 2012) with a Gaussian RBF kernel
  ``k(x, y) = exp(-||x - y||² / (2 σ²))``; σ is the *median heuristic*: the median Euclidean
  distance between distinct points of the pooled sample. The estimate is the **unbiased**
  MMD²_u (their Lemma 6: within-sample sums leave out ``i = j``), so it can be slightly negative
  when the distributions agree. Because σ scales with the data, MMD² is invariant to a global
  rescaling of the features, but its size still depends on the dimension and the spread, so
  values of different modules are not directly comparable.
* **Permutation p-value**: the labels of the pooled sample are permuted ``permutations`` times
  (seeded); ``p = (1 + #{MMD²_perm >= MMD²_obs}) / (1 + permutations)``, in ``(0, 1]``, with
  ``1 / (1 + permutations)`` the smallest attainable value. The pooled kernel matrix is built
  once; each batch of permutations is one matrix product (no Python loop over pairs).
* **Classifier two-sample test** (C2ST, Lopez-Paz & Oquab, ICLR 2017): a logistic regression on
  standardised features, trained on the vectors of half of the images and scored on the other
  half (the split is by image, so positions of one image never sit on both sides). Held-out
  accuracy 0.5 means indistinguishable, 1.0 fully separable; unlike MMD², it is comparable
  across modules of any width. Being linear, it is a lower bound on how separable the samples
  are.

Vectors drawn at several positions of one image are not independent, so p-values are best read
as "how far out of the permutation distribution", not as exact error rates.
"""

from __future__ import annotations

import numpy as np


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``||a_i - b_j||²`` for all pairs, as one matrix product (clipped at 0 against round-off)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def median_bandwidth(pooled: np.ndarray) -> float:
    """The median heuristic: median distance between distinct points of ``pooled`` (1.0 if all coincide)."""
    d = squared_distances(pooled, pooled)
    upper = d[np.triu_indices(len(pooled), k=1)]
    sigma = float(np.median(np.sqrt(upper))) if len(upper) else 0.0
    return sigma if sigma > 0 else 1.0


def rbf_kernel(a: np.ndarray, b: np.ndarray, bandwidth: float) -> np.ndarray:
    """``exp(-||a_i - b_j||² / (2 σ²))``."""
    return np.exp(-squared_distances(a, b) / (2.0 * bandwidth ** 2))


def _mmd2_from_masks(kernel: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Unbiased MMD² for each column of ``masks`` (1 = first sample, 0 = second) over the pooled ``kernel``."""
    masks = masks.astype(np.float64)
    m = masks.sum(0)
    n = len(kernel) - m
    k_mask = kernel @ masks  # [N, P]: the only O(N² P) step
    row_sums = kernel.sum(1)[:, None]
    diag = np.diag(kernel)[:, None]
    s_xx = (masks * k_mask).sum(0)
    s_xy = ((1.0 - masks) * k_mask).sum(0)
    s_yy = row_sums.sum() - 2.0 * s_xy - s_xx
    t_x = (masks * diag).sum(0)
    t_y = diag.sum() - t_x
    return (s_xx - t_x) / (m * (m - 1)) + (s_yy - t_y) / (n * (n - 1)) - 2.0 * s_xy / (m * n)


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """Unbiased MMD²_u of samples ``x`` [m, d] and ``y`` [n, d] with an RBF kernel of width ``bandwidth``."""
    pooled = np.concatenate([x, y])
    mask = np.zeros((len(pooled), 1))
    mask[: len(x)] = 1
    return float(_mmd2_from_masks(rbf_kernel(pooled, pooled, bandwidth), mask)[0])


def mmd_test(x: np.ndarray, y: np.ndarray, *, permutations: int = 200, bandwidth: float | None = None,
             seed: int = 0, batch: int = 50, return_null: bool = False) -> dict:
    """MMD²_u of ``x`` and ``y`` and its permutation p-value (module docstring).

    Returns:
        ``{"mmd2", "p_value", "bandwidth", "n_x", "n_y", "permutations"}``; ``bandwidth`` is the
        median heuristic on the pooled sample unless given; with ``return_null`` also ``"null"``,
        the permuted statistics.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("MMD needs at least two vectors per sample")
    pooled = np.concatenate([x, y])
    sigma = float(bandwidth) if bandwidth is not None else median_bandwidth(pooled)
    kernel = rbf_kernel(pooled, pooled, sigma)
    observed_mask = np.zeros((len(pooled), 1))
    observed_mask[: len(x)] = 1
    observed = float(_mmd2_from_masks(kernel, observed_mask)[0])
    rng = np.random.default_rng(seed)
    null = []
    for start in range(0, permutations, batch):
        count = min(batch, permutations - start)
        order = rng.permuted(np.tile(np.arange(len(pooled)), (count, 1)), axis=1)
        masks = np.zeros((len(pooled), count))
        masks[order[:, : len(x)].T, np.arange(count)[None, :]] = 1
        null.append(_mmd2_from_masks(kernel, masks))
    null = np.concatenate(null) if null else np.zeros(0)
    # A tolerance against round-off, so a permutation equal to the observed split counts as >=.
    exceed = int((null >= observed - 1e-12).sum())
    out = {"mmd2": observed, "p_value": (1 + exceed) / (1 + permutations), "bandwidth": sigma,
           "n_x": len(x), "n_y": len(y), "permutations": permutations}
    if return_null:
        out["null"] = null
    return out


def c2st_accuracy(x: np.ndarray, y: np.ndarray, *, groups_x: np.ndarray, groups_y: np.ndarray, seed: int = 0,
                  test_fraction: float = 0.5) -> dict:
    """Held-out accuracy of a logistic regression telling ``x`` (label 0) from ``y`` (label 1).

    ``groups_x``/``groups_y`` name the image each vector comes from; whole images are held out
    (a seeded ``test_fraction`` of the distinct groups). Returns ``{"accuracy", "n_train", "n_test"}``;
    ``accuracy`` is None when a side of the split would be empty or hold one class only.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.concatenate([x, y]).astype(np.float64)
    labels = np.concatenate([np.zeros(len(x), int), np.ones(len(y), int)])
    groups = np.concatenate([groups_x, groups_y])
    distinct = np.unique(groups)
    rng = np.random.default_rng(seed)
    held_out = rng.permutation(distinct)[: int(round(test_fraction * len(distinct)))]
    test = np.isin(groups, held_out)
    if len(np.unique(labels[test])) < 2 or len(np.unique(labels[~test])) < 2:
        return {"accuracy": None, "n_train": int((~test).sum()), "n_test": int(test.sum())}
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    classifier.fit(features[~test], labels[~test])
    accuracy = float((classifier.predict(features[test]) == labels[test]).mean())
    return {"accuracy": accuracy, "n_train": int((~test).sum()), "n_test": int(test.sum())}
