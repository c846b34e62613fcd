"""Robust accuracy under MirroredStrategy (two logical CPUs) equals the single-device number.

The model, data and seed are the same; 45 images in batches of 16 end with an odd batch of 13 that the two
replicas split 7 / 6. Without a random start PGD is per-example deterministic, so the replica split cannot
change any example's outcome: the counts must be equal. With a random start each replica draws its noise
from its own seed (``replica_seed`` mixes in the replica id), so mirrored evaluation is one more random draw.
"""

import pytest
import tensorflow as tf

from advtf.attacks import Threat
from advtf.evaluation import evaluate
from advtf.models import create_model

N = 45


@pytest.fixture(scope="module")
def fitted():
    from tiny import fitted_test_cnn

    model, (x, y) = fitted_test_cnn(test_subset=N, epochs=2)
    return model, tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


def _mirrored_copy(model, strategy):
    with strategy.scope():
        copy = create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=0)
    copy.set_weights(model.get_weights())
    return copy


def _counts(result):
    return round(result["clean_accuracy"] * N), round(result["robust_accuracy"] * N)


@pytest.mark.parametrize("norm, eps", [("linf", 0.03), ("l2", 0.3)])
def test_deterministic_pgd_gives_the_same_robust_accuracy(fitted, two_cpu_strategy, norm, eps):
    model, batches = fitted
    threat = Threat(norm=norm, eps=eps, steps=5, random_start=False)
    mirrored = evaluate(_mirrored_copy(model, two_cpu_strategy), batches, threat=threat,
                        strategy=two_cpu_strategy, seed=3)
    single = evaluate(model, batches, threat=threat, seed=3)
    assert mirrored["n"] == single["n"] == N
    clean, robust = _counts(single)
    # Not a trivial agreement: the attack fools some images (robust well below clean) but not all (robust > 0).
    assert 0 < robust <= clean - 9, single
    assert _counts(mirrored) == (clean, robust)


def test_random_start_pgd_agrees_within_the_seed_to_seed_spread(fitted, two_cpu_strategy):
    model, batches = fitted
    threat = Threat(norm="linf", eps=0.03, steps=5)
    mirrored = evaluate(_mirrored_copy(model, two_cpu_strategy), batches, threat=threat,
                        strategy=two_cpu_strategy, seed=3)
    single = [_counts(evaluate(model, batches, threat=threat, seed=s)) for s in (3, 4)]
    clean, robust = _counts(mirrored)
    assert all(c == clean for c, _ in single)  # clean accuracy has no randomness: equal
    assert 0 < robust <= clean - 9
    # Tolerance: how far two single-device seeds land apart, plus one image for that spread's own noise.
    spread = abs(single[0][1] - single[1][1])
    assert abs(robust - single[0][1]) <= spread + 1, (robust, single)
