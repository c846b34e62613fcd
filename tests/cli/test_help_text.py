"""Every ``--help`` cites papers by name (Xu et al. 2019, ...), never by their file in papers/."""

import pytest
from click.testing import CliRunner

from advtf.cli.main import advtf
from advtf.jobs import JOBS


def _help(*args) -> str:
    result = CliRunner().invoke(advtf, [*args, "--help"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # click re-wraps docstrings: compare with single spaces


@pytest.mark.parametrize("command", [None, *JOBS])
def test_help_never_cites_a_paper_by_its_file(command):
    text = _help(*([command] if command else []))
    assert "papers/0" not in text and "papers/" not in text


XU_KAPPA = "C&W, EAD and Str use confidence κ = 1 as in Xu et al. 2019 unless -O confidence=... is given"


@pytest.mark.parametrize("command", ["cam", "psr", "response"])
def test_xu_analyses_state_their_kappa(command):
    assert XU_KAPPA in _help(command)


def test_training_helps_state_the_papers_defaults():
    assert "eps/4" in _help("retrain") and "Siddiqui & Breuel 2021" in _help("retrain")
    train = _help("train")
    assert "50% and 75% of --epochs" in train and "--weight-decay 0" in train


def test_command_table_names_the_papers():
    listing = {name: spec.summary for name, spec in JOBS.items()}
    assert "Xu et al. 2019" in listing["cam"] and "Xu et al. 2019" in listing["psr"]
    assert "Siddiqui & Breuel 2021" in listing["retrain"] and "Springer et al. 2021" in listing["relabel"]
    assert all("papers/" not in text for text in listing.values())
