"""Attacks: pure, compiled functions ``attack(model, x, y, threat, *, targeted, target) -> x_adv``.

Every registered attack returns images inside ``threat``'s ball and [0, 1]; the registry
(:data:`ATTACKS`) holds the names the CLI's ``--attack`` accepts.
"""

from __future__ import annotations

# Importing a family registers its attacks.
from advtf.attacks import apgd, cw, ead, structured  # noqa: F401
from advtf.attacks.iterative import fast_fgsm, fgsm, ifgsm, pgd
from advtf.attacks.outcome import NORM_NAMES, attack_outcome
from advtf.attacks.registry import ATTACKS, AttackSpec, attack_spec, check_attack, coerce_options, get_attack
from advtf.attacks.targets import TARGET_MODES, choose_targets
from advtf.attacks.threat import NORMS, Threat, clip_to_threat, parse_number, per_example_norm

__all__ = ["ATTACKS", "AttackSpec", "NORMS", "NORM_NAMES", "TARGET_MODES", "Threat", "attack_outcome", "attack_spec",
           "check_attack", "choose_targets", "clip_to_threat", "coerce_options", "fast_fgsm", "fgsm", "get_attack",
           "ifgsm", "parse_number", "per_example_norm", "pgd"]
