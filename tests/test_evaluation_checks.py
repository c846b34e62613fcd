"""Each reliability check fires on a tiny model built to trip it, and stays quiet on a normal one.

Expected numbers come from numpy on the same weights (softmax sums, a linear model's FGSM), not from
the module under test.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from advtf.attacks import Threat
from advtf.evaluation_checks import (CHECKS, INCONSISTENT_SHARE, MASKED_SHARE, compare_attacks, inconsistent_attacks,
                                     masked_gradients, probability_outputs, randomness, run_checks, too_few_classes,
                                     weaker_attacks)

SHAPE = (4, 4, 1)
GOOD_PGD = Threat(norm="linf", eps=0.1, steps=10)


class AlwaysDropout(keras.layers.Layer):
    """Dropout that also runs at inference (a randomised defence), without a Lambda."""

    def __init__(self, rate=0.5, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed_generator = keras.random.SeedGenerator(1)

    def call(self, x, training=None):
        return keras.random.dropout(x, self.rate, seed=self.seed_generator)


class StopGradient(keras.layers.Layer):
    def call(self, x):
        return tf.stop_gradient(x)


class Quantise(keras.layers.Layer):
    """Rounds to 8 grey levels, a classic gradient-masking "defence"."""

    def call(self, x):
        return tf.round(x * 7.0) / 7.0


class Gate(keras.layers.Layer):
    """Zeroes an example whose first pixel is <= 0.5 (through a comparison, so no gradient reaches x)."""

    def call(self, x):
        return x * tf.cast(x[:, :1] > 0.5, x.dtype)


class Sqrt(keras.layers.Layer):
    def call(self, x):
        return tf.sqrt(x)


def linear(classes=3, *, before=(), after=(), activation=None, seed=0):
    """Flatten -> [before] -> Dense(classes) -> [after] with fixed numpy weights; returns the model and (W, b)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(int(np.prod(SHAPE)), classes)).astype(np.float32)
    b = rng.normal(size=(classes,)).astype(np.float32) * 0.1
    inputs = keras.Input(SHAPE)
    h = keras.layers.Flatten()(inputs)
    for layer in before:
        h = layer(h)
    dense = keras.layers.Dense(classes, activation=activation)
    h = dense(h)
    for layer in after:
        h = layer(h)
    dense.set_weights([w, b])
    return keras.Model(inputs, h), (w, b)


def images(n=40, seed=1):
    return np.random.default_rng(seed).uniform(size=(n, *SHAPE)).astype(np.float32)


def own_labels(model, x):
    """Labels the model predicts clean, so every example starts correctly classified."""
    return np.asarray(tf.argmax(model(x), -1), np.int32)


# --- probabilities --------------------------------------------------------------------------------------


def test_softmax_head_is_flagged_and_the_logits_model_is_not():
    x = images()
    probs, (w, b) = linear(activation="softmax")
    logits, _ = linear()
    z = x.reshape(len(x), -1) @ w + b
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(probs(x), p, atol=1e-6)  # the model really is a softmax head
    finding = probability_outputs(probs(x))
    assert finding is not None and finding.check == "probabilities" and "logits" in finding.message
    assert finding.measured["max_sum_error"] < 1e-5 and 0 <= finding.measured["min_output"]
    assert probability_outputs(logits(x)) is None


def test_outputs_in_the_unit_interval_that_do_not_sum_to_one_are_not_probabilities():
    sigmoid, _ = linear(activation="sigmoid")
    out = np.asarray(sigmoid(images()))
    assert out.min() >= 0 and out.max() <= 1 and np.abs(out.sum(-1) - 1).max() > 0.1
    assert probability_outputs(out) is None
    assert probability_outputs(np.array([[0.5, 0.5 + 2e-5]])) is None  # off by more than the tolerance


# --- randomness -----------------------------------------------------------------------------------------


def test_dropout_at_inference_is_flagged_and_keras_dropout_is_not():
    x = images()
    noisy, _ = linear(before=(keras.layers.Dense(16, activation="relu"), AlwaysDropout(0.5)))
    finding = randomness(noisy, x)
    assert finding is not None and finding.check == "randomness" and "EOT" in finding.message
    assert finding.measured["max_output_change"] > 1e-2
    plain, _ = linear(before=(keras.layers.Dense(16, activation="relu"), keras.layers.Dropout(0.5)))
    assert randomness(plain, x) is None  # Keras Dropout is off at training=False


