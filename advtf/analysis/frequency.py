"""Frequency-domain properties of adversarial examples (the local-properties paper, Sec. 3.1, Figures 1, 2, 6).

Filters follow Wang et al. (2020a), whose code the paper builds on: per image and channel, the
2-D DFT is centred (``fftshift``, zero frequency at ``(H//2, W//2)``) and a circular mask keeps
the frequencies at distance ``< r`` from the centre. ``low_pass(x, r)`` keeps them,
``high_pass(x, r) = x - low_pass(x, r)`` keeps the rest, so

* ``low_pass(x, 0) = 0`` and ``high_pass(x, 0) = x``;
* ``low_pass(x, r) = x`` and ``high_pass(x, r) = 0`` once ``r > max_radius(H, W)`` (the corner);
* ``‖low‖² + ‖high‖² = ‖x‖²`` (the masks are complementary, Hermitian-symmetric projections).

Figure 1a-b sweeps the low-pass radius ("filtering scale": more high frequencies added as it
grows), Figure 6 the high-pass radius (fewer low frequencies as it grows). The frequency swap
(Figure 1c-d) at threshold ``r`` is ``low_pass(a, r) + high_pass(b, r)``: "natural + adversarial
high" is ``a = natural, b = adversarial`` (the adversarial image at ``r = 0``, the natural one
at the largest ``r``). Filtered images are not clipped to [0, 1] (as in Wang et al.).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advtf.analysis.pairs import adversarial_pairs
from advtf.errors import UserError

# The six accuracy curves, in the order frequency_correct() counts them.
CURVES = ("low_natural", "low_adversarial", "high_natural", "high_adversarial",
          "natural_low_adversarial_high", "adversarial_low_natural_high")
LOG_EPS = 1e-6  # added to amplitudes before the log (a zero amplitude would give -inf)


def radial_distance(height: int, width: int) -> np.ndarray:
    """Distance of each frequency of a centred (``fftshift``-ed) ``height × width`` spectrum from its centre."""
    i = np.arange(height)[:, None] - height // 2
    j = np.arange(width)[None, :] - width // 2
    return np.sqrt(i * i + j * j)


def max_radius(height: int, width: int) -> float:
    """The largest distance from the centre; a low-pass of radius above it keeps everything."""
    return float(radial_distance(height, width).max())


def default_radii(height: int, width: int) -> list[float]:
    """Every integer radius from 0 to just past the corner (0..20 for 28×28, 0..23 for 32×32)."""
    return [float(r) for r in range(int(np.floor(max_radius(height, width))) + 2)]


def low_pass_masks(height: int, width: int, radii) -> np.ndarray:
    """``[R, H, W]`` float32 masks (1 where ``distance < r``), in unshifted FFT order."""
    radii = np.asarray(list(radii), np.float64)
    if radii.ndim != 1 or len(radii) == 0 or np.any(radii < 0) or not np.all(np.isfinite(radii)):
        raise UserError(f"filter radii must be a non-empty list of numbers >= 0 (got {radii.tolist()})")
    centred = radial_distance(height, width)[None] < radii[:, None, None]
    return np.fft.ifftshift(centred, axes=(1, 2)).astype(np.float32)


def _spectrum(x: tf.Tensor) -> tf.Tensor:
    """``[B, C, H, W]`` complex DFT of ``[B, H, W, C]`` images (per channel)."""
    return tf.signal.fft2d(tf.cast(tf.transpose(x, [0, 3, 1, 2]), tf.complex64))


def _apply(spectrum: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Real ``[B, H, W, C]`` image of a masked ``[B, C, H, W]`` spectrum."""
    filtered = tf.math.real(tf.signal.ifft2d(spectrum * tf.cast(mask, tf.complex64)))
    return tf.transpose(filtered, [0, 2, 3, 1])


def low_pass(x, radius: float) -> tf.Tensor:
    """Keeps the frequencies at distance ``< radius`` from the centre of each channel's spectrum."""
    x = tf.convert_to_tensor(x, tf.float32)
    mask = low_pass_masks(int(x.shape[1]), int(x.shape[2]), [radius])[0]
    return _apply(_spectrum(x), mask)


def high_pass(x, radius: float) -> tf.Tensor:
    """``x - low_pass(x, radius)``: the frequencies at distance ``>= radius``."""
    x = tf.convert_to_tensor(x, tf.float32)
    return x - low_pass(x, radius)


def swap(low_source, high_source, radius: float) -> tf.Tensor:
    """The low frequencies (``< radius``) of ``low_source`` plus the high ones of ``high_source``."""
    high_source = tf.convert_to_tensor(high_source, tf.float32)
    return low_pass(low_source, radius) + high_pass(high_source, radius)


