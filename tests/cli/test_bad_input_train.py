"""Bad input to ``advtf train`` and ``advtf quickstart``: exit 2, one short message naming the option,
no traceback, and nothing left where --out would be (every case fails before any training)."""

import pytest
from click.testing import CliRunner

from advtf.cli.main import advtf

TINY = ["--dataset", "digits", "--model", "test_cnn", "--train-subset", "200", "--test-subset", "20",
        "--epochs", "1", "--batch-size", "50", "--eval-steps", "1", "--quiet"]


def _train(*args):
    return ["train", *TINY, *args]


def _quickstart(*args):
    return ["quickstart", "--quiet", *args]


CASES = [
    (_train, ["--eps", "nan"], "not a number"),
    (_train, ["--eps", "inf"], "not a number"),
    (_train, ["--robust", "--eps", "1e400"], "not a finite number"),
    (_train, ["--robust", "--eps", "0"], "eps must be > 0"),
    (_train, ["--robust", "--eps", "-0.5"], "eps must be > 0"),
    (_train, ["--robust", "--step-size", "0"], "--step-size must be > 0"),
    (_train, ["--robust", "--attack-steps", "0"], "--attack-steps must be >= 1"),
    (_train, ["--restarts", "0"], "--restarts must be >= 1"),
    (_train, ["--lr", "0"], "--lr must be > 0"),
    (_train, ["--lr", "nan"], "not a number"),
    (_train, ["--lr", "-1e-3"], "--lr must be > 0"),
    (_train, ["--momentum", "1"], "--momentum must be in [0, 1)"),
    (_train, ["--momentum", "-0.1"], "--momentum must be in [0, 1)"),
    (_train, ["--weight-decay", "-5e-4"], "--weight-decay must be >= 0"),
    (_train, ["--weight-decay", "1e400"], "not a finite number"),
    (_train, ["--width", "0"], "--width must be > 0"),
    (_train, ["--seed", "-1"], "--seed must be a whole number in [0, 2^32)"),
    (_train, ["--seed", str(2 ** 32)], "--seed must be a whole number in [0, 2^32)"),
    (_train, ["--epochs", "0"], "--epochs"),
    (_train, ["--batch-size", "0"], "--batch-size"),
    (_train, ["--robust", "--clean-fraction", "1"], "--clean-fraction must be in [0, 1)"),
    (_train, ["--clean-fraction", "0.5"], "add --robust"),
    (_train, ["--fast"], "add --robust"),
    (_train, ["--select-by", "clean"], "add --validation"),
    (_train, ["--robust", "--select-by", "robust"], "add --validation"),
    (_train, ["--select-by", "robust", "--validation", "0.1"], "add --robust"),
    (_train, ["--early-stopping", "3"], "add --validation"),
    (_train, ["--early-stopping", "3", "--validation", "0.1", "--select-by", "last"], "drop --select-by last"),
    (_train, ["--validation", "2.5"], "whole number"),
    (_train, ["--validation", "-0.1"], "--validation must be >= 0"),
    (_train, ["--validation", "200"], "leaves no training"),  # checked after loading: 200 images
    (_train, ["--lr-milestones", "5"], "beyond --epochs 1"),
    (_train, ["--epochs", "4", "--lr-milestones", "3,2"], "increasing"),
    (_train, ["--schedule", "cosine", "--lr-milestones", "1"], "only applies to --schedule piecewise"),
    (_train, ["--precise-bn", "-1"], "--precise-bn"),
    (_train, ["--resume", "--overwrite"], "give one of them"),
    (_quickstart, ["--seed", "-1"], "--seed must be a whole number in [0, 2^32)"),
    (_quickstart, ["--seed", str(2 ** 32)], "--seed must be a whole number in [0, 2^32)"),
    (_quickstart, ["--seed", "nan"], "not a valid integer"),
    (_quickstart, ["--resume"], "nothing to resume"),
    (_quickstart, ["--resume", "--overwrite"], "give one of them"),
]


@pytest.mark.parametrize("command, args, words", CASES,
                         ids=[f"{c.__name__[1:]}:{' '.join(a)}" for c, a, _ in CASES])
def test_bad_input_exits_2_with_one_line(tmp_path, command, args, words):
    out = tmp_path / "out"
    result = CliRunner().invoke(advtf, [str(a) for a in [*command(*args), "--out", out]], catch_exceptions=False)
    text = result.output  # stdout and stderr as the user sees them (click >= 8.2)
    assert result.exit_code == 2, (result.exit_code, text)
    assert "Traceback" not in text
    assert 1 <= len(text.strip().splitlines()) <= 3, text
    assert words.lower() in text.lower(), text
    for left in (out, out.with_name("out.partial"), out.with_name("out.lock")):
        assert not left.exists(), left

