"""Verdict rules and measured quantities on hand-made numbers (no steps run)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from advtf.errors import UserError
from advtf.jobs.reproduce.preset import Claim, Rule, parse_measure
from advtf.jobs.reproduce.verdict import decide, judge


def claim(measure="s:x", holds="> 0.05", weaker="> 0"):
    return Claim("c", "statement", "1.0", "Table 1", measure, parse_measure(measure, "test"),
                 Rule.parse(holds, "test"), Rule.parse(weaker, "test") if weaker else None)


@pytest.mark.parametrize("value, verdict", [
    (0.06, "holds"), (0.05, "weaker"), (0.01, "weaker"), (0.0, "does not hold"), (-0.3, "does not hold"),
    (None, "not measured"), (math.nan, "not measured"), (math.inf, "not measured"),
])
def test_threshold_with_a_weaker_band(value, verdict):
    assert decide(claim(), value) == verdict


@pytest.mark.parametrize("holds, value, verdict", [
    ("<= 0", 0.0, "holds"), ("<= 0", 1e-9, "does not hold"), ("< -1", -1.0, "does not hold"),
    (">= 2.5", 2.5, "holds"), ("> 1e-3", 0.002, "holds"),
])
def test_sign_and_threshold_rules_without_weaker(holds, value, verdict):
    assert decide(claim(holds=holds, weaker=None), value) == verdict


def test_measures_add_and_subtract_paths_and_numbers():
    results = {"t": {"accuracy": {"standard (indep.)": {"R_eps": 0.7, "R_0": 0.4}}, "chance": 0.1},
               "u": {"rows": [{"v": 2.0}, {"v": -1.5}]}}
    c = claim("t:accuracy/standard (indep.)/R_eps - t:accuracy/standard (indep.)/R_0 + u:rows/1/v - 0.25")
    (outcome,) = judge([c], results.get)
    assert outcome.value == pytest.approx(0.7 - 0.4 - 1.5 - 0.25)
    assert outcome.verdict == "does not hold"


@pytest.mark.parametrize("results, note", [
    ({}, "step t has no results"),
    ({"t": {"a": 1}}, "missing key 'b'"),
    ({"t": {"a": {"b": "text"}}}, "not a finite number"),
    ({"t": {"a": {"b": True}}}, "not a finite number"),
    ({"t": {"a": {"b": None}}}, "not a finite number"),
])
def test_a_missing_or_non_numeric_value_is_not_measured(results, note):
    (outcome,) = judge([claim("t:a/b")], results.get)
    assert outcome.verdict == "not measured" and outcome.value is None and note in outcome.note


@pytest.mark.parametrize("rule", ["> x", "=> 1", "", "0.5", "> inf", "> nan", "~ 3"])
def test_malformed_rules_are_refused(rule):
    with pytest.raises(UserError):
        Rule.parse(rule, "claim c: holds")


@pytest.mark.parametrize("measure", ["", "t:", ":a", "t:a//b", "3 4", "T:a"])
def test_malformed_measures_are_refused(measure):
    with pytest.raises(UserError):
        parse_measure(measure, "claim c")


def test_every_shipped_claim_names_where_the_paper_states_it():
    from advtf.jobs.reproduce.preset import PAPERS, load_preset

    for paper in PAPERS:
        preset = load_preset(paper)
        assert preset.claims, paper
        for c in preset.claims:
            assert c.where and c.paper_value and c.statement
            assert "papers/" not in c.statement + c.where + c.paper_value + preset.title
        assert Path(preset.source).name == f"{paper}.toml"
