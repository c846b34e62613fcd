"""``--dry-run`` of the ``paper`` budget: every step as an advtf command line that builds exactly the
step's request, with a gradient-pass estimate; no data read, nothing written."""

from __future__ import annotations

import importlib
import re
import shlex

import pytest
from click.testing import CliRunner

from advtf.cli.main import advtf
from advtf.cli.reproduce import command_line
from advtf.jobs import JOBS
from advtf.jobs.reproduce import ReproduceRequest, plan_for
from advtf.jobs.reproduce.estimate import gradient_passes
from advtf.jobs.reproduce.preset import PAPERS

STEP = re.compile(r"# step (\d+) of (\d+): (\S+) .*; ~(\S+) gradient passes")


@pytest.mark.parametrize("paper", PAPERS)
def test_dry_run_prints_every_step_with_its_command_and_estimate(paper, tmp_path):
    out = tmp_path / "repro"
    result = CliRunner().invoke(advtf, ["reproduce", paper, "--budget", "paper", "--dry-run", "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (plan,) = plan_for(ReproduceRequest(paper, "paper"), out)
    lines = result.output.splitlines()
    headers = [(i, STEP.match(line)) for i, line in enumerate(lines) if STEP.match(line)]
    assert [m.group(3) for _, m in headers] == [s.id for s in plan.steps]
    for (i, match), step in zip(headers, plan.steps):
        assert int(match.group(2)) == len(plan.steps)
        command = lines[i + 1]
        assert command.startswith(f"advtf {step.job} ") and f"--out {step.out}" in command
        assert "# also" not in command  # every option of the request is on the command line
        estimate = gradient_passes(plan, step)
        assert estimate is not None and match.group(4) == (f"{estimate:.2g}" if estimate >= 1000 else str(estimate))
    assert "total: ~" in lines[-1]
    assert not out.exists()  # a dry run writes nothing


def test_training_estimates_count_epochs_images_and_attack_steps(tmp_path):
    (plan,) = plan_for(ReproduceRequest("springer2021", "paper"), tmp_path)
    # CIFAR-10: 50,000 images x 100 epochs; the robust source adds 16 PGD steps; + 10,000 x 20 evaluation steps
    assert gradient_passes(plan, plan.step("src-eps0")) == 100 * 50000 + 10000 * 20
    assert gradient_passes(plan, plan.step("src-slight")) == 100 * 50000 * 17 + 10000 * 20
    # R_eps: 10,000 test images x 400 steps; the zero-robust set: 50,000 x 10 classes x 200 steps
    assert gradient_passes(plan, plan.step("r0")) == 10000 * 400
    assert gradient_passes(plan, plan.step("d-zero")) == 50000 * 10 * 200
    # trained on the relabeled set (500,000 examples, 10% held out) for 100 epochs
    assert gradient_passes(plan, plan.step("cls-zero")) == 100 * 450000 + 10000 * 20
    assert gradient_passes(plan, plan.step("table")) == 0


def _request_built_by_the_cli(job, line, monkeypatch):
    """The request the job's Click function builds from ``line`` (its run_job replaced by a catcher)."""
    module_name = JOBS.get(job).cli.partition(":")[0]
    module = importlib.import_module(module_name)
    caught = {}

    class Caught(Exception):
        pass

    def catch(name, request, kw):
        caught["request"] = request
        raise Caught

    monkeypatch.setattr(module, "run_job", catch)
    args = shlex.split(line)[1:]
    try:
        CliRunner().invoke(advtf, args, catch_exceptions=False)
    except Caught:
        pass
    assert "request" in caught, f"the CLI refused: {line}"
    return caught["request"]


@pytest.mark.parametrize("paper", PAPERS)
@pytest.mark.parametrize("budget", ["paper", "smoke"])
def test_each_command_line_builds_exactly_the_steps_request(paper, budget, tmp_path, monkeypatch):
    (plan,) = plan_for(ReproduceRequest(paper, budget), tmp_path / "repro")
    for step in plan.steps:
        step.out.mkdir(parents=True)  # the inputs of later steps exist when they run (some arguments check)
    for step in plan.steps:
        line, missing = command_line(step.job, step.request, step.out)
        assert missing == []
        built = _request_built_by_the_cli(step.job, line, monkeypatch)
        assert built.to_json() == step.request.to_json(), (step.id, line)
