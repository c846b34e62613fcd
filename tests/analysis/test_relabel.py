"""Relabeling: targets follow the mode exactly, and the targeted attack hits them."""

import numpy as np
import pytest

from advtf.analysis.relabel import label_histogram, relabel_batch, relabel_targets
from advtf.attacks import Threat
from advtf.errors import UserError


def test_zero_mode_labels_are_uniform_over_all_classes():
    labels = np.repeat(np.arange(10), 1000)
    index, new = relabel_targets(labels, 10, "zero", seed=1)
    assert np.array_equal(index, np.arange(len(labels)))
    counts = np.bincount(new, minlength=10)
    chi2 = ((counts - 1000) ** 2 / 1000).sum()
    assert chi2 < 27.9  # p = 0.001, 9 degrees of freedom
    # Independent of the true label (the label itself included): per true class, uniform too.
    same = (new == labels).mean()
    assert 0.08 < same < 0.12
    assert np.array_equal(relabel_targets(labels, 10, "zero", seed=1)[1], new)
    assert not np.array_equal(relabel_targets(labels, 10, "zero", seed=2)[1], new)


def test_negative_mode_is_the_next_class():
    labels = np.array([0, 3, 8, 9, 9])
    index, new = relabel_targets(labels, 10, "negative")
    assert list(index) == [0, 1, 2, 3, 4] and list(new) == [1, 4, 9, 0, 0]


def test_per_image_all_makes_one_example_per_class():
    index, new = relabel_targets(np.array([4, 7]), 3, "zero", per_image="all")
    assert list(index) == [0, 0, 0, 1, 1, 1] and list(new) == [0, 1, 2, 0, 1, 2]
    with pytest.raises(UserError, match="--mode zero"):
        relabel_targets(np.array([1]), 3, "negative", per_image="all")
    with pytest.raises(UserError, match="--mode"):
        relabel_targets(np.array([1]), 3, "positive")
    with pytest.raises(UserError, match="two classes"):
        relabel_targets(np.array([0]), 1, "zero")


def test_label_histogram_counts_every_class():
    assert label_histogram(np.array([2, 0, 2, 2]), ["a", "b", "c"]) == {"a": 1, "b": 0, "c": 3}


def test_targeted_examples_hit_their_new_labels_inside_the_ball():
    from tiny import fitted_test_cnn

    model, (x, y) = fitted_test_cnn(test_subset=40)
    for mode in ("zero", "negative"):
        _, new = relabel_targets(y, 10, mode, seed=0)
        threat = Threat(norm="l2", eps=4.0, steps=40, step_size=0.25, random_start=False)
        out = {k: v.numpy() for k, v in relabel_batch(model, x, y, new, attack="pgd", threat=threat,
                                                      seed=[0, 0]).items()}
        assert np.all(np.linalg.norm((out["image"] - x).reshape(len(x), -1), axis=1) <= 4.0 + 1e-4)
        assert out["image"].min() >= 0 and out["image"].max() <= 1
        predicted = model.predict(out["image"], verbose=0).argmax(1)
        assert np.array_equal(out["success"], predicted == new)
        assert out["success"].mean() >= 0.9, (mode, out["success"].mean())
