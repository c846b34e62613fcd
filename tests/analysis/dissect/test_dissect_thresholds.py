"""Streaming per-unit thresholds T_k against np.quantile over all batches at once."""

import numpy as np
import pytest
import tensorflow as tf

from advtf.analysis.dissect import HISTOGRAM_BINS, UnitQuantile
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
