"""Bad input to ``advtf evaluate``, ``attack``, ``robust-table`` and ``transfer-eval``: exit 2, one short
message, no traceback, and nothing left where --out would be."""

import pytest
from test_attack_cli import assert_user_error, run  # the shared CliRunner helpers

DATA = ["--dataset", "digits", "--test-subset", "8", "--quiet"]


def _evaluate(m, *args):
    return ["evaluate", m, *DATA, "--steps", "1", *args]


def _attack(m, *args):
    return ["attack", m, *DATA, "--steps", "1", *args]


def _table(m, *args):
    return ["robust-table", "--classifier", f"a={m}", "--testset", "Test=digits", "--test-subset", "8", "--quiet",
            *args]


def _transfer(m, *args):
    return ["transfer-eval", "--source", f"0={m}", "--victim", f"v={m}", *DATA, "--steps", "1", *args]


CASES = [
    (_evaluate, ["--eps", "nan"], "not a number"),
    (_evaluate, ["--eps", "inf"], "not a number"),
    (_evaluate, ["--eps", "1e400"], "not a finite number"),
    (_evaluate, ["--eps", "-0.5"], "eps must be > 0"),
    (_evaluate, ["--step-size", "0"], "step size must be > 0"),
    (_evaluate, ["--restarts", "0"], "restarts must be >= 1"),
    (_evaluate, ["--seed", "-1"], "--seed must be a whole number in [0, 2^32)"),
    (_evaluate, ["--seed", str(2 ** 32)], "--seed must be a whole number in [0, 2^32)"),
    (_evaluate, ["--attack", "cw", "--norm", "linf"], "use --norm l2"),
    (_evaluate, ["--attack", "cw", "-O", "confidence=1e400"], "not a finite number"),
    (_evaluate, ["--attack", "cw", "-O", "confidence=nan"], "not a number"),
    (_evaluate, ["--batch-size", "0"], "--batch-size"),
    (_attack, ["--eps", "inf"], "not a number"),
    (_attack, ["--steps", "0"], "steps must be >= 1"),
    (_attack, ["--seed", "-3"], "--seed must be a whole number"),
    (_attack, ["--targeted", "--target-class", "-1"], "--target-class must be >= 0"),
    (_attack, ["--targeted", "--target-class", "10"], "outside 0..9"),  # checked after loading: K = 10
    (_attack, ["--target-class", "3"], "only applies with --targeted"),
    (_attack, ["--attack", "str", "--norm", "l2"], "use --norm linf"),
    (_attack, ["--attack", "ead", "-O", "beta=inf"], "not a number"),
    (_table, ["--seed", "-1"], "--seed must be a whole number"),
    (_table, ["--testset", "classifier=digits"], "first column"),
    (_table, ["--batch-size", "0"], "--batch-size"),
    (_transfer, ["--eps", "nan"], "not a number"),
    (_transfer, ["--source", "1e400=x"], "not a finite number"),
    (_transfer, ["--source", "-1=x"], ">= 0"),
    (_transfer, ["--victim", "white_box=x"], "column of transfer.csv"),
    (_transfer, ["--targeted", "--target-class", "3"], "targets other than the label"),
    (_transfer, ["--seed", str(2 ** 40)], "--seed must be a whole number"),
]


@pytest.mark.parametrize("command, args, words", CASES,
                         ids=[f"{c.__name__[1:]}:{' '.join(a)}" for c, a, _ in CASES])
def test_bad_input_exits_2_with_one_line(untrained_digits_model, tmp_path, command, args, words):
    out = tmp_path / "out"
    assert_user_error(run(*command(untrained_digits_model, *args), "--out", out), words=words, out=out)
