"""Every registered attack runs under MirroredStrategy and fools a fitted model; restarts never weaken."""

import numpy as np
import pytest
import tensorflow as tf

from advtf.attacks import ATTACKS, Threat
from advtf.evaluation import evaluate
from advtf.models import create_model

from tiny import tiny_cnn

# Per attack, a budget under which it must fool a fitted digits model (norm, eps, steps, options); the
# minimal-norm attacks get one search step and a large initial constant so a few iterations suffice.
BITING = {
    "pgd": ("linf", 0.1, 2, {}),
    "fgsm": ("linf", 0.1, 1, {}),
    "ifgsm": ("linf", 0.1, 2, {}),
    "apgd-ce": ("linf", 0.1, 2, {}),
    "apgd-dlr": ("linf", 0.1, 2, {}),
    "autoattack-lite": ("linf", 0.1, 2, {}),
    "cw": ("l2", 1.0, 5, {"search_steps": 1, "initial_const": 1.0}),
    "ead": ("l1", 5.0, 10, {"search_steps": 1, "initial_const": 10.0}),
    "str": ("linf", 0.3, 10, {"search_steps": 1, "initial_const": 10.0}),
}


@pytest.fixture(scope="module")
def fitted():
    """advtf's test_cnn fitted on digits (about 0.75-0.9 clean accuracy) and 24 test images in batches of 12."""
    from tiny import fitted_test_cnn

    model, (x, y) = fitted_test_cnn(test_subset=24, epochs=2)
    return model, tf.data.Dataset.from_tensor_slices((x, y)).batch(12)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_attack_evaluates_under_mirrored_strategy(name, fitted, two_cpu_strategy):
    single_model, batches = fitted
    strategy = two_cpu_strategy
    with strategy.scope():
        model = create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=0)
    model.set_weights(single_model.get_weights())
    norm, eps, steps, options = BITING[name]  # a new attack needs a row here
    assert norm in ATTACKS[name].norms
    mirrored = evaluate(model, batches, threat=Threat(norm=norm, eps=eps, steps=steps), attack=name,
                        strategy=strategy, options=options)
    assert mirrored["n"] == 24
    single = evaluate(single_model, batches, threat=None)
    assert mirrored["clean_accuracy"] == single["clean_accuracy"] >= 0.5
    # The attack must bite: at least 6 of the 24 images lose their correct label (a no-op attack fails here).
    assert mirrored["robust_accuracy"] <= mirrored["clean_accuracy"] - 0.25, mirrored


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
    assert 0 < one.sum() < len(one)  # the attack fools some examples (so it works) but not all (room to improve)
    assert np.all(many >= one)