# --- masked gradients -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", [StopGradient, Quantise], ids=["stop_gradient", "quantise"])
def test_a_layer_without_gradients_is_flagged(layer):
    x = images()
    model, _ = linear(before=(layer(),))
    finding = masked_gradients(model, x, own_labels(model, x))
    assert finding is not None and finding.check == "masked-gradients"
    assert finding.measured["masked"] == finding.measured["zero"] == len(x) and finding.measured["share"] == 1.0


def test_a_normal_model_has_no_masked_gradients():
    x = images()
    model, _ = linear()
    assert masked_gradients(model, x, own_labels(model, x)) is None


@pytest.mark.parametrize("gated", [2, 3])
def test_masked_share_threshold_is_more_than_one_percent(gated):
    """200 images, ``gated`` of them with the first pixel 0 (zero gradient): 2 is 1% (quiet), 3 is 1.5% (flagged)."""
    x = images(200)
    x[:, 0, 0, 0] = 1.0
    x[:gated, 0, 0, 0] = 0.0
    model, _ = linear(before=(Gate(),))
    finding = masked_gradients(model, x, own_labels(model, x))
    assert MASKED_SHARE == 0.01
    if gated * 100 <= 200:
        assert finding is None
    else:
        assert finding is not None and finding.measured["masked"] == gated and finding.measured["non_finite"] == 0


def test_non_finite_gradients_count_as_masked():
    x = images(20)
    x[:5, 0, 0, 0] = 0.0  # d sqrt(x)/dx is infinite at 0
    model, _ = linear(before=(Sqrt(),))
    finding = masked_gradients(model, x, own_labels(model, x))
    assert finding is not None and finding.measured["non_finite"] == 5 and finding.measured["zero"] == 0


# --- inconsistent attacks -------------------------------------------------------------------------------


