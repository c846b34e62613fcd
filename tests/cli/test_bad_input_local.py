"""Bad input to ``advtf frequency | perturbations | response | kernels | features``: exit 2, one short
message, no traceback, and nothing left where --out would be (neither OUT, OUT.partial nor OUT.lock)."""

import pytest
from test_attack_cli import assert_user_error, run  # the shared CliRunner helpers

DATA = ["--dataset", "digits", "--test-subset", "8", "--quiet"]
ATTACK = ["--attack", "pgd", "--norm", "linf", "--eps", "0.1", "--steps", "1"]


def _frequency(m, *args):
    return ["frequency", m, *DATA, *ATTACK, *args]


def _perturbations(m, *args):
    return ["perturbations", m, *DATA, *ATTACK, *args]


def _response(m, *args):
    return ["response", m, *DATA, *ATTACK, *args]


def _kernels(m, *args):
    return ["kernels", m, "--quiet", *args]


def _features(m, *args):
    return ["features", m, "--dataset", "digits", "--images", "4", "--quiet", *ATTACK, *args]


def _no_model(command):
    data = {"kernels": ["--quiet"], "features": ["--dataset", "digits", "--images", "4", "--quiet"]}.get(command, DATA)
    return lambda m, *args: [command, *data, *args]


CASES = [
    (_frequency, ["--eps", "nan"], "not a number"),
    (_frequency, ["--eps", "inf"], "not a number"),
    (_frequency, ["--eps", "1e400"], "not a finite number"),
    (_frequency, ["--eps", "0"], "eps must be > 0"),
    (_frequency, ["--radii", "0,nan,4"], "--radii must be a finite number"),
    (_frequency, ["--radii", "inf"], "--radii must be a finite number"),
    (_frequency, ["--radii", "2,-1"], "--radii must be >= 0"),
    (_frequency, ["--radii", "1,x"], "comma-separated"),
    (_frequency, ["--seed", "-1"], "--seed must be a whole number in [0, 2^32)"),
    (_frequency, ["--steps", "0"], "steps must be >= 1"),
    (_no_model("frequency"), [*ATTACK], "give at least one MODEL"),
    (_perturbations, ["--eps", "-0.1"], "eps must be > 0"),
    (_perturbations, ["--step-size", "0"], "step size must be > 0"),
    (_perturbations, ["--restarts", "0"], "restarts must be >= 1"),
    (_perturbations, ["--count", "0"], "--count"),
    (_perturbations, ["--seed", str(2 ** 32)], "--seed must be a whole number in [0, 2^32)"),
    (_perturbations, ["--attack", "cw", "--norm", "linf"], "use --norm l2"),
    (_no_model("perturbations"), [*ATTACK], "give at least one MODEL"),
    (_response, ["--also-attack", "fgsm:linf:nan"], "--also-attack fgsm:linf:nan: eps 'nan' is not a number"),
    (_response, ["--also-attack", "fgsm:linf:1e400"], "not a finite number"),
    (_response, ["--also-attack", "fgsm:linf:0"], "--also-attack fgsm:linf:0: eps must be > 0"),
    (_response, ["--also-attack", "pgd:linf:0.1:0"], "--also-attack pgd:linf:0.1:0: steps must be >= 1"),
    (_response, ["--also-attack", "cw:linf:0.1"], "use --norm l2"),
    (_response, ["--attack", "cw", "--norm", "l2", "-O", "confidence=nan"], "is not a number"),
    (_response, ["--also-attack", "pgd:linf:0.1:x"], "STEPS must be an integer"),
    (_response, ["--also-attack", "nope"], "nope"),
    (_response, ["--channels", "0"], "--channels"),
    (_response, ["--seed", "-3"], "--seed must be a whole number in [0, 2^32)"),
    (_response, ["--layers", "m0,layer9"], "unknown endpoint"),  # checked on the loaded model
    (_no_model("response"), [*ATTACK, "--checkpoints", "runs/x", "--activation-maps", "m1"],
     "--activation-maps needs MODEL(s)"),
    (_no_model("response"), [*ATTACK], "give a MODEL"),
    (_kernels, ["--checkpoints", "no-such-run"], "epoch_NNN"),  # checked inside the run directory
    (_no_model("kernels"), [], "nothing to analyse"),
    (_features, ["--perplexity", "nan"], "--perplexity must be a finite number"),
    (_features, ["--perplexity", "inf"], "--perplexity must be a finite number"),
    (_features, ["--eps", "1e400"], "not a finite number"),
    (_features, ["--seed", "-1"], "--seed must be a whole number in [0, 2^32)"),
    (_features, ["--positions", "0"], "--positions"),
    (_features, ["--permutations", "0"], "--permutations"),
    (_features, ["--target-class", "3"], "--target-class only applies with --targeted"),
    (_features, ["--targeted", "--target-mode", "given"], "--target-mode given needs --target-class"),
    (_features, ["--modules", "m1,m9"], "unknown module 'm9'"),  # checked on the loaded model
    (_no_model("features"), [*ATTACK], "give at least one MODEL"),
]


@pytest.mark.parametrize("command, args, words", CASES,
                         ids=[f"{c.__name__.strip('_')}:{' '.join(a)}" for c, a, _ in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(untrained_digits_model, tmp_path, command, args, words):
    out = tmp_path / "out"
    result = run(*command(untrained_digits_model, *args), "--out", out)
    assert len(result.output.strip().splitlines()) <= 3, result.output
    assert_user_error(result, words=words, out=out)
