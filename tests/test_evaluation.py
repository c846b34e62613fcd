"""Every registered attack runs inside a tf.distribute replica context, and restarts never weaken."""

import numpy as np
import pytest
import tensorflow as tf

from advtf.attacks import ATTACKS, Threat
from advtf.evaluation import evaluate

from tiny import tiny_cnn

QUICK = {"search_steps": 1}


@pytest.fixture(scope="module")
def batches():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(12, 16, 16, 1)).astype(np.float32)
    y = rng.integers(0, 10, 12).astype(np.int32)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(6)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_attack_evaluates_under_mirrored_strategy(name, batches, two_cpu_strategy):
    strategy = two_cpu_strategy
    with strategy.scope():
        model = tiny_cnn()
    spec = ATTACKS[name]
    threat = Threat(norm=spec.norms[0], eps=0.5, steps=2)
    options = {k: v for k, v in QUICK.items() if k in spec.options}
    mirrored = evaluate(model, batches, threat=threat, attack=name, strategy=strategy, options=options)
    assert mirrored["n"] == 12
    assert 0.0 <= mirrored["robust_accuracy"] <= mirrored["clean_accuracy"]
    single = evaluate(model, batches, threat=None)
    assert mirrored["clean_accuracy"] == pytest.approx(single["clean_accuracy"])


@pytest.mark.parametrize("name", ["pgd", "apgd-ce", "apgd-dlr"])
def test_restarts_never_weaken(name):
    model = tiny_cnn(seed=3)
    rng = np.random.default_rng(4)
    x = tf.constant(rng.uniform(size=(24, 16, 16, 1)), tf.float32)
    y = tf.argmax(model(x), -1, output_type=tf.int32)  # every example starts correctly classified
    seed = tf.constant([5, 6], tf.int64)
    fn = ATTACKS[name].fn

    def fooled(restarts):
        x_adv = fn(model, x, y, Threat(norm="linf", eps=0.01, steps=3, restarts=restarts), seed=seed)
        return (tf.argmax(model(x_adv), -1, output_type=tf.int32) != y).numpy()

    one, many = fooled(1), fooled(3)
    assert np.all(many >= one)
