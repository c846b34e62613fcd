"""The attack registry: every name the CLI's ``--attack`` accepts, with its norms and options.

An attack is a function ``attack(model, x, y, threat, *, targeted=False, target=None, seed=None,
jit=False, **options) -> x_adv`` registered with :func:`register_attack`. Its own keyword-only
options (C&W's ``confidence``, EAD's ``beta``, ...) are read from its signature, so the CLI's
``-O key=value`` is validated against exactly what the function accepts.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

from advtf.attacks.threat import parse_number
from advtf.errors import UserError
from advtf.registry import Registry

# Keyword arguments every attack takes; the rest of its keyword-only parameters are "options".
COMMON_KEYWORDS = ("targeted", "target", "seed", "jit")


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """A registered attack.

    Attributes:
        name: registry name (the CLI choice).
        fn: the attack function.
        norms: threat-model norms it supports (the first is its natural one).
        summary: one line for ``--help`` and ``advtf attack --list``.
        options: the attack's own keyword options with their defaults.
        default_steps: iterations when the user gives none (``--steps`` omitted).
    """

    name: str
    fn: Callable
    norms: tuple[str, ...]
    summary: str
    options: dict[str, Any]
    default_steps: int = 10


ATTACKS: Registry[AttackSpec] = Registry("attack", "see `advtf attacks`")


def register_attack(name: str, *, norms: tuple[str, ...], summary: str, default_steps: int = 10):
    """Decorator registering an attack function under ``name``."""

    def decorate(fn):
        params = inspect.signature(fn).parameters.values()
        options = {p.name: p.default for p in params
                   if p.kind is p.KEYWORD_ONLY and p.name not in COMMON_KEYWORDS}
        ATTACKS.register(name, AttackSpec(name, fn, tuple(norms), summary, options, int(default_steps)))
        return fn

    return decorate


def attack_spec(name: str) -> AttackSpec:
    """The spec registered as ``name``; a UserError listing the names otherwise."""
    return ATTACKS.get(name)


def get_attack(name: str) -> Callable:
    """The attack function registered as ``name``."""
    return attack_spec(name).fn


def check_attack(name: str, norm: str, options: dict[str, Any] | None = None) -> AttackSpec:
    """Validates an attack name, its norm and its options before any work starts.

    Raises:
        UserError: unknown attack, a norm it does not support, or an unknown option.
    """
    spec = attack_spec(name)
    if norm not in spec.norms:
        raise UserError(f"attack {name} does not support --norm {norm}; use --norm {' or '.join(spec.norms)}")
    for key in options or {}:
        if key not in spec.options:
            known = ", ".join(spec.options) or "none"
            raise UserError(f"attack {name} has no option {key!r}; its options are: {known}")
    return spec


def coerce_options(name: str, raw: dict[str, str]) -> dict[str, Any]:
    """Converts ``-O key=value`` strings to the types of the attack's defaults."""
    spec = attack_spec(name)
    out = {}
    for key, text in raw.items():
        if key not in spec.options:
            known = ", ".join(spec.options) or "none"
            raise UserError(f"attack {name} has no option {key!r}; its options are: {known}")
        default = spec.options[key]
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise UserError(f"option {key} of {name} is true or false (got {text!r})")
            out[key] = text.lower() in ("true", "1", "yes")
        elif isinstance(default, int):
            try:
                out[key] = int(text)
            except ValueError:
                raise UserError(f"option {key} of {name} is an integer (got {text!r})") from None
        elif isinstance(default, float) or default is None:
            out[key] = parse_number(text, what=f"option {key} of {name}")
        else:
            out[key] = str(text)
    return out
