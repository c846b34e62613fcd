"""C&W-L2 and EAD: near-certain success on a small trained net, smaller norms than PGD, sparse EAD,
budgets as hard limits, option validation, the binary search on c against hand-computed sequences."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from advtf.attacks import ATTACKS, Threat, coerce_options, per_example_norm, pgd
from advtf.attacks.cw import bisect_const, cw
from advtf.attacks.ead import ead, shrinkage_threshold
from advtf.attacks.loops import forced_unroll
from advtf.attacks.losses import margin
from advtf.errors import UserError

CLASSES = 10


@pytest.fixture(scope="module", autouse=True)
def module_small_unroll():
    """C&W's and EAD's loops traced with 2 steps per block (bit-identical results, test_loop_forms.py;
    both loop forms still traced); set before the module's attack fixtures run."""
    with forced_unroll(2):
        yield


@pytest.fixture(scope="module")
def digits():
    """A small MLP on sklearn's 8x8 digits (~2 s on CPU) and 48 test images it classifies right."""
    bunch = load_digits()
    images = (bunch.images / 16.0).astype("float32")[..., None]
    labels = bunch.target.astype("int32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(CLASSES)])
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images[:1500], labels[:1500], epochs=15, batch_size=64, verbose=0)
    x, y = images[1500:], labels[1500:]
    right = np.argmax(model.predict(x, verbose=0), axis=1) == y
    assert right.mean() > 0.8
    return model, tf.constant(x[right][:48]), tf.constant(y[right][:48])


def _stats(model, x, x_adv, label, targeted=False):
    x_adv = np.asarray(x_adv)
    pred = np.argmax(model.predict(x_adv, verbose=0), axis=1)
    success = pred == np.asarray(label) if targeted else pred != np.asarray(label)
    delta = x_adv - np.asarray(x)
    return {"success": success.mean(), **{n: per_example_norm(delta, n).numpy().mean() for n in ("l2", "l1", "l0")}}


@pytest.fixture(scope="module")
def untargeted(digits):
    """C&W, EAD (both rules) and PGD-L2 on the same images at generous budgets."""
    model, x, y = digits
    seed = tf.constant([0, 1], tf.int64)
    return {
        "cw": _stats(model, x, cw(model, x, y, Threat("l2", eps=3.0, steps=100)), y),
        "ead_en": _stats(model, x, ead(model, x, y, Threat("l1", eps=20.0, steps=50)), y),
        "ead_l1": _stats(model, x, ead(model, x, y, Threat("l1", eps=20.0, steps=50), decision_rule="l1"), y),
        "pgd": _stats(model, x, pgd(model, x, y, Threat("l2", eps=1.5, steps=50, step_size=0.15), seed=seed), y),
    }


def test_cw_succeeds_with_smaller_l2_than_pgd(untargeted):
    cw_stats, pgd_stats = untargeted["cw"], untargeted["pgd"]
    assert cw_stats["success"] >= 0.95 and pgd_stats["success"] >= 0.95
    assert cw_stats["l2"] < pgd_stats["l2"]


def test_ead_succeeds_with_smaller_l1_than_pgd_and_sparser_than_cw(untargeted):
    pgd_stats, cw_stats = untargeted["pgd"], untargeted["cw"]
    for rule in ("ead_en", "ead_l1"):
        assert untargeted[rule]["success"] >= 0.95
        assert untargeted[rule]["l1"] < pgd_stats["l1"]
    assert untargeted["ead_l1"]["l0"] < cw_stats["l0"]
    assert untargeted["ead_l1"]["l1"] <= untargeted["ead_en"]["l1"] + 1e-6


@pytest.mark.parametrize("name", ["cw", "ead"])
def test_targeted_attacks_reach_their_targets(digits, name):
    model, x, y = digits
    target = (y + 1) % CLASSES
    # C&W's Adam moves w by about lr per step: targeted C&W needs more than 100 steps at lr 0.01.
    threat = Threat("l2", eps=3.0, steps=300) if name == "cw" else Threat("l1", eps=20.0, steps=50)
    x_adv = ATTACKS[name].fn(model, x, y, threat, targeted=True, target=target)
    assert _stats(model, x, x_adv, target, targeted=True)["success"] >= 0.95


