"""Str-attack: group norms, budget, success on a trained model, sparser groups than PGD."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from advtf.attacks import ATTACKS, Threat, per_example_norm, pgd
from advtf.attacks.structured import group_lasso, group_norms, nonzero_groups, str_attack
from advtf.errors import UserError


def numpy_group_norms(delta, g):
    b, h, w, _ = delta.shape
    out = np.zeros((b, -(-h // g), -(-w // g)))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = np.sqrt((delta[:, i * g:(i + 1) * g, j * g:(j + 1) * g, :] ** 2).sum(axis=(1, 2, 3)))
    return out


@pytest.mark.parametrize("shape, g", [((2, 4, 4, 1), 2), ((3, 5, 7, 3), 2), ((1, 6, 6, 2), 3), ((2, 5, 5, 1), 1)])
def test_group_norms_match_numpy(shape, g):
    rng = np.random.default_rng(0)
    delta = rng.normal(size=shape).astype(np.float32)
    delta[:, : min(g, shape[1]), : min(g, shape[2]), :] = 0.0  # one all-zero group per example
    expected = numpy_group_norms(delta, g)
    np.testing.assert_allclose(group_norms(delta, g).numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(group_lasso(delta, g).numpy(), expected.sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_array_equal(nonzero_groups(delta, g).numpy(), (expected > 1e-6).sum(axis=(1, 2)))


def test_group_norms_hand_made():
    delta = np.zeros((1, 4, 4, 1), np.float32)
    delta[0, 0, 0, 0], delta[0, 1, 1, 0] = 3.0, 4.0  # top-left group: norm 5
    delta[0, 3, 3, 0] = -2.0  # bottom-right group: norm 2
    np.testing.assert_allclose(group_norms(delta, 2).numpy()[0], [[5.0, 0.0], [0.0, 2.0]], rtol=1e-6)
    assert group_lasso(delta, 2).numpy()[0] == pytest.approx(7.0)
    assert nonzero_groups(delta, 2).numpy()[0] == 2


def test_registered_with_options():
    spec = ATTACKS["str"]
    assert spec.norms == ("linf",) and spec.default_steps == 100
    assert {"group_size", "gamma", "rho", "confidence", "initial_const", "search_steps"} <= set(spec.options)


def test_user_errors():
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    x, y = tf.zeros((1, 4, 4, 1)), tf.zeros((1,), tf.int32)
    with pytest.raises(UserError):
        str_attack(model, x, y, Threat("l2", 0.5, steps=1))
    with pytest.raises(UserError):
        str_attack(model, x, y, Threat("linf", 0.5, steps=1), group_size=0)
    with pytest.raises(UserError):
        str_attack(model, x, y, Threat("linf", 0.5, steps=1), rho=0.0)


def test_trace_safe_inside_tf_function():
    model = keras.Sequential([keras.Input((5, 5, 3)), keras.layers.Flatten(), keras.layers.Dense(3)])
    threat = Threat("linf", 0.1, steps=2)

    @tf.function
    def run(x, y):
        return str_attack(model, x, y, threat, search_steps=1)

    x = tf.random.stateless_uniform((2, 5, 5, 3), [0, 1])
    x_adv = run(x, tf.constant([0, 1]))
    assert x_adv.shape == x.shape
    assert np.all(per_example_norm(x_adv - x, "linf").numpy() <= 0.1 + 1e-6)


@pytest.fixture(scope="module")
def digits_model():
    """A small conv net on 16x16 digits, trained in ~2 s; the test examples it classifies correctly."""
    from advtf.data import load_dataset

    keras.utils.set_random_seed(0)
    data = load_dataset("digits", train_subset=600, test_subset=80)
    x_train, y_train = (np.stack(a) for a in zip(*data.train.as_numpy_iterator()))
    x_test, y_test = (np.stack(a) for a in zip(*data.test.as_numpy_iterator()))
    inputs = keras.Input((16, 16, 1))
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(h)))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=8, batch_size=32, verbose=0)
    correct = model.predict(x_test, verbose=0).argmax(1) == y_test
    x, y = x_test[correct][:32], y_test[correct][:32].astype(np.int32)
    assert len(y) >= 24
    return model, x, y


def test_untargeted_succeeds_with_sparser_groups_than_pgd(digits_model):
    model, x, y = digits_model
    eps = 0.3
    x_str = str_attack(model, x, y, Threat("linf", eps, steps=40), search_steps=3).numpy()
    x_pgd = pgd(model, x, y, Threat("linf", eps, steps=20), seed=tf.constant([0, 1], tf.int64)).numpy()
    for x_adv in (x_str, x_pgd):
        assert np.all(per_example_norm(x_adv - x, "linf").numpy() <= eps + 1e-6)
        assert np.all((x_adv >= 0) & (x_adv <= 1))
    ok_str = model.predict(x_str, verbose=0).argmax(1) != y
    ok_pgd = model.predict(x_pgd, verbose=0).argmax(1) != y
    assert ok_str.mean() >= 0.95
    both = ok_str & ok_pgd
    assert both.mean() >= 0.9
    lasso_str, lasso_pgd = group_lasso(x_str - x, 2).numpy()[both], group_lasso(x_pgd - x, 2).numpy()[both]
    groups_str, groups_pgd = nonzero_groups(x_str - x, 2).numpy()[both], nonzero_groups(x_pgd - x, 2).numpy()[both]
    assert lasso_str.mean() < 0.5 * lasso_pgd.mean()
    assert groups_str.mean() < 0.5 * groups_pgd.mean()


def test_targeted_hits_targets(digits_model):
    model, x, y = digits_model
    target = ((y + 1) % 10).astype(np.int32)
    x_adv = str_attack(model, x, y, Threat("linf", 0.3, steps=40), targeted=True, target=target,
                       search_steps=3).numpy()
    assert np.all(per_example_norm(x_adv - x, "linf").numpy() <= 0.3 + 1e-6)
    assert (model.predict(x_adv, verbose=0).argmax(1) == target).mean() >= 0.9


def test_larger_gamma_perturbs_fewer_groups(digits_model):
    model, x, y = digits_model
    threat = Threat("linf", 0.3, steps=40)
    counts = []
    for gamma in (0.1, 3.0):
        x_adv = str_attack(model, x, y, threat, gamma=gamma, search_steps=3).numpy()
        ok = model.predict(x_adv, verbose=0).argmax(1) != y
        counts.append(nonzero_groups(x_adv - x, 2).numpy()[ok].mean())
    assert counts[1] < counts[0]
