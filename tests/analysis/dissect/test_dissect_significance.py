"""p-values of the most sensitive units' interpretability (Figure 7a) against exact enumeration."""

import itertools

import numpy as np
import pytest

from advtf.analysis.dissect import sensitivity_p_values


def test_p_value_one_when_every_unit_is_equally_interpretable(rng):
    rows = sensitivity_p_values(np.full(40, 0.02), rng.random(40), [10, 30, 50], draws=500, seed=1)
    assert [r["p_value"] for r in rows[:2]] == [1.0, 1.0]
    assert rows[2]["skipped"] and rows[2]["p_value"] is None


def test_p_value_smallest_when_the_most_sensitive_are_the_most_interpretable(rng):
    sensitivity = rng.random(30)
    iou = 0.1 * sensitivity  # the N most sensitive are exactly the N best; P(random >= observed) = 1 / C(30, N)
    rows = sensitivity_p_values(iou, sensitivity, [5, 10], draws=2000, seed=0)
    for r in rows:
        assert r["p_value"] == pytest.approx(1 / 2001)
        assert r["observed_iou_sum"] == pytest.approx(np.sort(iou)[::-1][:r["n"]].sum())
    reverse = sensitivity_p_values(-iou + 1, sensitivity, [5], draws=2000, seed=0)
    assert reverse[0]["p_value"] == 1.0  # the most sensitive are the least interpretable


def test_p_value_matches_exact_enumeration_on_a_tiny_layer(rng):
    units, n, draws = 9, 3, 40000
    iou = rng.random(units)
    sensitivity = rng.random(units)
    observed = iou[np.argsort(-sensitivity)[:n]].sum()
    sums = np.array([iou[list(s)].sum() for s in itertools.combinations(range(units), n)])
    exact = float((sums >= observed - 1e-12).mean())
    (row,) = sensitivity_p_values(iou, sensitivity, [n], draws=draws, seed=3)
    expected = (1 + exact * draws) / (1 + draws)
    assert abs(row["p_value"] - expected) < 4 * np.sqrt(exact * (1 - exact) / draws) + 1e-4
    assert row["random_iou_sum_mean"] == pytest.approx(n * iou.mean(), rel=0.01)
