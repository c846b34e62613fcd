"""Attacking a dataset: summaries against hand-made rows, and attack_batches in both label modes."""

import numpy as np
import pytest

from advtf.adversarial import AttackRequest, attack_batches, summarize
from advtf.attacks import Threat


def test_summary_of_hand_made_rows():
    rows = {
        "label": np.array([0, 1, 2, 3]), "target": np.array([1, 1, 0, 0]),
        "success": np.array([True, False, True, False]),
        "clean_correct": np.array([True, True, False, True]),
        "adversarial_correct": np.array([False, True, False, True]),
        "l0": np.array([1.0, 2, 3, 4]), "l1": np.array([1.0, 1, 1, 1]),
        "l2": np.array([0.5, 1.0, 1.5, 2.0]), "linf": np.array([0.1, 0.1, 0.1, 0.1]),
    }
    untargeted = summarize(rows, targeted=False)
    assert untargeted["clean_accuracy"] == 0.75 and untargeted["adversarial_accuracy"] == 0.5
    assert untargeted["robust_accuracy"] == 0.5 and untargeted["success_rate"] == 0.5
    assert untargeted["success_rate_on_correct"] == pytest.approx(1 / 3)
    assert untargeted["norms"]["l2"] == {"mean": 1.25, "median": 1.25, "mean_successful": 1.0,
                                         "median_successful": 1.0}
    targeted = summarize(rows, targeted=True)  # example 1 has target == label: not attackable
    assert targeted["n_attackable"] == 3 and targeted["success_rate"] == pytest.approx(2 / 3)


def test_attack_batches_label_and_prediction_modes():
    import tensorflow as tf

    from tiny import tiny_cnn

    model = tiny_cnn()
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(6, 16, 16, 1)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 4, 5], np.int32)
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(3)
    pred = np.argmax(model(x).numpy(), -1)
    threat = Threat(norm="l2", eps=0.5, steps=2)
    for mode, moved_from in (("label", y), ("prediction", pred)):
        request = AttackRequest("pgd", threat, attack_target=mode)
        chunks = list(attack_batches(model, batches, request, num_classes=10))
        rows = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        np.testing.assert_array_equal(rows["target"], moved_from)
        np.testing.assert_array_equal(rows["label"], y)
        np.testing.assert_array_equal(rows["success"], rows["adversarial_prediction"] != moved_from)
        np.testing.assert_array_equal(rows["clean_correct"], pred == y)
        np.testing.assert_allclose(rows["natural"], x)
        assert np.all(rows["l2"] <= 0.5 + 1e-6)
