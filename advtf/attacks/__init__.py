"""Attacks: pure, compiled functions ``attack(model, x, y, threat, *, targeted, target) -> x_adv``."""

from __future__ import annotations

from advtf.attacks.iterative import fast_fgsm, fgsm, pgd
from advtf.attacks.threat import NORMS, Threat, parse_number, per_example_norm
from advtf.errors import UserError

ATTACKS = {"pgd": pgd, "fgsm": fgsm}


def get_attack(name: str):
    """The attack function registered as ``name``."""
    try:
        return ATTACKS[name]
    except KeyError:
        raise UserError(f"unknown attack {name!r}; choose one of: {', '.join(ATTACKS)}") from None


__all__ = ["ATTACKS", "NORMS", "Threat", "fast_fgsm", "fgsm", "get_attack", "parse_number", "per_example_norm", "pgd"]
