"""Bad input to ``advtf dissect``: exit 2, one short message, no traceback, and nothing left where --out
would be (neither OUT, OUT.partial nor OUT.lock)."""

import pytest
from test_attack_cli import assert_user_error, run  # the shared CliRunner helpers

FAST = ["--concept-images", "8", "--attack-images", "4", "--steps", "1", "--draws", "10", "--quiet"]


CASES = [
    (["--eps", "nan"], "not a number"),
    (["--eps", "inf"], "not a number"),
    (["--eps", "1e400"], "not a finite number"),
    (["--eps", "0"], "eps must be > 0"),
    (["--step-size", "-0.1"], "step size must be > 0"),
    (["--steps", "0"], "pass e.g. --steps 10"),
    (["--restarts", "0"], "pass e.g. --restarts 1"),
    (["--quantile", "nan"], "--quantile must be a finite number"),
    (["--quantile", "1e400"], "--quantile must be a finite number"),
    (["--quantile", "0"], "--quantile must be in (0, 1)"),
    (["--quantile", "1"], "--quantile must be in (0, 1)"),
    (["--detector-iou", "nan"], "--detector-iou must be a finite number"),
    (["--detector-iou", "-0.1"], "--detector-iou must be in (0, 1)"),
    (["--detector-iou", "1.5"], "--detector-iou must be in (0, 1)"),
    (["--seed", "-1"], "--seed must be a whole number in [0, 2^32)"),
    (["--seed", str(2 ** 32)], "--seed must be a whole number in [0, 2^32)"),
    (["--top-n", "0,10"], "--top-n must be >= 1"),
    (["--top-n", ""], "--top-n: give at least one N"),
    (["--top-n", "5,x"], "comma-separated list of integers"),
    (["--draws", "0"], "--draws"),
    (["--concept-images", "0"], "--concept-images"),
    (["--attack", "nope"], "nope"),
    (["--attack", "cw", "--norm", "linf"], "use --norm l2"),
    (["-O", "confidence=1"], "has no option"),
    (["--concepts", "broden:"], "synthetic or broden:DIR"),
    (["--concepts", "imagenet"], "synthetic or broden:DIR"),
    (["--concepts", "broden:/nonexistent/broden"], "broden"),  # refused inside the run directory
    (["--layers", "m0,nope"], "available endpoints"),  # checked after loading the model
]


@pytest.mark.parametrize("args, words", CASES, ids=[" ".join(a) or "empty" for a, _ in CASES])
def test_bad_input_exits_2_with_one_line(untrained_digits_model, tmp_path, args, words):
    out = tmp_path / "out"
    result = run("dissect", untrained_digits_model, *FAST, *args, "--out", out)
    assert_user_error(result, words=words, out=out)  # exit 2, one line, no traceback, no OUT, .partial or .lock
    assert len((result.output + result.stderr).strip().splitlines()) <= 3
