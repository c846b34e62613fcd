"""One table over every registered attack: results stay in the eps-ball and in [0, 1], always.

Every example builds a new model, so every example retraces the attack. The long attacks' step loops
(advtf.attacks.loops.blocked_loop) are traced here with 2 steps per while iteration instead of the
library's 10: the trace is ~4x smaller, the results are bit-identical (test_loop_forms.py), and with
``steps`` in 1..3 both the blocked loop and the one-step remainder loop run (at 10, only the remainder).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from advtf.attacks import ATTACKS, Threat, per_example_norm
from advtf.attacks.loops import forced_unroll

# Loop caps so each example runs in well under a second (STYLE.md: cap iterative methods in tests).
QUICK_OPTIONS = {"search_steps": 2}

CASES = [(name, norm) for name, spec in ATTACKS.items() for norm in spec.norms]
# Steps per while iteration of the long attacks' loops in this module (see the docstring).
PROPERTY_UNROLL = 2


@pytest.fixture(scope="module", autouse=True)
def small_unroll():
    with forced_unroll(PROPERTY_UNROLL):
        yield


def random_model(shape, classes, seed):
    init = keras.initializers.GlorotNormal(seed)
    inputs = keras.Input(shape)
    if seed % 2:
        x = keras.layers.Flatten()(inputs)
    else:
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", kernel_initializer=init)(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, kernel_initializer=init)(x))


@pytest.mark.parametrize("name, norm", CASES)
@settings(max_examples=8, deadline=None)
@given(
    eps=st.floats(0.001, 3.0),
    steps=st.integers(1, 3),
    restarts=st.integers(1, 2),
    side=st.integers(4, 6),
    channels=st.sampled_from([1, 3]),
    batch=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    targeted=st.booleans(),
)
def test_every_attack_stays_in_ball_and_box(name, norm, eps, steps, restarts, side, channels, batch, seed, targeted):
    rng = np.random.default_rng(seed)
    shape, classes = (side, side, channels), 4
    model = random_model(shape, classes, seed)
    # Images with saturated pixels, so the box constraint binds.
    x = tf.constant(rng.choice([0.0, 1.0, 0.5], size=(batch, *shape)) * rng.uniform(size=(batch, *shape)), tf.float32)
    y = tf.constant(rng.integers(0, classes, batch), tf.int32)
    spec = ATTACKS[name]
    options = {k: v for k, v in QUICK_OPTIONS.items() if k in spec.options}
    threat = Threat(norm=norm, eps=eps, steps=steps, restarts=restarts)
    x_adv = spec.fn(model, x, y, threat, targeted=targeted, target=(y + 1) % classes if targeted else None,
                    seed=tf.constant([seed, 1], tf.int64), **options)
    x_adv = np.asarray(x_adv)
    assert x_adv.shape == tuple(x.shape) and x_adv.dtype == np.float32
    assert np.all(np.isfinite(x_adv))
    assert np.all(x_adv >= 0.0) and np.all(x_adv <= 1.0)
    assert np.all(per_example_norm(x_adv - x.numpy(), norm).numpy() <= eps + 1e-6)
