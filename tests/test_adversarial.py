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

    from tiny import fitted_test_cnn

    model, (x, y) = fitted_test_cnn(test_subset=12, epochs=2)  # fitted, so an attack has accuracy to take away
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(6)
    pred = np.argmax(model(x).numpy(), -1)
    assert np.mean(pred == y) >= 0.5
    threat = Threat(norm="l2", eps=1.0, steps=3)
    for mode, moved_from in (("label", y), ("prediction", pred)):
        request = AttackRequest("pgd", threat, attack_target=mode)
        chunks = list(attack_batches(model, batches, request, num_classes=10))
        rows = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        np.testing.assert_array_equal(rows["target"], moved_from)
        np.testing.assert_array_equal(rows["label"], y)
        np.testing.assert_array_equal(rows["success"], rows["adversarial_prediction"] != moved_from)
        np.testing.assert_array_equal(rows["clean_correct"], pred == y)
        np.testing.assert_array_equal(rows["adversarial_correct"], rows["adversarial_prediction"] == y)
        np.testing.assert_allclose(rows["natural"], x)
        assert np.all(rows["l2"] <= 1.0 + 1e-6)
        # The attack moves the prediction: most images change class and accuracy drops by a margin.
        assert rows["success"].mean() >= 0.5, mode
        assert rows["adversarial_correct"].mean() <= rows["clean_correct"].mean() - 0.25, mode
