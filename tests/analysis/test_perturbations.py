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


def test_outcome_rows_and_rows_at_stream_batches_to_what_the_whole_rows_give():
    """The job keeps per-example outcomes and statistics, not images: batch by batch, the summary
    and the shown pictures equal the whole-array computation exactly."""
    rng = np.random.default_rng(0)
    eps, n = 0.05, 11
    natural = rng.random((n, 6, 6, 2)).astype(np.float32)
    image = np.clip(natural + rng.uniform(-eps, eps, natural.shape), 0, 1).astype(np.float32)
    image[3] = natural[3]  # an unperturbed example (NaN statistics)
    whole = {"natural": natural, "image": image, "label": rng.integers(0, 3, n), "success": rng.random(n) < .5,
             "adversarial_prediction": rng.integers(0, 3, n), "clean_correct": rng.random(n) < .7,
             "adversarial_correct": rng.random(n) < .3}
    batches = [{k: v[lo:lo + 4] for k, v in whole.items()} for lo in range(0, n, 4)]  # 4, 4, 3
    shown = np.array([0, 3, 5, 10])
    streamed = P.outcome_rows(iter(batches), eps)
    assert "image" not in streamed and "natural" not in streamed
    np.testing.assert_equal(P.model_summary("m", streamed, shown, eps), P.model_summary("m", whole, shown, eps))
    picked = P.rows_at(iter(batches), shown)
    assert np.array_equal(picked["image"], image[shown]) and np.array_equal(picked["natural"], natural[shown])
    assert P.rows_at(iter(batches), np.array([], int))["image"].shape == (0, 6, 6, 2)
    assert P.outcome_rows(iter([]), eps) == {}
