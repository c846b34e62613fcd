"""Sensitivity v(k) (Eq. 8): the L2 norm of the mask flips, and the ranking of units by it."""

import numpy as np
import tensorflow as tf

from advtf.analysis.dissect import mask_change, sensitivity_ranks


def test_mask_change_is_the_l2_norm_of_the_flip():
    a = np.zeros((2, 3, 3, 2), np.float32)
    b = a.copy()
    b[0, :2, :2, 0] = 1  # 4 flips
    a[1, 0, :, 1] = 1  # 3 flips
    change = mask_change(tf.constant(a), tf.constant(b)).numpy()
    np.testing.assert_allclose(change, [[2.0, 0.0], [0.0, np.sqrt(3)]])


def test_sensitivity_ranks_most_sensitive_first_ties_by_unit():
    order, rank = sensitivity_ranks([0.5, 2.0, 0.5, 3.0, 0.0])
    np.testing.assert_array_equal(order, [3, 1, 0, 2, 4])
    np.testing.assert_array_equal(rank, [3, 2, 4, 1, 5])
