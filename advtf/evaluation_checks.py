"""Checks that flag an unreliable robustness evaluation, after the ones AutoAttack runs.

Croce & Hein 2020 ship AutoAttack with automatic checks (their ``checks.py`` and ``flags_doc.md``)
because a robust accuracy is only as good as the attack behind it: a model that outputs
probabilities, a randomised defence, masked gradients, a weaker attack beating the evaluated one
(Carlini et al. 2019's red flag) or APGD-T asked for more target classes than exist. Each check
here takes a model and tensors and returns a :class:`Finding` or ``None``; :func:`run_checks`
runs the ones that apply to an evaluation. Pure: no file I/O.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

from advtf.attacks import Threat, attack_spec, get_attack
from advtf.attacks.losses import cross_entropy
from advtf.models.precision import attack_view  # float16: gradients as the evaluation sees them

CHECKS = ("probabilities", "randomness", "masked-gradients", "inconsistent-attacks", "too-few-classes")
# Outputs within this of [0, 1] and of summing to 1 count as probabilities (AutoAttack's 1e-5).
PROBABILITY_TOLERANCE = 1e-5
# Two passes differ when a prediction changes or an example's L2-normalised outputs move by more
# than this (AutoAttack's 1e-4).
RANDOMNESS_TOLERANCE = 1e-4
# Share of images with a zero or non-finite input gradient above which gradients count as masked.
# AutoAttack warns on any single image; a share keeps one saturated example among many from
# raising it, and on fewer than 100 checked images one image is already above it.
MASKED_SHARE = 0.01
# Share of the checked images by which a weaker attack may out-fool the evaluated one before the
# evaluation counts as inconsistent (AutoAttack's threshold for Square beating the white-box attacks).
INCONSISTENT_SHARE = 0.002
# The weaker PGD runs at most this many steps (and at most half the evaluated attack's).
WEAK_PGD_STEPS = 10
# APGD-T's targeted DLR loss (Croce & Hein 2020, Eq. 7) reads the 4 largest logits.
DLR_TARGETED_CLASSES = 4


@dataclasses.dataclass(frozen=True)
class Finding:
    """One warning: the check's name, a one-line message naming problem and fix, and the numbers."""

    check: str
    message: str
    measured: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "message": self.message, "measured": dict(self.measured)}


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """Which checks ran and what they found (an empty ``warnings`` means all passed)."""

    checks: tuple[str, ...]
    warnings: tuple[Finding, ...]

    def to_json(self) -> dict[str, Any]:
        return {"checks": list(self.checks), "warnings": [w.to_json() for w in self.warnings]}


def probability_outputs(outputs) -> Finding | None:
    """Outputs that are already probabilities (in [0, 1], rows summing to 1): attacks want logits.

    The cross-entropy the attacks ascend then applies a second softmax, whose gradients are
    flat, and the evaluation overestimates robustness.
    """
    out = np.asarray(outputs, np.float64)
    low, high = float(out.min()), float(out.max())
    sum_error = float(np.max(np.abs(out.sum(-1) - 1.0)))
    tol = PROBABILITY_TOLERANCE
    if low > -tol and high < 1.0 + tol and sum_error < tol:
        return Finding("probabilities",
                       f"the model outputs probabilities, not logits (every output in [{low:.2g}, {high:.2g}], rows "
                       f"sum to 1 within {sum_error:.1g}): the cross-entropy attacks see softmax of softmax and are "
                       "weakened; evaluate the model without its final softmax",
                       {"min_output": low, "max_output": high, "max_sum_error": sum_error})
    return None


def randomness(model, x, passes: int = 2) -> Finding | None:
    """Forward passes of one batch (``training=False``) that differ: a randomised defence.

    Attacks then chase noise; such a model needs expectation over transformation (EOT,
    Athalye et al. 2018) and a report that its accuracy is random.
    """
    outputs = [np.asarray(model(x, training=False), np.float64) for _ in range(max(int(passes), 2))]
    unit = [o / (np.linalg.norm(o, axis=-1, keepdims=True) + 1e-10) for o in outputs]
    preds = [o.argmax(-1) for o in outputs]
    largest = max(float(np.linalg.norm(a - b, axis=-1).max()) for i, a in enumerate(unit) for b in unit[i + 1:])
    changed = max(int(np.sum(a != b)) for i, a in enumerate(preds) for b in preds[i + 1:])
    if changed > 0 or largest > RANDOMNESS_TOLERANCE:
        return Finding("randomness",
                       f"{len(outputs)} forward passes of the same {len(outputs[0])} images (training=False) differ "
                       f"({changed} predictions changed, normalised outputs moved by up to {largest:.2g}): a "
                       "randomised defence; attack it with expectation over transformation (EOT) and report the "
                       "spread of robust accuracy over runs",
                       {"passes": len(outputs), "changed_predictions": changed, "max_output_change": largest})
    return None