def test_eps_is_a_hard_budget(digits):
    model, x, y = digits
    for name, threat in (("cw", Threat("l2", eps=0.3, steps=20)), ("ead", Threat("l1", eps=0.5, steps=20)),
                         ("ead", Threat("l2", eps=0.3, steps=20))):
        x_adv = ATTACKS[name].fn(model, x, y, threat).numpy()
        assert np.all(per_example_norm(x_adv - x.numpy(), threat.norm).numpy() <= threat.eps + 1e-6)
        assert np.all((x_adv >= 0) & (x_adv <= 1))


def test_confidence_gives_a_margin(digits):
    model, x, y = digits
    x_adv = cw(model, x, y, Threat("l2", eps=5.0, steps=300), confidence=3.0)
    m = margin(model(x_adv, training=False), y).numpy()
    assert np.mean(m < -3.0 + 1e-3) >= 0.95


def test_ista_also_succeeds(digits):
    model, x, y = digits
    x_adv = ead(model, x, y, Threat("l1", eps=20.0, steps=50), fista=False)
    assert _stats(model, x, x_adv, y)["success"] >= 0.95


def test_shrinkage_threshold_matches_its_cases():
    x = tf.constant([0.5, 0.5, 0.5, 0.95, 0.02])
    z = tf.constant([0.7, 0.45, 0.2, 1.3, -0.5])
    np.testing.assert_allclose(shrinkage_threshold(z, x, 0.1).numpy(), [0.6, 0.5, 0.3, 1.0, 0.0], atol=1e-6)


