"""Claims decided by their preset rules: the measured value from steps' results.json, then the verdict.

A verdict is ``holds`` when the ``holds`` rule is true, ``weaker`` when only the ``weaker`` rule is,
``does not hold`` otherwise, and ``not measured`` when a step did not run or a path is missing or not a
finite number. The rules are fixed in the preset before any run; nothing here looks at the numbers
to choose them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from advtf.jobs.reproduce.preset import Claim, expand_measure, fill_measure


@dataclass(frozen=True)
class Outcome:
    claim: Claim
    value: float | None
    verdict: str
    note: str = ""
    measured: str = ""  # the measure at this budget (its {var}s filled)


def lookup(results: Any, path: tuple[str, ...]) -> Any:
    """``results[path[0]][path[1]]...``; list items by index. KeyError when absent."""
    value = results
    for key in path:
        if isinstance(value, list):
            try:
                value = value[int(key)]
            except (ValueError, IndexError):
                raise KeyError(key) from None
        elif isinstance(value, dict) and key in value:
            value = value[key]
        else:
            raise KeyError(key)
    return value


def measure(claim: Claim, results_of: Callable[[str], dict | None],
            variables: dict | None = None) -> tuple[float | None, str]:
    """The claim's measured value (``{var}``s from the budget's ``variables``) and, when it is None, why."""
    total = 0.0
    for term in expand_measure(claim, variables or {}):
        if term.step is None:
            total += term.sign * term.number
            continue
        results = results_of(term.step)
        if results is None:
            return None, f"step {term.step} has no results"
        try:
            value = lookup(results, term.path)
        except KeyError as e:
            return None, f"{term.step}: no {'/'.join(term.path)} (missing key {e.args[0]!r})"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None, f"{term.step}: {'/'.join(term.path)} is not a finite number ({value!r})"
        total += term.sign * float(value)
    return total, ""


def decide(claim: Claim, value: float | None) -> str:
    """The verdict of the claim's rules on ``value``."""
    if value is None or not math.isfinite(value):
        return "not measured"
    if claim.holds.test(value):
        return "holds"
    if claim.weaker is not None and claim.weaker.test(value):
        return "weaker"
    return "does not hold"


def judge(claims, results_of: Callable[[str], dict | None], variables: dict | None = None) -> list[Outcome]:
    outcomes = []
    for claim in claims:
        value, note = measure(claim, results_of, variables)
        outcomes.append(Outcome(claim, value, decide(claim, value), note, fill_measure(claim, variables or {})))
    return outcomes


def rule_text(claim: Claim) -> str:
    text = f"holds if {claim.holds}"
    if claim.weaker is not None:
        text += f"; weaker if {claim.weaker}"
    return text
