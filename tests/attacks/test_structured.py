"""Str-attack: group norms, one ADMM iteration against numpy, budget, success on a trained model, sparser groups
than PGD."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from advtf.attacks import ATTACKS, Threat, per_example_norm, pgd
from advtf.attacks.structured import admm_iteration, group_lasso, group_norms, nonzero_groups, str_attack
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


# --- One linearised ADMM iteration against numpy (Str-attack paper, Eq. 10, 11, 17, 18 and the dual ascent) ------
# Mutations tried in a scratch copy of structured.py, each made this test fail: ridge rho / (rho + l2_weight),
# z + u in the delta step, threshold gamma instead of gamma / rho, the squared group norm in the soft-threshold,
# eta = alpha * sqrt(t), 2 rho instead of 3 rho in the z step, +grad in the z step, no clipping of z, the w step
# clipped to [-eps, eps] only, u += z - delta, the hinge without kappa.


def numpy_admm_iteration(W, b, x, label, z, u, s, v, t, c, eps, gamma, rho, l2_weight, alpha, kappa, g, targeted):
    """The ADMM step derived from the augmented Lagrangian (scaled duals u, s, v of delta = z, w = z, y = z) of
    c f(x + z) + l2_weight ||delta||^2 + gamma sum_G ||y_G|| + indicator(w feasible), f the C&W hinge,
    for the linear model Z(x') = vec(x') W + b, whose gradient is closed form."""
    lo, hi = np.maximum(-eps, -x), np.minimum(eps, 1.0 - x)
    grad = np.zeros_like(z)
    for i in range(len(x)):
        logits = (x[i] + z[i]).reshape(-1) @ W + b
        others = [j for j in range(W.shape[1]) if j != label[i]]
        top = others[int(np.argmax(logits[others]))]
        sign = -1.0 if targeted else 1.0  # hinge max(kappa + sign (Z_label - Z_top), 0)
        if kappa + sign * (logits[label[i]] - logits[top]) > 0:
            grad[i] = c[i] * sign * (W[:, label[i]] - W[:, top]).reshape(x.shape[1:])
    # delta: argmin l2_weight ||d||^2 + rho/2 ||d - (z - u)||^2  ->  2 l2_weight d + rho (d - z + u) = 0.
    delta = rho * (z - u) / (rho + 2.0 * l2_weight)
    # w: Euclidean projection of z - s onto the box and the l-inf ball (elementwise).
    w = np.minimum(np.maximum(z - s, lo), hi)
    # y: argmin gamma sum_G ||y_G|| + rho/2 ||y - (z - v)||^2, group by group.
    a, y = z - v, np.zeros_like(z)
    for i in range(len(x)):
        for r in range(0, x.shape[1], g):
            for q in range(0, x.shape[2], g):
                block = a[i, r:r + g, q:q + g, :]
                norm = np.sqrt(np.sum(block ** 2))
                if norm > gamma / rho:
                    y[i, r:r + g, q:q + g, :] = (1.0 - gamma / (rho * norm)) * block
    # z: stationary point of grad.(z - z_t) + eta/2 ||z - z_t||^2 + rho/2 (||delta - z + u||^2 + ||w - z + s||^2
    # + ||y - z + v||^2), eta = alpha sqrt(t) with t counted from 1, then projected onto the feasible set.
    eta = alpha * np.sqrt(t + 1.0)
    z_new = (eta * z + rho * ((delta + u) + (w + s) + (y + v)) - grad) / (eta + 3.0 * rho)
    z_new = np.minimum(np.maximum(z_new, lo), hi)
    return (z_new, u + delta - z_new, s + w - z_new, v + y - z_new), y, grad


@pytest.mark.parametrize("targeted", [False, True])
def test_admm_iteration_matches_numpy(targeted):
    rng = np.random.default_rng(7)
    W = rng.normal(size=(16, 3)).astype(np.float32)
    b = np.array([0.3, -0.2, 0.1], np.float32)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    model.layers[-1].set_weights([W, b])
    x = rng.uniform(size=(3, 4, 4, 1)).astype(np.float32)
    x[0, 0, 0, 0], x[1, 3, 3, 0] = 0.02, 0.97  # pixels near the box edges
    state = [rng.normal(scale=0.25, size=x.shape).astype(np.float32) for _ in range(4)]  # z, u, s, v
    state[3][0, 2:, 2:, :] *= 0.05  # v small in one group
    state[3][1, :2, :2, :] = state[0][1, :2, :2, :] + 0.01  # z - v tiny in one group: y_G = 0
    # Labels from the logits at x + z: example 0's hinge is active (untargeted: its label is the top class;
    # targeted: the bottom one), example 1's is not (the reverse), and example 2's only thanks to kappa (its
    # label is the runner-up untargeted, the top class targeted, and kappa exceeds its top-two gap).
    logits = (x + state[0]).reshape(3, -1) @ W + b
    order = np.argsort(logits, axis=1)
    label = np.array([order[0, -1], order[1, 0], order[2, -2]] if not targeted else
                     [order[0, 0], order[1, -1], order[2, -1]], np.int32)
    top_two = np.sort(logits, axis=1)[:, -2:]
    kappa = float(1.5 * (top_two[2, 1] - top_two[2, 0]))
    eps, gamma, rho, l2_weight, alpha, g = 0.2, 0.4, 1.5, 0.7, 2.0, 2
    c = np.array([0.8, 2.0, 1.3], np.float32)
    lo, hi = np.maximum(-eps, -x), np.minimum(eps, 1.0 - x)
    ref, got = [a.astype(np.float64) for a in state], [tf.constant(a) for a in state]
    zeroed = shrunk = 0
    for t in range(3):
        ref, y_ref, grad = numpy_admm_iteration(W.astype(np.float64), b, x.astype(np.float64), label, *ref, t, c,
                                                eps, gamma, rho, l2_weight, alpha, kappa, g, targeted)
        got, y_got = admm_iteration(model, tf.constant(x), tf.constant(label), tuple(got), tf.constant(t),
                                    tf.constant(c), tf.constant(lo), tf.constant(hi), tf.constant(gamma),
                                    tf.constant(rho), tf.constant(l2_weight), tf.constant(alpha),
                                    tf.constant(kappa), g, targeted)
        np.testing.assert_allclose(y_got.numpy(), y_ref, atol=2e-5, err_msg=f"y at t={t}")
        for name, a, r in zip("zusv", got, ref):
            np.testing.assert_allclose(a.numpy(), r, atol=2e-5, err_msg=f"{name} at t={t}")
        if t == 0:  # the three hinge cases
            assert np.abs(grad[0]).max() > 0 and np.abs(grad[1]).max() == 0 and np.abs(grad[2]).max() > 0
        norms = numpy_group_norms(y_ref, g)
        zeroed += int(np.sum(norms == 0))
        shrunk += int(np.sum(norms > 0))
    assert zeroed > 0 and shrunk > 0  # the group soft-threshold both zeroed and shrank groups
    z = got[0].numpy()
    assert np.any(z == lo) or np.any(z == hi)  # the projection of z was active