def input_gradients(model, x, y):
    """Gradient of the cross-entropy (outputs taken as logits, as the attacks do) w.r.t. ``x``."""
    x = tf.convert_to_tensor(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(cross_entropy(model(x, training=False), tf.cast(y, tf.int32)))
    grad = tape.gradient(loss, x)
    return tf.zeros_like(x) if grad is None else grad  # None: nothing differentiable reaches the input


def masked_gradients(model, x, y) -> Finding | None:
    """More than ``MASKED_SHARE`` of the images with a zero or non-finite input gradient.

    Gradient attacks cannot move from such points (stop_gradient, rounding or quantising layers,
    saturated losses), so robust accuracy is overestimated.
    """
    grad = np.asarray(input_gradients(model, x, y), np.float64).reshape(len(x), -1)
    finite = np.all(np.isfinite(grad), axis=-1)
    zero = finite & (np.sum(np.abs(grad), axis=-1) == 0)
    masked = int(np.sum(zero | ~finite))
    share = masked / max(len(grad), 1)
    if share > MASKED_SHARE:
        return Finding("masked-gradients",
                       f"{masked} of {len(grad)} images ({share:.0%}; warning above {MASKED_SHARE:.0%}) have a zero "
                       f"({int(zero.sum())}) or non-finite ({int((~finite).sum())}) input gradient of the "
                       "cross-entropy: masked gradients (stop_gradient, rounding or quantisation) stall gradient "
                       "attacks; attack with BPDA or a gradient-free attack before trusting robust accuracy",
                       {"images": len(grad), "masked": masked, "zero": int(zero.sum()),
                        "non_finite": int((~finite).sum()), "share": share, "threshold": MASKED_SHARE})
    return None


def weaker_attacks(attack: str, threat: Threat) -> dict[str, Threat]:
    """The weaker attacks the evaluated one must beat: FGSM at the same eps, and PGD with fewer steps.

    Empty for an l1 threat (FGSM and PGD are linf/l2) and for FGSM itself.
    """
    if threat.norm not in ("linf", "l2") or attack == "fgsm":
        return {}
    out = {"fgsm": dataclasses.replace(threat, steps=1, step_size=threat.eps, restarts=1, random_start=False)}
    steps = min(WEAK_PGD_STEPS, int(threat.steps) // 2)
    if steps >= 1:  # default step size 2.5 eps / steps, one random start
        out[f"pgd-{steps}"] = Threat(norm=threat.norm, eps=threat.eps, steps=steps)
    return out


def _fooled(model, x, y, x_adv):
    """Examples classified correctly clean and wrongly at ``x_adv``."""
    clean = np.asarray(tf.argmax(model(x, training=False), -1)) == y
    adv = np.asarray(tf.argmax(model(x_adv, training=False), -1)) == y
    return clean & ~adv


def compare_attacks(evaluated, weaker: dict, label: str) -> Finding | None:
    """The inconsistency finding, from per-example "fooled" masks of the evaluated and weaker attacks.

    Flags when a weaker attack fools more of the checked images than the evaluated one, by more
    than ``INCONSISTENT_SHARE`` of them (AutoAttack's rule for Square beating the white-box
    attacks). Images fooled only by a weaker attack are counted and reported, but a few of them
    alone are not flagged: two attacks with random starts rarely fool exactly the same images
    (on a trained digits CNN, PGD-10 fooled 1 of 64 images PGD-20 missed, and 28 in all, as PGD-20 did).
    """
    evaluated = np.asarray(evaluated, bool)
    n = max(len(evaluated), 1)
    fooled = {name: int(np.sum(mask)) for name, mask in weaker.items()}
    only = {name: int(np.sum(np.asarray(mask, bool) & ~evaluated)) for name, mask in weaker.items()}
    either = np.zeros_like(evaluated)
    for mask in weaker.values():
        either |= np.asarray(mask, bool) & ~evaluated
    worst = max(fooled, key=fooled.get)
    excess = (fooled[worst] - int(evaluated.sum())) / n
    if excess <= INCONSISTENT_SHARE:
        return None
    detail = ", ".join(f"{name}: {k}" for name, k in only.items())
    return Finding("inconsistent-attacks",
                   f"{worst} fooled {fooled[worst]} of {len(evaluated)} checked images, more than {label} "
                   f"({int(evaluated.sum())}); {int(either.sum())} were fooled only by a weaker attack ({detail}): "
                   "the evaluated attack is too weak or mis-configured; raise its steps, restarts or step size "
                   "(or use autoattack-lite) before trusting robust accuracy",
                   {"images": len(evaluated), "evaluated_fooled": int(evaluated.sum()),
                    **{f"fooled_{k}": v for k, v in fooled.items()}, "only_weaker": int(either.sum()),
                    **{f"only_{k}": v for k, v in only.items()}, "excess_share": excess,
                    "threshold": INCONSISTENT_SHARE})


def inconsistent_attacks(model, x, y, *, threat: Threat, attack: str, options: dict | None = None, seed: int = 0,
                         jit: bool = False) -> Finding | None:
    """Weaker attacks (:func:`weaker_attacks`) fooling more images than the evaluated one.

    Carlini et al. 2019 list this as a sign of a broken evaluation: the evaluated attack is too
    weak or mis-configured (step size, steps, loss). Runs the evaluated attack once more on ``x``
    plus each weaker attack, then :func:`compare_attacks`.
    """
    weak = weaker_attacks(attack, threat)
    if not weak:
        return None
    x = tf.convert_to_tensor(x, tf.float32)
    y_np = np.asarray(y).astype(np.int32)
    y = tf.constant(y_np)
    x_adv = get_attack(attack)(model, x, y, threat, seed=tf.constant([seed, 0], tf.int64), jit=jit, **(options or {}))
    evaluated = _fooled(model, x, y_np, x_adv)
    weaker = {name: _fooled(model, x, y_np, get_attack("pgd")(model, x, y, weak_threat,
                                                               seed=tf.constant([seed, i], tf.int64)))
              for i, (name, weak_threat) in enumerate(weak.items(), start=1)}
    return compare_attacks(evaluated, weaker, f"{attack}-{threat.steps}")


def too_few_classes(attack: str, num_classes: int, options: dict | None = None) -> Finding | None:
    """APGD-T asked for more target classes than the model has (``n_targets + 1 > classes``).

    APGD-T then silently tries fewer targets than requested, and with fewer than 4 classes its
    targeted DLR loss is undefined. ``None`` for attacks without ``n_targets``.
    """
    defaults = attack_spec(attack).options
    if "n_targets" not in defaults:
        return None
    n_targets = int((options or {}).get("n_targets", defaults["n_targets"]))
    k = int(num_classes)
    if n_targets + 1 <= k and k >= DLR_TARGETED_CLASSES:
        return None
    possible = max(k - 1, 0)
    if k < DLR_TARGETED_CLASSES:
        fix = f"the targeted DLR loss needs at least {DLR_TARGETED_CLASSES} classes; use apgd-ce"
    else:
        fix = f"it runs only {possible}; pass -O n_targets={possible}"
    return Finding("too-few-classes",
                   f"{attack} asks for n_targets={n_targets} target classes but the model has {k} classes "
                   f"(at most {possible} targets): {fix}",
                   {"num_classes": k, "n_targets": n_targets, "possible_targets": possible})


def run_checks(model, x, y, *, threat: Threat, attack: str, num_classes: int, options: dict | None = None,
               seed: int = 0, jit: bool = False) -> CheckReport:
    """Runs every check that applies to evaluating ``model`` with ``attack`` on the images ``x``, ``y``.

    Cost: three forward passes and one gradient of ``x``, plus (for linf/l2 attacks other than FGSM)
    the evaluated attack, an FGSM and a PGD of at most 10 steps on ``x``.
    """
    ran, found = [], []

    def record(name, finding):
        ran.append(name)
        if finding is not None:
            found.append(finding)

    x = tf.convert_to_tensor(x, tf.float32)
    record("probabilities", probability_outputs(model(x, training=False)))
    record("randomness", randomness(model, x))
    attacked = attack_view(model)  # a float16 model's input gradients scaled as the evaluation's attack scales them
    record("masked-gradients", masked_gradients(attacked, x, y))
    classes = None
    if "n_targets" in attack_spec(attack).options:
        classes = too_few_classes(attack, num_classes, options)
        record("too-few-classes", classes)
    attack_runs = classes is None or num_classes >= DLR_TARGETED_CLASSES
    if weaker_attacks(attack, threat) and attack_runs:
        record("inconsistent-attacks", inconsistent_attacks(attacked, x, y, threat=threat, attack=attack,
                                                               options=options, seed=seed, jit=jit))
    order = {name: i for i, name in enumerate(CHECKS)}
    return CheckReport(tuple(sorted(ran, key=order.get)), tuple(found))
