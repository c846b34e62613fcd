"""Bad input to ``advtf cam`` and ``advtf psr``: exit 2, one short message, no traceback, and nothing
left where --out would be (neither OUT, OUT.partial nor OUT.lock)."""

import pytest
from test_attack_cli import assert_user_error, run  # the shared CliRunner helpers

DATA = ["--dataset", "digits", "--test-subset", "8", "--quiet"]
ATTACK = ["--attack", "ifgsm", "--norm", "linf", "--eps", "0.1", "--steps", "1"]


def _cam(m, *args):
    return ["cam", m, *DATA, *ATTACK, *args]


def _psr(m, *args):
    return ["psr", m, *DATA, *ATTACK, *args]


def _psr_no_model(m, *args):
    return ["psr", *DATA, *ATTACK, *args]


CASES = [
    (_cam, ["--quantile", "nan"], "--quantile must be a finite number"),
    (_cam, ["--quantile", "inf"], "--quantile must be a finite number"),
    (_cam, ["--quantile", "0"], "--quantile must be in (0, 1)"),
    (_cam, ["--quantile", "1"], "--quantile must be in (0, 1)"),
    (_cam, ["--quantile", "-0.3"], "--quantile must be in (0, 1)"),
    (_cam, ["--examples", "0"], "--examples must be >= 1"),
    (_cam, ["--batch-size", "0"], "--batch-size"),
    (_cam, ["--eps", "nan"], "not a number"),
    (_cam, ["--eps", "1e400"], "not a finite number"),
    (_cam, ["--eps", "0"], "eps must be > 0"),
    (_cam, ["--steps", "0"], "steps must be >= 1"),
    (_cam, ["--step-size", "-1"], "step size must be > 0"),
    (_cam, ["--seed", "-1"], "--seed must be a whole number in [0, 2^32)"),
    (_cam, ["--seed", str(2 ** 32)], "--seed must be a whole number in [0, 2^32)"),
    (_cam, ["--method", "lime"], "--method"),
    (_cam, ["--attack", "cw", "--norm", "linf"], "use --norm l2"),
    (_cam, ["--attack", "cw", "--norm", "l2", "-O", "confidence=nan"], "is not a number"),
    (_cam, ["--target-class", "3"], "--target-class only applies with --targeted"),
    (_cam, ["--targeted", "--target-class", "10"], "outside 0..9"),  # checked against the loaded dataset
    (_cam, ["--method", "gradcam", "--layer", "nope"], "no layer or endpoint"),  # checked on the loaded model
    (_psr, ["--xi", "0"], "--xi must be > 0"),
    (_psr, ["--xi", "-1e-4"], "--xi must be > 0"),
    (_psr, ["--xi", "nan"], "--xi must be a finite number"),
    (_psr, ["--xi", "inf"], "--xi must be a finite number"),
    (_psr, ["--drop", "1"], "--drop must be in [0, 1)"),
    (_psr, ["--drop", "-0.1"], "--drop must be in [0, 1)"),
    (_psr, ["--drop", "nan"], "--drop must be a finite number"),
    (_psr, ["--quantile", "1e400"], "--quantile must be a finite number"),
    (_psr, ["--examples", "-1"], "--examples must be >= 1"),
    (_psr, ["--grid", "0"], "--grid"),
    (_psr, ["--stride", "0"], "--stride"),
    (_psr, ["--chunk", "0"], "--chunk"),
    (_psr, ["--refine", "s3"], "--refine"),
    (_psr, ["--eps", "inf"], "not a number"),
    (_psr, ["--restarts", "0"], "restarts must be >= 1"),
    (_psr, ["--seed", "-5"], "--seed must be a whole number in [0, 2^32)"),
    (_psr, ["--target-mode", "given", "--targeted"], "--target-mode given needs --target-class"),
    (_psr, ["--grid", "40"], "larger than the 16x16 image"),  # checked against the loaded dataset
    (_psr_no_model, [], "give at least one MODEL"),
]


@pytest.mark.parametrize("command, args, words", CASES,
                         ids=[f"{c.__name__[1:]}:{' '.join(a)}" for c, a, _ in CASES])
def test_bad_input_exits_2_with_one_line(untrained_digits_model, tmp_path, command, args, words):
    out = tmp_path / "out"
    result = run(*command(untrained_digits_model, *args), "--out", out)
    assert_user_error(result, words=words, out=out)  # exit 2, one line, no traceback, no OUT, .partial or .lock
    assert len((result.output + result.stderr).strip().splitlines()) <= 3
