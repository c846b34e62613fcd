"""Plans on a fake job (no TensorFlow work): dependency order, skipping finished steps, exact reruns
after a preset change, resume after a kill, and refused references and cycles."""

from __future__ import annotations

import json

import pytest

from advtf.errors import UserError
from advtf.jobs.reproduce import ReproduceRequest, plan_for, reproduce


def _request(folder, budget="smoke"):
    return ReproduceRequest(paper="fake", budget=budget, preset_dir=str(folder))


def test_steps_run_after_their_dependencies_with_resolved_references(fake_jobs, write_preset, tmp_path):
    (plan,) = plan_for(_request(write_preset()), tmp_path / "out")
    order = [s.id for s in plan.steps]
    assert order.index("a") < order.index("b") < order.index("d") and order.index("c") < order.index("d")
    d = plan.step("d")
    assert d.depends == ("b", "c")
    assert d.request.sources == (str(tmp_path / "out" / "steps" / "b"), str(tmp_path / "out" / "steps" / "c"))
    assert plan.step("a").request.scale == 1.0  # the smoke budget's shared table
    (paper,) = plan_for(_request(write_preset(), "paper"), tmp_path / "out")
    assert paper.step("a").request.scale == 2.0


def test_a_reproduction_runs_every_step_and_judges_the_claims(fake_jobs, write_preset, tmp_path):
    out = tmp_path / "out"
    claims = reproduce(_request(write_preset(a=1, b=2)), out)
    assert sorted(fake_jobs.CALLS) == ["a", "b", "c", "d"]
    # a = 1, b = 2 + 1 = 3, c = 5, d = 7 + 3 + 5 = 15, by hand
    assert json.loads((out / "steps" / "d" / "results.json").read_text())["total"] == 15
    verdicts = {c["id"]: (c["value"], c["verdict"]) for c in claims["fake"]}
    assert verdicts == {"d-total": (0.0, "holds"), "list-item": (-3.0, "holds"), "missing": (None, "not measured")}
    assert (out / "report.md").is_file() and (out / "report.html").is_file()


def test_finished_steps_are_kept_and_a_changed_value_reruns_exactly_its_dependents(fake_jobs, write_preset, tmp_path):
    out = tmp_path / "out"
    reproduce(_request(write_preset(a=1, b=2)), out)
    fake_jobs.CALLS.clear()
    reproduce(_request(write_preset(a=1, b=2)), out, resume=True)
    assert fake_jobs.CALLS == []  # everything finished with the same settings
    claims = reproduce(_request(write_preset(a=1, b=4)), out, resume=True)
    assert fake_jobs.CALLS == ["b", "d"]  # b changed; d reads b; a and c untouched
    assert {c["id"]: c["value"] for c in claims["fake"]}["d-total"] == 2.0  # 7 + (4 + 1) + 5 - 15
    fake_jobs.CALLS.clear()
    reproduce(_request(write_preset(a=3, b=4)), out, resume=True)
    assert fake_jobs.CALLS == ["a", "b", "d"]


def test_a_killed_reproduction_resumes_with_the_remaining_steps(fake_jobs, write_preset, tmp_path):
    out = tmp_path / "out"
    folder = write_preset(a=1, b=2)
    fake_jobs.FAIL.add(2)  # step b dies
    with pytest.raises(RuntimeError, match="killed"):
        reproduce(_request(folder), out)
    done = list(fake_jobs.CALLS)
    assert "a" in done and "b" not in done and "d" not in done
    fake_jobs.FAIL.clear()
    fake_jobs.CALLS.clear()
    reproduce(_request(folder), out, resume=True)
    assert sorted(fake_jobs.CALLS) == sorted({"a", "b", "c", "d"} - set(done))


def test_an_existing_reproduction_needs_resume_or_overwrite(fake_jobs, write_preset, tmp_path):
    out = tmp_path / "out"
    reproduce(_request(write_preset()), out)
    with pytest.raises(UserError, match="--resume"):
        reproduce(_request(write_preset()), out)
    fake_jobs.CALLS.clear()
    reproduce(_request(write_preset()), out, overwrite=True)
    assert sorted(fake_jobs.CALLS) == ["a", "b", "c", "d"]
    with pytest.raises(UserError, match="nothing to resume"):
        reproduce(_request(write_preset()), tmp_path / "new", resume=True)


REF_UNKNOWN = """
paper = "fake"
[[steps]]
id = "a"
job = "fake"
options = { sources = ["@ghost"] }
"""

CYCLE = """
paper = "fake"
[[steps]]
id = "a"
job = "fake"
options = { sources = ["@c"] }
[[steps]]
id = "b"
job = "fake"
options = { sources = ["@a"] }
[[steps]]
id = "c"
job = "fake"
options = { sources = ["@b"] }
"""


@pytest.mark.parametrize("text, message", [
    (REF_UNKNOWN, r"step a refers to @ghost, which is no step"),
    (CYCLE, r"cycle \(a -> c -> b -> a\)"),
])
def test_unknown_references_and_cycles_are_refused_in_one_line(fake_jobs, write_preset, tmp_path, text, message):
    with pytest.raises(UserError, match=message) as info:
        plan_for(_request(write_preset(text)), tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
