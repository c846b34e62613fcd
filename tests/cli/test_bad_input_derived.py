"""Bad input to ``advtf relabel`` and ``advtf retrain``: exit 2, one short message, no traceback, and
nothing left where --out would be (neither OUT, OUT.partial nor OUT.lock)."""

import pytest
from test_attack_cli import assert_user_error, run  # the shared CliRunner helpers

DATA = ["--dataset", "digits", "--train-subset", "20", "--test-subset", "8", "--quiet"]


def _relabel(m, *args):
    return ["relabel", m, *DATA, "--mode", "zero", "--steps", "1", *args]


def _retrain(m, *args):
    return ["retrain", m, *DATA, "--mode", "adversarial", "--part", "before", "--cutoff", "1", "--epochs", "1",
            "--eval-steps", "1", *args]


CASES = [
    (_relabel, ["--eps", "nan"], "not a number"),
    (_relabel, ["--eps", "1e400"], "not a finite number"),
    (_relabel, ["--eps", "0"], "--eps must be > 0"),
    (_relabel, ["--step-size", "-0.1"], "--step-size must be > 0"),
    (_relabel, ["--steps", "0"], "--steps must be >= 1"),
    (_relabel, ["--restarts", "0"], "--restarts must be >= 1"),
    (_relabel, ["--seed", "-1"], "--seed must be a whole number in [0, 2^32)"),
    (_relabel, ["--seed", str(2 ** 32)], "--seed must be a whole number in [0, 2^32)"),
    (_relabel, ["--mode", "negative", "--per-image", "all"], "--mode zero"),
    (_relabel, ["--attack", "cw", "--norm", "linf"], "use --norm l2"),
    (_relabel, ["-O", "confidence=1"], "has no option"),
    (_relabel, ["--figure-examples", "0"], "--figure-examples must be >= 1"),
    (_relabel, ["--chunk-size", "0"], "--chunk-size"),
    (_relabel, ["--strategy", "multiworker"], "TF_CONFIG"),  # a cluster run without its cluster
    (_retrain, ["--eps", "inf"], "not a number"),
    (_retrain, ["--eps", "1e400"], "not a finite number"),
    (_retrain, ["--eps", "-0.1"], "--eps must be > 0"),
    (_retrain, ["--lr", "0"], "--lr must be > 0"),
    (_retrain, ["--lr", "nan"], "not a number"),
    (_retrain, ["--momentum", "1"], "--momentum must be in [0, 1)"),
    (_retrain, ["--weight-decay", "-1e-4"], "--weight-decay must be >= 0"),
    (_retrain, ["--clean-fraction", "1.5"], "--clean-fraction must be in [0, 1)"),
    (_retrain, ["--step-size", "0"], "--step-size must be > 0"),
    (_retrain, ["--attack-steps", "0"], "--attack-steps must be >= 1"),
    (_retrain, ["--restarts", "-2"], "--restarts must be >= 1"),
    (_retrain, ["--lr-milestones", "3,2"], "--lr-milestones must be increasing"),
    (_retrain, ["--seed", "-1"], "--seed must be a whole number in [0, 2^32)"),
    (_retrain, ["--seed", str(2 ** 40)], "--seed must be a whole number in [0, 2^32)"),
    (_retrain, ["--mode", "conventional", "--fast"], "--fast only applies with --mode adversarial"),
    (_retrain, ["--reinit-only"], "drop --mode"),
    (_retrain, ["--sweep", "cutoff"], "drop --cutoff"),
    (_retrain, ["--modules", "0,2"], "either --modules or --part/--cutoff"),
    (_retrain, ["--cutoff", "9"], "outside 0..3"),  # checked after loading: the model has 4 modules
]


@pytest.mark.parametrize("command, args, words", CASES,
                         ids=[f"{c.__name__[1:]}:{' '.join(a)}" for c, a, _ in CASES])
def test_bad_input_exits_2_with_one_line(untrained_digits_model, tmp_path, command, args, words):
    out = tmp_path / "out"
    result = run(*command(untrained_digits_model, *args), "--out", out)
    assert_user_error(result, words=words, out=out)  # exit 2, one line, no traceback, no OUT or OUT.partial
    assert not out.with_name("out.lock").exists()
