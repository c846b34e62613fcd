"""Seeds from a notebook: every registered attack takes a plain int seed as well as a (2,) tensor.

``seed=s`` means ``[s, 0]``: the same attack as the tensor seed, and the same output twice.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from advtf.attacks import ATTACKS, Threat, choose_targets
from advtf.attacks.threat import as_seed
from advtf.errors import UserError

QUICK_OPTIONS = {"search_steps": 2}  # the binary searches of C&W, EAD and Str: two rounds suffice here
pytestmark = pytest.mark.usefixtures("small_unroll")  # seeds do not depend on the loop's block size


@pytest.fixture(scope="module")
def tiny():
    init = keras.initializers.GlorotNormal(1)
    inputs = keras.Input((6, 6, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", kernel_initializer=init)(inputs)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inputs, keras.layers.Dense(4, kernel_initializer=init)(h))
    rng = np.random.default_rng(2)
    return model, rng.uniform(size=(3, 6, 6, 1)).astype(np.float32), rng.integers(0, 4, 3).astype(np.int32)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_an_int_seed_is_the_tensor_seed_s_0(tiny, name):
    model, x, y = tiny
    spec = ATTACKS[name]
    options = {k: v for k, v in QUICK_OPTIONS.items() if k in spec.options}
    threat = Threat(norm=spec.norms[0], eps=0.3, steps=3, restarts=2)

    def run(seed):
        return np.asarray(spec.fn(model, x, y, threat, seed=seed, **options))

    with_int = run(12)
    np.testing.assert_array_equal(with_int, run(tf.constant([12, 0], tf.int64)))
    np.testing.assert_array_equal(with_int, run(np.int64(12)))
    np.testing.assert_array_equal(with_int, run(12))


def test_int_seeds_differ_where_the_attack_is_random(tiny):
    model, x, y = tiny
    threat = Threat(norm="linf", eps=0.3, steps=1)
    pgd = ATTACKS["pgd"].fn
    assert not np.array_equal(pgd(model, x, y, threat, seed=1).numpy(), pgd(model, x, y, threat, seed=2).numpy())


def test_as_seed():
    np.testing.assert_array_equal(as_seed(7).numpy(), [7, 0])
    np.testing.assert_array_equal(as_seed(-3).numpy(), [-3, 0])
    np.testing.assert_array_equal(as_seed(tf.constant([4, 5])).numpy(), [4, 5])
    np.testing.assert_array_equal(as_seed(np.array([4, 5], np.int32)).numpy(), [4, 5])
    assert as_seed(7).dtype == tf.int64 and as_seed(None).shape == (2,)
    for bad in (0.5, True, [1, 2, 3], tf.constant([[1, 2]]), tf.constant([1.0, 2.0])):
        with pytest.raises(UserError, match="seed must be an int or a shape-\\(2,\\) integer tensor"):
            as_seed(bad)


def test_targets_take_an_int_seed():
    y = tf.constant(np.arange(40) % 4, tf.int32)
    np.testing.assert_array_equal(choose_targets(y, 4, "random", seed=9).numpy(),
                                  choose_targets(y, 4, "random", seed=tf.constant([9, 0])).numpy())
