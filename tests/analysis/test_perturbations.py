"""Perturbation statistics and example selection on hand-made perturbations."""

import numpy as np
import pytest

from advtf.analysis import perturbations as P
from advtf.errors import UserError


def test_consistent_and_disordered_perturbations():
    eps = 0.1
    consistent = np.full((1, 8, 8, 1), eps)                       # every pixel at +eps
    checker = eps * (-1.0) ** np.add.outer(np.arange(8), np.arange(8))[None, :, :, None]
    half = np.concatenate([np.full((1, 8, 4, 1), eps / 2), np.full((1, 8, 4, 1), -eps / 2)], axis=2)
    stats = P.perturbation_stats(np.concatenate([consistent, checker, half]), eps)
    np.testing.assert_allclose(stats["at_bound"], [1, 1, 0])
    np.testing.assert_allclose(stats["sign_agreement"], [1, 0, (56 + 48) / 112])  # 8 of 112 pairs cross the edge
    np.testing.assert_allclose(stats["neighbour_diff"], [0, 2, 8 / 112])
    assert stats["high_energy"][0] == pytest.approx(0)           # constant: only the DC term
    assert stats["high_energy"][1] == pytest.approx(1)           # checkerboard: only the Nyquist corner
    zero = P.perturbation_stats(np.zeros((1, 4, 4, 1)), eps)
    assert np.isnan(zero["sign_agreement"][0]) and np.isnan(zero["high_energy"][0])


def test_select_examples():
    success = [np.array([1, 1, 0, 1, 0], bool), np.array([1, 0, 1, 1, 0], bool)]
    correct = [np.array([1, 1, 1, 0, 1], bool), np.ones(5, bool)]
    assert P.select_examples(success, correct, "successful", 5).tolist() == [0]
    assert P.select_examples(success, correct, "failed", 5).tolist() == [2, 4]
    assert P.select_examples(success, correct, "all", 2).tolist() == [0, 1]
    with pytest.raises(UserError, match="--only"):
        P.select_examples(success, correct, "some", 1)


def test_model_summary_on_hand_made_rows():
    eps = 0.1
    natural = np.zeros((3, 4, 4, 1))
    image = natural + np.stack([np.full((4, 4, 1), eps), np.full((4, 4, 1), eps / 2), np.zeros((4, 4, 1))])
    image[2, 0, 0, 0] = eps  # one entry of 16 at the bound
    rows = {"natural": natural, "image": image, "label": np.array([1, 2, 3]), "success": np.array([1, 0, 1], bool),
            "adversarial_prediction": np.array([4, 2, 5]), "clean_correct": np.array([1, 1, 0], bool),
            "adversarial_correct": np.array([0, 1, 0], bool)}
    entry, examples = P.model_summary("runs/std", rows, np.array([0, 2]), eps)
    assert entry["n"] == 3 and entry["success_rate"] == pytest.approx(2 / 3)
    assert entry["clean_accuracy"] == pytest.approx(2 / 3) and entry["adversarial_accuracy"] == pytest.approx(1 / 3)
    assert entry["at_bound"] == pytest.approx((1 + 0 + 1 / 16) / 3)
    assert entry["shown_at_bound"] == pytest.approx((1 + 1 / 16) / 2)
    # neighbour |diff| / eps: image 2 has 2 of its 24 neighbour pairs touching the one entry at eps
    assert entry["shown_neighbour_diff"] == pytest.approx((0 + 2 / 24) / 2)
    assert [(e["index"], e["prediction"], e["success"]) for e in examples] == [(0, 4, True), (2, 5, True)]
    none, _ = P.model_summary("runs/std", rows, np.array([], int), eps)
    assert none["shown_at_bound"] is None
    assert "on every model" in P.empty_note("successful", 7) and "among the 7 attacked" in P.empty_note("all", 7)
