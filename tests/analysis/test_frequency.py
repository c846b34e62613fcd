"""Fourier filters, the frequency swap and the log spectrum against numpy on small arrays."""

import keras
import numpy as np
import pytest

from advtf.analysis import frequency as F
from advtf.errors import UserError


def numpy_low_pass(x, r):
    """Wang et al.'s reference: fftshift(fft2) per channel, circular mask dist < r, real(ifft2)."""
    h, w = x.shape[1:3]
    i, j = np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2, indexing="ij")
    mask = (np.sqrt(i ** 2 + j ** 2) < r).astype(float)
    spec = np.fft.fftshift(np.fft.fft2(x, axes=(1, 2)), axes=(1, 2))
    return np.real(np.fft.ifft2(np.fft.ifftshift(spec * mask[None, :, :, None], axes=(1, 2)), axes=(1, 2)))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return {"even": rng.random((3, 8, 8, 2)).astype(np.float32), "odd": rng.random((2, 7, 9, 1)).astype(np.float32)}


@pytest.mark.parametrize("shape", ["even", "odd"])
@pytest.mark.parametrize("radius", [0.0, 1.0, 2.5, 4.0, 100.0])
def test_filters_match_numpy_and_keep_energy(images, shape, radius):
    x = images[shape]
    low = F.low_pass(x, radius).numpy()
    high = F.high_pass(x, radius).numpy()
    np.testing.assert_allclose(low, numpy_low_pass(x.astype(np.float64), radius), atol=1e-5)
    np.testing.assert_allclose(low + high, x, atol=1e-5)
    # Complementary orthogonal projections: the energies add up (Parseval).
    np.testing.assert_allclose((low ** 2).sum(axis=(1, 2)) + (high ** 2).sum(axis=(1, 2)), (x ** 2).sum(axis=(1, 2)),
                               rtol=1e-4)


def test_filter_extremes(images):
    x = images["even"]
    top = F.max_radius(8, 8) + 1e-3
    np.testing.assert_allclose(F.low_pass(x, 0).numpy(), 0, atol=1e-6)       # radius-0 low-pass keeps nothing
    np.testing.assert_allclose(F.high_pass(x, 0).numpy(), x, atol=1e-5)      # ... so the high-pass keeps all
    np.testing.assert_allclose(F.low_pass(x, top).numpy(), x, atol=1e-5)     # a full low-pass keeps everything
    np.testing.assert_allclose(F.high_pass(x, top).numpy(), 0, atol=1e-5)    # ... and the high-pass nothing
    # Radius 1 keeps only the DC term: the per-channel mean.
    np.testing.assert_allclose(F.low_pass(x, 1).numpy(), np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape),
                               atol=1e-5)
    assert F.default_radii(8, 8)[-1] > F.max_radius(8, 8)
    with pytest.raises(UserError, match="radii"):
        F.low_pass_masks(8, 8, [-1])


def test_swap_reconstructs_the_originals_at_the_extremes(images):
    a, b = images["even"], images["even"][::-1].copy()
    np.testing.assert_allclose(F.swap(a, b, 0).numpy(), b, atol=1e-5)
    np.testing.assert_allclose(F.swap(a, b, F.max_radius(8, 8) + 1).numpy(), a, atol=1e-5)
    mid = F.swap(a, b, 2.0).numpy()
    np.testing.assert_allclose(mid, numpy_low_pass(a, 2.0) + b - numpy_low_pass(b, 2.0), atol=1e-5)


def test_log_amplitude_is_the_mean_log_spectrum(images):
    x = images["even"]
    ref = np.log(np.abs(np.fft.fftshift(np.fft.fft2(x.astype(np.float64), axes=(1, 2)), axes=(1, 2))) + F.LOG_EPS)
    np.testing.assert_allclose(F.log_amplitude_sum(x), ref.mean(axis=3).sum(axis=0), rtol=1e-4, atol=1e-3)


def test_frequency_correct_counts_every_curve_like_a_python_loop(images):
    """The batched tf.function (all radii, six variants) against one model call per variant in numpy."""
    x = images["even"]
    x_adv = np.clip(x + np.random.default_rng(1).normal(0, 0.2, x.shape), 0, 1).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Flatten(), keras.layers.Dense(3)])
    y = np.argmax(model(x).numpy(), -1).astype(np.int32)
    y[0] = (y[0] + 1) % 3
    radii = [0.0, 1.0, 3.0, 9.0]
    counts = F.frequency_correct(model, x, x_adv, y, F.low_pass_masks(8, 8, radii))
    assert counts.shape == (4, len(F.CURVES))

    def hits(images_):
        return int((np.argmax(model(images_.astype(np.float32)).numpy(), -1) == y).sum())

    for k, r in enumerate(radii):
        ln, la = numpy_low_pass(x, r), numpy_low_pass(x_adv, r)
        expected = [hits(ln), hits(la), hits(x - ln), hits(x_adv - la), hits(ln + x_adv - la), hits(la + x - ln)]
        assert counts[k].tolist() == expected, (r, counts[k], expected)
    # At radius 0 "natural + adversarial high" is the adversarial image; past the corner it is the natural one.
    assert counts[0, 4] == hits(x_adv) and counts[-1, 4] == hits(x)