def _tiny():
    inputs = keras.Input((4, 4, 1))
    outputs = keras.layers.Dense(3, kernel_initializer=keras.initializers.GlorotNormal(0))(
        keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    x = tf.constant(np.random.default_rng(0).uniform(size=(2, 4, 4, 1)), tf.float32)
    return model, x, tf.constant([0, 1], tf.int32)


def test_invalid_options_are_user_errors():
    model, x, y = _tiny()
    l1, l2 = Threat("l1", eps=1.0, steps=1), Threat("l2", eps=1.0, steps=1)
    bad = [
        (ead, l1, {"decision_rule": "x"}), (ead, l1, {"beta": -1.0}), (ead, Threat("linf", eps=0.1, steps=1), {}),
        (cw, l1, {}), (cw, l2, {"search_steps": 0}), (cw, l2, {"confidence": -1.0}),
        (cw, l2, {"initial_const": 0.0}), (ead, l2, {"lr": 0.0}),
    ]
    for attack, threat, options in bad:
        with pytest.raises(UserError):
            attack(model, x, y, threat, **options)
    with pytest.raises(ValueError):
        cw(model, x, y, l2, targeted=True)


def test_registry_and_cli_options():
    assert ATTACKS["cw"].norms == ("l2",) and ATTACKS["ead"].norms == ("l1", "l2")
    assert ATTACKS["cw"].default_steps == ATTACKS["ead"].default_steps == 100
    options = coerce_options("ead", {"decision_rule": "l1", "fista": "false", "search_steps": "3", "beta": "1e-3"})
    assert options == {"decision_rule": "l1", "fista": False, "search_steps": 3, "beta": 1e-3}
    assert set(coerce_options("cw", {"confidence": "2", "abort_early": "no"})) == {"confidence", "abort_early"}


def test_trace_safe_inside_tf_function():
    model, x, y = _tiny()

    @tf.function
    def both(x, y):
        a = cw(model, x, y, Threat("l2", eps=0.5, steps=2), search_steps=2)
        b = ead(model, x, y, Threat("l1", eps=0.5, steps=2), search_steps=2)
        return a, b

    a, b = both(x, y)
    assert a.shape == b.shape == x.shape
    assert np.all(per_example_norm(b - x, "l1").numpy() <= 0.5 + 1e-6)


# --- The binary search on c (Carlini & Wagner 2017; Chen et al. 2018; the Str-attack with grow=5) ---------------
# Mutations tried in a scratch copy of cw.py, each made these tests fail: tf.minimum -> tf.maximum for the upper
# bound, tf.maximum -> tf.minimum for the lower bound, midpoint -> upper, ``const * grow`` -> ``const * 2``,
# ``has_upper`` -> ``~has_upper``.


def reference_bisection(c0, outcomes, grow=10.0):
    """C&W's rule in plain Python for one example: success sets upper = min(upper, c), failure
    lower = max(lower, c); then c = (lower + upper) / 2 once an upper bound exists, else c * grow."""
    c, lower, upper, out = c0, 0.0, 1e10, []
    for success in outcomes:
        if success:
            upper = min(upper, c)
        else:
            lower = max(lower, c)
        c = (lower + upper) / 2 if upper < 1e9 else c * grow
        out.append((c, lower, upper))
    return out


def run_bisection(c0, outcomes, grow=10.0):
    """bisect_const over the steps of ``outcomes`` (examples x steps), a list of (c, lower, upper) per step."""
    outcomes = np.asarray(outcomes, bool)
    const = tf.fill([outcomes.shape[0]], float(c0))
    lower, upper = tf.zeros_like(const), tf.fill(const.shape, 1e10)
    out = []
    for step in outcomes.T:
        const, lower, upper = bisect_const(const, lower, upper, tf.constant(step), grow=grow)
        out.append((const.numpy(), lower.numpy(), upper.numpy()))
    return out


# Hand-computed (c, lower, upper) after each of five steps from c = 1, for a batch of three examples.
F, S = False, True
HAND_OUTCOMES = [[F, F, S, F, S], [S, S, S, S, S], [S, F, F, S, F]]
HAND_TIMES_10 = [
    [(10, 1, 1e10), (100, 10, 1e10), (55, 10, 100), (77.5, 55, 100), (66.25, 55, 77.5)],
    [(0.5, 0, 1), (0.25, 0, 0.5), (0.125, 0, 0.25), (0.0625, 0, 0.125), (0.03125, 0, 0.0625)],
    [(0.5, 0, 1), (0.75, 0.5, 1), (0.875, 0.75, 1), (0.8125, 0.75, 0.875), (0.84375, 0.8125, 0.875)],
]
HAND_TIMES_5_FIRST = [(5, 1, 1e10), (25, 5, 1e10), (15, 5, 25), (20, 15, 25), (17.5, 15, 20)]


def test_bisection_matches_hand_computed_sequences():
    got = np.array(run_bisection(1.0, HAND_OUTCOMES))  # (step, c/lower/upper, example)
    want = np.array(HAND_TIMES_10, np.float64)  # (example, step, c/lower/upper)
    np.testing.assert_allclose(got, want.transpose(1, 2, 0), rtol=1e-6)
    # The Str-attack grows c by 5 (not 10) until the first success; the bisection itself is the same.
    got5 = np.array(run_bisection(1.0, HAND_OUTCOMES, grow=5.0))
    np.testing.assert_allclose(got5[:, :, 0], HAND_TIMES_5_FIRST, rtol=1e-6)
    np.testing.assert_allclose(got5[:, :, 1:], got[:, :, 1:], rtol=1e-6)  # succeeded at c = 1: no growth
    for e in range(3):
        assert reference_bisection(1.0, HAND_OUTCOMES[e]) == [tuple(map(float, t)) for t in HAND_TIMES_10[e]]


@pytest.mark.parametrize("grow", [10.0, 5.0])
def test_bisection_matches_reference_on_random_outcomes(grow):
    rng = np.random.default_rng(3)
    outcomes = rng.uniform(size=(12, 7)) < np.linspace(0.1, 0.9, 12)[:, None]  # mixed per example
    got = run_bisection(0.01, outcomes, grow=grow)
    for e in range(len(outcomes)):
        want = np.array(reference_bisection(0.01, outcomes[e], grow=grow))
        np.testing.assert_allclose([[c[e], lo[e], up[e]] for c, lo, up in got], want, rtol=1e-5)
