"""Grid-level sensitivity of adversarial perturbations and the promotion-suppression ratio
(Xu et al. 2019, Section 3, Definition 1, Eq. 1-4, Table 1, Figures 2, 4; Appendix 3).

An image is covered by grids ``G_i`` (a ``grid x grid`` window slid with ``stride``; a last
window flush with the border covers the remaining pixels). For a natural image ``x0`` with
label ``t0``, its adversarial example ``x' = x0 + delta`` and the target ``t`` (the attack's
target, or the adversarial prediction of an untargeted attack), removing the perturbation of
one grid gives

* ``d0_i = max(Z(x' - delta_Gi)_t0 - Z(x')_t0, xi)`` — how much ``delta_Gi`` suppresses ``t0``;
* ``dt_i = max(Z(x')_t - Z(x' - delta_Gi)_t, xi)`` — how much it promotes ``t``;
* ``s_i = d0_i + dt_i`` and ``r_i = log2(dt_i / d0_i)``: suppression-dominated if ``r < -1``,
  promotion-dominated if ``r > 1``, balanced otherwise.

All grid removals of a batch run as batched forward passes. Table 1 correlates ``d0``, ``dt``
and ``s`` with ``||delta_Gi||_2`` over the grids of each image (Pearson), averaged over images.
The significant grids ``S1 = {i : s_i > beta}`` drop the least significant 30% of cumulative
``s`` (the paper's footnote 3).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advtf.errors import UserError

CATEGORIES = ("suppression", "balanced", "promotion")
DEFAULT_XI = 1e-4
DEFAULT_DROP = 0.3


def grid_windows(height: int, width: int, grid: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of the ``grid x grid`` windows covering an image (row-major order)."""
    if grid < 1 or stride < 1:
        raise UserError(f"--grid and --stride must be positive (got {grid}, {stride})")
    if grid > min(height, width):
        raise UserError(f"--grid {grid} is larger than the {height}x{width} image; use at most {min(height, width)}")

    def starts(size):
        out = list(range(0, size - grid + 1, stride))
        if out[-1] + grid < size:
            out.append(size - grid)
        return out

    return [(r, c) for r in starts(height) for c in starts(width)]


def grid_masks(height: int, width: int, grid: int, stride: int) -> np.ndarray:
    """``[m, H, W]`` float32 indicator masks of the grids (see :func:`grid_windows`)."""
    windows = grid_windows(height, width, grid, stride)
    masks = np.zeros((len(windows), height, width), np.float32)
    for i, (r, c) in enumerate(windows):
        masks[i, r:r + grid, c:c + grid] = 1.0
    return masks


def grid_norms(delta: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
    """``||delta_Gi||_2`` and ``||delta_Gi||_inf`` per example and grid, ``[B, m]`` each."""
    sq = np.sum(np.square(delta), axis=-1)  # [B, H, W]
    l2 = np.sqrt(np.einsum("bhw,mhw->bm", sq, masks))
    peak = np.max(np.abs(delta), axis=-1)
    linf = np.max(peak[:, None] * masks[None], axis=(2, 3))
    return {"l2": l2, "linf": linf}


@tf.function(reduce_retracing=True)
def _removed_logits(model, x_adv, delta, masks, chunk):
    """Logits of every ``x' - delta_Gi``, ``[B, m, K]``, ``chunk`` removals per forward pass.

    Removals are built inside each chunk, so memory grows with ``chunk``, not with ``B * m``.
    """
    b, m = tf.shape(x_adv)[0], tf.shape(masks)[0]
    total = b * m
    padded = (total + chunk - 1) // chunk * chunk
    index = tf.minimum(tf.range(padded), total - 1)

    def forward(ids):
        image, grid = ids // m, ids % m
        removed = tf.gather(x_adv, image) - tf.gather(delta, image) * tf.gather(masks, grid)[..., None]
        return model(removed, training=False)

    logits = tf.map_fn(forward, tf.reshape(index, [-1, chunk]), fn_output_signature=tf.float32)
    logits = tf.reshape(logits, [padded, -1])[:total]
    return tf.reshape(logits, [b, m, -1])


def grid_sensitivity(model, x_adv, delta, label, target, masks, *, xi: float = DEFAULT_XI,
                     chunk: int = 256) -> dict[str, np.ndarray]:
    """``d0``, ``dt``, ``s``, ``r`` of Definition 1 and Eq. 4 per example and grid, ``[B, m]`` each."""
    x_adv = np.asarray(x_adv, np.float32)
    label, target = np.asarray(label, np.int64), np.asarray(target, np.int64)
    b = len(x_adv)
    logits = _removed_logits(model, tf.constant(x_adv), tf.constant(np.asarray(delta, np.float32)),
                             tf.constant(np.asarray(masks, np.float32)), tf.constant(int(chunk))).numpy()
    base = model(tf.constant(x_adv), training=False).numpy()
    rows = np.arange(b)
    d0 = np.maximum(logits[rows, :, label] - base[rows, label][:, None], xi)
    dt = np.maximum(base[rows, target][:, None] - logits[rows, :, target], xi)
    return {"d0": d0, "dt": dt, "s": d0 + dt, "r": np.log2(dt / d0)}


def categories(r: np.ndarray) -> np.ndarray:
    """0 = suppression-dominated (r < -1), 1 = balanced, 2 = promotion-dominated (r > 1)."""
    return np.where(r < -1, 0, np.where(r > 1, 2, 1)).astype(np.int8)


def significant_grids(s: np.ndarray, drop: float = DEFAULT_DROP) -> np.ndarray:
    """``S1 = {i : s_i > beta}`` per example, ``[B, m]`` bool (footnote 3 of Appendix 3).

    ``beta`` is the ``k``-th smallest ``s`` for the smallest ``k`` whose cumulative share of the
    total reaches ``drop``.
    """
    s = np.asarray(s, np.float64)
    order = np.sort(s, axis=1)
    share = np.cumsum(order, axis=1) / np.sum(order, axis=1, keepdims=True)
    k = np.argmax(share >= drop - 1e-12, axis=1)
    beta = order[np.arange(len(s)), k]
    return s > beta[:, None]


def pixel_mask(grids: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The pixels covered by the selected grids, ``[B, H, W]`` float32 in {0, 1}."""
    return (np.einsum("bm,mhw->bhw", grids.astype(np.float32), masks) > 0).astype(np.float32)


def pearson_per_image(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation over the grids of each image, ``[B]`` (NaN where either side is constant)."""
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt(np.sum(a * a, 1) * np.sum(b * b, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.sum(a * b, 1) / np.where(den > 0, den, 1.0), np.nan)


def category_map(r: np.ndarray, s: np.ndarray, shown: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per pixel, the PSR category of the most significant shown grid covering it (-1: none), ``[B, H, W]``.

    For Figure 4: only the grids in ``shown`` (e.g. S1, the top 70% of ``s``) are drawn.
    """
    cat = categories(r).astype(np.int16)
    score = np.where(shown, s, -np.inf)                                   # [B, m]
    cover = np.where(masks[None] > 0, score[:, :, None, None], -np.inf)   # [B, m, H, W]
    best = np.argmax(cover, axis=1)                                       # [B, H, W]
    has = np.isfinite(np.max(cover, axis=1))
    picked = cat[np.arange(len(cat))[:, None, None], best]
    return np.where(has, picked, -1)
