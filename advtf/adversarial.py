"""Attacking a whole dataset: adversarial examples with their per-example outcome, batch by batch.

``advtf attack`` saves what :func:`attack_batches` yields as an adversarial dataset; analyses
(CAM, PSR, frequency, response) iterate over it directly for natural/adversarial pairs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import numpy as np
import tensorflow as tf

from advtf.attacks import Threat, attack_outcome, attack_spec, check_attack, choose_targets
from advtf.attacks.losses import predictions
from advtf.errors import UserError
from advtf.models.precision import attack_view  # float16 models: input gradients without underflow

ATTACK_TARGETS = ("label", "prediction")


@dataclasses.dataclass(frozen=True)
class AttackRequest:
    """Which attack to run and on what.

    Attributes:
        name: registered attack name (``advtf.attacks.ATTACKS``).
        threat: norm, eps, steps, step size, restarts.
        options: the attack's own options (C&W's ``confidence``, EAD's ``beta``, ...).
        targeted: attack towards target classes chosen by ``target_mode``.
        target_mode: ``random`` (a class other than the label), ``next`` ((y+1) mod K) or ``given``.
        target_class: the class of ``target_mode="given"``.
        attack_target: untargeted attacks move away from the true ``label`` (evaluation) or from
            the model's clean ``prediction`` (as in training, avoids label leaking).
    """

    name: str
    threat: Threat
    options: dict = dataclasses.field(default_factory=dict)
    targeted: bool = False
    target_mode: str = "random"
    target_class: int | None = None
    attack_target: str = "label"

    def check(self, num_classes: int) -> None:
        """Validates everything that can be checked before any work (UserError otherwise)."""
        check_attack(self.name, self.threat.norm, self.options)
        if self.attack_target not in ATTACK_TARGETS:
            raise UserError(f"--attack-target must be label or prediction (got {self.attack_target!r})")
        if self.targeted:
            choose_targets(tf.zeros([1], tf.int32), num_classes, self.target_mode,
                           given=self.target_class)  # raises on an impossible choice
        elif self.target_mode == "given" or self.target_class is not None:
            raise UserError("--target-class only applies with --targeted")

    def to_json(self) -> dict[str, Any]:
        return {"attack": self.name, "threat": self.threat.to_json(), "options": dict(self.options),
                "targeted": self.targeted, "target_mode": self.target_mode if self.targeted else None,
                "target_class": self.target_class, "attack_target": self.attack_target}


def check_finite(x: np.ndarray, where: str) -> None:
    """UserError when images hold NaN or inf (an attack would silently produce garbage)."""
    if not np.all(np.isfinite(x)):
        bad = int((~np.isfinite(x)).reshape(len(x), -1).any(axis=1).sum())
        raise UserError(f"{where}: {bad} image(s) contain NaN or inf values; fix or re-create the dataset")


def attack_batches(model, batches: tf.data.Dataset, request: AttackRequest, *, num_classes: int, seed: int = 0,
                   jit: bool = False, progress=None, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Attacks every ``(x, y)`` batch; yields numpy dicts of per-example results.

    Batch ``i`` is seeded with ``[seed, start + i]``: a job resuming at global batch ``start``
    draws what an uninterrupted run draws there.

    Each dict holds ``natural``, ``image`` (adversarial), ``label``, ``target`` (the class attacked
    towards when targeted, else the label moved away from), ``success``, ``clean_prediction``,
    ``adversarial_prediction``, ``clean_correct``, ``adversarial_correct`` and the norms ``l0``,
    ``l1``, ``l2``, ``linf`` of the perturbation.
    """
    request.check(num_classes)
    fn = attack_spec(request.name).fn
    for i, (x, y) in enumerate(batches, start):
        x_np = x.numpy()
        check_finite(x_np, f"batch {i}")
        y = tf.cast(y, tf.int32)
        batch_seed = tf.constant([seed, i], tf.int64)
        if request.targeted:
            label = choose_targets(y, num_classes, request.target_mode, seed=batch_seed + 1,
                                   given=request.target_class)
        elif request.attack_target == "prediction":
            label = predictions(model(x, training=False))
        else:
            label = y
        x_adv = fn(attack_view(model), x, label, request.threat, targeted=request.targeted,
                   target=label if request.targeted else None, seed=batch_seed, jit=jit, **request.options)
        outcome = attack_outcome(model, x, x_adv, label, targeted=request.targeted, target=label)
        row = {k: v.numpy() for k, v in outcome.items()}
        # attack_outcome compared predictions with `label`; correctness is always against y.
        y_np = y.numpy()
        row["clean_correct"] = row["clean_prediction"] == y_np
        row["adversarial_correct"] = row["adversarial_prediction"] == y_np
        row.update(natural=x_np, image=x_adv.numpy(), label=y_np, target=label.numpy())
        if progress is not None:
            progress.update(len(y_np))
        yield row


def summarize(rows: dict[str, np.ndarray], *, targeted: bool) -> dict[str, Any]:
    """Success rate, accuracy before/after and norm statistics of concatenated per-example rows."""
    n = int(len(rows["label"]))
    success = rows["success"].astype(bool)
    attackable = rows["target"] != rows["label"] if targeted else np.ones(n, bool)
    correct = rows["clean_correct"].astype(bool)
    out: dict[str, Any] = {
        "n": n,
        "clean_accuracy": float(correct.mean()) if n else 0.0,
        "adversarial_accuracy": float(rows["adversarial_correct"].mean()) if n else 0.0,
        "robust_accuracy": float((correct & rows["adversarial_correct"]).mean()) if n else 0.0,
        "success_rate": _rate(success, attackable),
        "success_rate_on_correct": _rate(success, attackable & correct),
        "n_attackable": int(attackable.sum()),
        "norms": {},
    }
    for norm in ("l0", "l1", "l2", "linf"):
        values = rows[norm].astype(float)
        ok = values[success & attackable]
        out["norms"][norm] = {
            "mean": float(values.mean()) if n else None, "median": float(np.median(values)) if n else None,
            "mean_successful": float(ok.mean()) if len(ok) else None,
            "median_successful": float(np.median(ok)) if len(ok) else None,
        }
    return out


def _rate(flags: np.ndarray, mask: np.ndarray) -> float | None:
    return float(flags[mask].mean()) if mask.any() else None