@tf.function(reduce_retracing=True)
def _correct_per_radius(model, x, x_adv, y, masks):
    spec_nat, spec_adv = _spectrum(x), _spectrum(x_adv)

    def one(mask):
        low_nat, low_adv = _apply(spec_nat, mask), _apply(spec_adv, mask)
        variants = [low_nat, low_adv, x - low_nat, x_adv - low_adv,
                    low_nat + (x_adv - low_adv), low_adv + (x - low_nat)]
        logits = model(tf.concat(variants, 0), training=False)
        hits = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.tile(y, [len(variants)]))
        return tf.reduce_sum(tf.reshape(tf.cast(hits, tf.int32), [len(variants), -1]), axis=1)

    return tf.map_fn(one, masks, fn_output_signature=tf.TensorSpec([len(CURVES)], tf.int32))


def frequency_correct(model, x, x_adv, y, masks) -> np.ndarray:
    """Correctly classified counts ``[R, 6]`` of one batch, per radius and curve (:data:`CURVES`).

    One ``tf.function`` per batch: both spectra are computed once, radii run in a ``tf.map_fn``
    and the six filtered versions of the batch go through the model in one call per radius.
    """
    return _correct_per_radius(model, tf.convert_to_tensor(x, tf.float32), tf.convert_to_tensor(x_adv, tf.float32),
                               tf.cast(y, tf.int32), tf.convert_to_tensor(masks, tf.float32)).numpy()


@tf.function(reduce_retracing=True)
def _log_amplitude_sum(x):
    amplitude = tf.abs(tf.signal.fftshift(_spectrum(x), axes=(2, 3)))
    return tf.reduce_sum(tf.reduce_mean(tf.math.log(amplitude + LOG_EPS), axis=1), axis=0)


def log_amplitude_sum(x) -> np.ndarray:
    """Sum over the batch of the channel-averaged ``log(|centred DFT| + 1e-6)``, ``[H, W]``.

    Divided by the number of images, it is Figure 2's average log-amplitude spectrum (the mean
    of the per-image logs; the difference of two such means is the mean of ``log(|adv|/|nat|)``).
    """
    return _log_amplitude_sum(tf.convert_to_tensor(x, tf.float32)).numpy()


def high_frequency_share(log_spectrum: np.ndarray, radius: float) -> float:
    """Mean of a centred ``[H, W]`` map over the frequencies at distance ``>= radius``."""
    far = radial_distance(*log_spectrum.shape) >= radius
    return float(log_spectrum[far].mean()) if far.any() else float("nan")


def measure_model(model, splits, request, masks, *, batch_size, seed, progress=None, desc="",
                  natural: bool = True, pairs=adversarial_pairs) -> dict:
    """Attacks the test split with ``request``; accumulates the filter counts and log spectra of one model.

    Returns ``counts`` ``[R, 6]`` (correct per radius and curve), the summed ``adversarial_log``
    and (with ``natural``) ``natural_log`` spectra, and the counts ``clean``, ``after`` and ``n``.
    ``pairs``: where the attacked batches come from (a job's stored passes, or attacked here).
    """
    height, width = masks.shape[1:]
    out = {"counts": np.zeros((len(masks), len(CURVES)), np.int64), "adversarial_log": np.zeros((height, width)),
           "natural_log": np.zeros((height, width)), "clean": 0, "after": 0, "n": 0}
    for rows in pairs(model, splits, request, batch_size=batch_size, seed=seed, progress=progress, desc=desc):
        out["counts"] += frequency_correct(model, rows["natural"], rows["image"], rows["label"], masks)
        out["adversarial_log"] += log_amplitude_sum(rows["image"])
        if natural:
            out["natural_log"] += log_amplitude_sum(rows["natural"])
        out["clean"] += int(rows["clean_correct"].sum())
        out["after"] += int(rows["adversarial_correct"].sum())
        out["n"] += len(rows["label"])
    if out["n"] == 0:
        raise UserError("the test split is empty; nothing to analyse")
    return out


def model_entry(path, measured: dict, natural_log: np.ndarray, radii, high_radius: float) -> dict:
    """One model's accuracies per curve and radius and its spectrum summary, from :func:`measure_model`.

    ``log_ratio_high`` / ``log_ratio_low``: mean of ``log|adv| - log|nat|`` at distance ``>=`` /
    ``<`` ``high_radius``; ``adversarial_spectrum`` is the mean ``[H, W]`` log spectrum.
    """
    n = measured["n"]
    acc = measured["counts"] / n
    adv_log = measured["adversarial_log"] / n
    diff = adv_log - natural_log
    far = radial_distance(*natural_log.shape) >= high_radius
    best = int(np.argmax(acc[:, 1]))
    return {"model": str(path), "n": n, "clean_accuracy": measured["clean"] / n,
            "adversarial_accuracy": measured["after"] / n,
            "curves": {c: acc[:, k].tolist() for k, c in enumerate(CURVES)},
            "best_low_adversarial": {"radius": radii[best], "accuracy": float(acc[best, 1])},
            "log_ratio_high": float(diff[far].mean()), "log_ratio_low": float(diff[~far].mean()),
            "adversarial_spectrum": adv_log}
