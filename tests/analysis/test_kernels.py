"""Kernel smoothness statistics on hand-made kernels."""

import keras
import numpy as np
import pytest

from advtf.analysis import kernels as K
from advtf.errors import UserError


def as_kernel(*slices_):
    """``[kh, kw, 1, S]`` kernel from 2-D slices (one per output channel)."""
    return np.stack([np.asarray(s, float) for s in slices_], axis=-1)[:, :, None, :]


def test_smooth_and_disordered_kernels_of_figure_4():
    smooth = np.full((3, 3), 1 / 9)
    disordered = np.array([[1, -1, 1], [-1, 1, -1], [1, -1, 1]]) / 9
    disordered += smooth.mean() - disordered.mean()  # same mean, larger variance
    assert disordered.mean() == pytest.approx(smooth.mean())
    s, d = K.kernel_stats(as_kernel(smooth)), K.kernel_stats(as_kernel(disordered))
    assert s["variance"] == pytest.approx(0, abs=1e-15) and s["tv"] == pytest.approx(0, abs=1e-15)
    assert d["variance"] == pytest.approx(np.var(disordered))
    assert d["tv"] == pytest.approx(12 * 2 / 9)  # 12 neighbour pairs, each |±2/9|
    assert s["mean_abs"] == pytest.approx(1 / 9) and s["l2"] == pytest.approx(np.sqrt(9 / 81))


def test_slices_are_per_input_output_pair():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 2, 4, 5))
    slices = K.kernel_slices(kernel)
    assert slices.shape == (20, 3, 2)
    np.testing.assert_array_equal(slices[1 * 5 + 2], kernel[:, :, 1, 2])
    stats = K.kernel_stats(kernel)
    expected_var = np.mean([kernel[:, :, i, o].var() for i in range(4) for o in range(5)])
    expected_tv = np.mean([np.abs(np.diff(kernel[:, :, i, o], axis=0)).sum() + np.abs(np.diff(kernel[:, :, i, o],
                           axis=1)).sum() for i in range(4) for o in range(5)])
    assert stats["variance"] == pytest.approx(expected_var) and stats["tv"] == pytest.approx(expected_tv)
    assert stats["kernel"] == "3x2" and stats["weights"] == 120


def test_one_by_one_kernels_have_no_spatial_statistics():
    stats = K.kernel_stats(np.ones((1, 1, 2, 2)))
    assert stats["variance"] is None and stats["tv"] is None and stats["mean_abs"] == 1.0


def test_model_wide_summary_pools_layers():
    inputs = keras.Input((6, 6, 1))
    a = keras.layers.Conv2D(2, 3, use_bias=False, name="a")
    b = keras.layers.Conv2D(1, 1, use_bias=False, name="b")
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(b(a(inputs)))))
    ka = np.arange(18, dtype=float).reshape(3, 3, 1, 2) / 10
    a.set_weights([ka])
    b.set_weights([np.array([[[[2.0], [-2.0]]]])])
    rows, summary = K.model_kernel_stats(model)
    assert [r["layer"] for r in rows] == ["a", "b"]  # the Dense layer is not a kernel
    flat = np.concatenate([ka.ravel(), [2.0, -2.0]])
    assert summary["mean_abs"] == pytest.approx(np.abs(flat).mean())
    assert summary["l2"] == pytest.approx(np.sqrt((flat ** 2).sum()))
    assert summary["variance"] == pytest.approx(K.kernel_stats(ka)["variance"])  # 1x1 layer left out


def test_bad_kernels_are_user_errors():
    with pytest.raises(UserError, match="4 dimensions"):
        K.kernel_stats(np.ones((3, 3)))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(UserError, match="no Conv2D"):
        K.conv_kernels(model)