def numpy_fgsm_fooled(w, b, x, y, eps):
    """Images a linear model's linf FGSM (sign of the cross-entropy gradient W (p - onehot)) fools, in numpy."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    z = flat @ w + b
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    grad = (p - np.eye(w.shape[1])[y]) @ w.T
    adv = np.clip(flat + eps * np.sign(grad), 0, 1)
    return (adv @ w + b).argmax(-1) != y


@pytest.fixture(scope="module")
def linear3():
    """One linear 3-class model for the attack checks (one trace per attack configuration, shared)."""
    return linear(seed=3)


def test_a_strong_attack_with_a_tiny_step_that_fgsm_beats_is_flagged(linear3):
    x = images(40)
    model, (w, b) = linear3
    y = own_labels(model, x)
    eps = 0.1
    expected = numpy_fgsm_fooled(w, b, x, y, eps)
    assert 0 < expected.sum() < len(x)
    crippled = Threat(norm="linf", eps=eps, steps=4, step_size=1e-7, random_start=False)
    finding = inconsistent_attacks(model, x, y, threat=crippled, attack="pgd", seed=0)
    assert finding is not None and finding.check == "inconsistent-attacks"
    assert finding.measured["evaluated_fooled"] == 0  # 4 steps of 1e-7 flip nothing here
    assert finding.measured["fooled_fgsm"] == finding.measured["only_fgsm"] == int(expected.sum())
    assert finding.measured["only_weaker"] >= finding.measured["only_fgsm"]
    assert "fgsm: " in finding.message and "pgd-2: " in finding.message


def test_a_well_configured_pgd_is_consistent(linear3):
    x = images(40)
    model, (w, b) = linear3
    y = own_labels(model, x)
    eps = 0.1
    assert numpy_fgsm_fooled(w, b, x, y, eps).sum() > 0  # FGSM does fool some: there is something to compare
    assert inconsistent_attacks(model, x, y, threat=GOOD_PGD, attack="pgd", seed=0) is None


def fooled_mask(n, *indices):
    mask = np.zeros(n, bool)
    mask[list(indices)] = True
    return mask


def test_images_fooled_only_by_a_weaker_attack_alone_are_not_flagged():
    """Random starts differ: FGSM fooling image 4 that the evaluated attack missed, while fooling fewer, is noise."""
    evaluated = fooled_mask(64, 0, 1, 2, 3)
    assert compare_attacks(evaluated, {"fgsm": fooled_mask(64, 0, 4)}, "pgd-20") is None


@pytest.mark.parametrize("extra, flagged", [(0, False), (2, False), (3, True)])
def test_a_weaker_attack_fooling_more_than_the_threshold_is_flagged(extra, flagged):
    """1000 images, the evaluated attack fools 500; FGSM fools those plus ``extra``: 0.2% (2) is allowed, 3 is not."""
    evaluated = fooled_mask(1000, *range(500))
    weak = fooled_mask(1000, *range(500 + extra))
    finding = compare_attacks(evaluated, {"fgsm": weak, "pgd-10": evaluated}, "pgd-20")
    assert (finding is not None) == flagged
    if flagged:
        assert finding.measured["only_weaker"] == finding.measured["only_fgsm"] == 3
        assert finding.measured["fooled_fgsm"] == 503 and finding.measured["evaluated_fooled"] == 500
        assert finding.measured["excess_share"] == pytest.approx(0.003)
        assert finding.message.startswith("fgsm fooled 503 of 1000 checked images, more than pgd-20 (500)")


def test_weaker_attacks_are_fgsm_and_a_shorter_pgd():
    weak = weaker_attacks("apgd-ce", Threat(norm="l2", eps=0.5, steps=100))
    assert list(weak) == ["fgsm", "pgd-10"]
    assert weak["fgsm"].steps == 1 and weak["fgsm"].step_size == 0.5 and not weak["fgsm"].random_start
    assert weak["pgd-10"].steps == 10 and weak["pgd-10"].step_size is None and weak["pgd-10"].eps == 0.5
    assert list(weaker_attacks("pgd", Threat(norm="linf", eps=0.1, steps=1))) == ["fgsm"]
    assert weaker_attacks("fgsm", Threat(norm="linf", eps=0.1, steps=1)) == {}
    assert weaker_attacks("ead", Threat(norm="l1", eps=10.0, steps=10)) == {}
    assert INCONSISTENT_SHARE == 0.002


# --- too few classes ------------------------------------------------------------------------------------


def test_targeted_apgd_with_more_targets_than_classes_is_flagged():
    three = too_few_classes("apgd-dlr", 3, {"n_targets": 9})
    assert three is not None and three.check == "too-few-classes"
    assert three.measured == {"num_classes": 3, "n_targets": 9, "possible_targets": 2}
    assert "apgd-ce" in three.message  # the targeted DLR loss needs 4 classes
    five = too_few_classes("autoattack-lite", 5, {"n_targets": 9})
    assert five is not None and "-O n_targets=4" in five.message


def test_enough_classes_or_no_targets_is_quiet():
    assert too_few_classes("apgd-dlr", 10, {"n_targets": 9}) is None
    assert too_few_classes("apgd-dlr", 4, {}) is None  # default n_targets=3, 3 + 1 <= 4
    assert too_few_classes("pgd", 3, {}) is None


# --- all together ---------------------------------------------------------------------------------------


def test_run_checks_on_a_normal_model_runs_four_checks_and_finds_nothing(linear3):
    x = images(40)
    model, _ = linear3
    report = run_checks(model, x, own_labels(model, x), threat=GOOD_PGD,
                        attack="pgd", num_classes=3, seed=0)
    assert report.checks == ("probabilities", "randomness", "masked-gradients", "inconsistent-attacks")
    assert report.to_json() == {"checks": list(report.checks), "warnings": []}


def test_run_checks_with_apgd_t_on_three_classes_warns_and_does_not_attack():
    x = images(10)
    model, _ = linear(classes=3, activation="softmax")
    report = run_checks(model, x, own_labels(model, x), threat=Threat(norm="linf", eps=0.1, steps=10),
                        attack="apgd-dlr", num_classes=3, options={"n_targets": 9}, seed=0)
    assert report.checks == ("probabilities", "randomness", "masked-gradients", "too-few-classes")
    assert [w.check for w in report.warnings] == ["probabilities", "too-few-classes"]
    assert set(report.checks) <= set(CHECKS)
