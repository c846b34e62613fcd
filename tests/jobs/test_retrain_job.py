"""The ``advtf retrain`` job: cell plans, per-cell resume, outputs of every sweep, request validation (no training)."""

import json
import math

import pytest

from advtf.errors import UserError
from advtf.jobs.retrain import CellStore, RetrainRequest, plan_cells, run_cells, write_outputs
from advtf.models import create_model
from advtf.runs import ResumeStore


@pytest.fixture(scope="module")
def model():
    return create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=0)  # modules m0..m3


def test_cutoff_sweep_plans_both_parts(model):
    plan = plan_cells(model, sweep="cutoff")
    assert [s.name for s in plan.selections] == [f"{p}-{k}" for p in ("before", "after") for k in range(4)]
    assert plan.selections[5].indices == (1, 2, 3)  # after-1
    assert [s.name for s in plan_cells(model, sweep="cutoff", part="after").selections] == \
        [f"after-{k}" for k in range(4)]
    layers = plan_cells(model, sweep="layers", part="before")
    assert layers.unit == "layers" and layers.names == ["conv1", "conv2", "conv3", "logits"]
    assert layers.selections[-1].name == "layers-before-3"


def test_combinations_and_reinit_plans(model):
    plan = plan_cells(model, sweep="combinations")
    assert len(plan.selections) == 16 and plan.selections[0].indices == ()
    assert sorted(s.indices for s in plan.selections) == sorted(
        tuple(i for i in range(4) if mask >> i & 1) for mask in range(16))
    reinit = plan_cells(model, reinit_only=True, modules="m1,3")
    assert [s.name for s in reinit.selections] == ["reinit-m1", "reinit-m3"] and reinit.reinit_only


@pytest.mark.parametrize("options, words", [
    (dict(), "choose what to retrain"),
    (dict(part="before"), "choose what to retrain"),
    (dict(part="before", cutoff=4), "outside 0..3"),
    (dict(modules="0,9"), "unknown module"),
    (dict(modules="0", cutoff=1, part="after"), "either --modules"),
    (dict(sweep="cutoff", cutoff=1), "drop --cutoff"),
    (dict(sweep="combinations", layers=True), "drop --layers"),
    (dict(reinit_only=True, sweep="cutoff"), "drop --sweep"),
])
def test_bad_selections(model, options, words):
    with pytest.raises(UserError, match=words.replace(".", r"\.")):
        plan_cells(model, **options)


def _fake_cell(calls):
    def run_one(selection):
        calls.append(selection.name)
        if selection.name == "before-2" and calls.count("boom") == 0:
            calls.append("boom")
            raise KeyboardInterrupt  # the interruption, after before-0 and before-1 finished
        return {"clean_accuracy": 0.5 + 0.1 * len(selection.indices), "robust_accuracy": 0.1 * selection.indices[0]}
    return run_one


def test_interrupted_sweep_resumes_and_skips_finished_cells(model, tmp_path):
    plan = plan_cells(model, sweep="cutoff", part="before")
    calls, lines = [], []
    reference = {"clean_accuracy": 0.9, "robust_accuracy": 0.0}
    with pytest.raises(KeyboardInterrupt):
        run_cells(plan, CellStore(tmp_path), _fake_cell(calls), pretrained=lambda: dict(reference))
    assert calls == ["before-0", "before-1", "before-2", "boom"]
    # Finished cells are marked in the run's one resume store (resume/done.json), nothing else.
    assert ResumeStore(tmp_path).done == ["cell/pretrained", "cell/before-0", "cell/before-1"]
    kept = {n: (tmp_path / "cells" / n / "results.json").stat().st_mtime_ns for n in ("before-0", "before-1")}
    got, rows = run_cells(plan, CellStore(tmp_path), _fake_cell(calls),
                          pretrained=lambda: pytest.fail("the reference is finished"), report=lines.append)
    assert calls[4:] == ["before-2", "before-3"]  # only the unfinished cells ran
    assert {n: (tmp_path / "cells" / n / "results.json").stat().st_mtime_ns for n in kept} == kept
    assert got == reference and [r["cell"] for r in rows] == ["before-0", "before-1", "before-2", "before-3"]
    assert [r["clean_accuracy"] for r in rows] == pytest.approx([0.6, 0.7, 0.8, 0.9])
    assert sum("kept from the interrupted run" in line for line in lines) == 3  # pretrained + 2 cells
    assert lines[-1].startswith("[4/4] before-3: clean 0.9000  robust 0.0000")


@pytest.mark.parametrize("sweep, reinit, figure", [
    ("cutoff", False, "retrain_cutoff.png"), ("combinations", False, "retrain_combinations.png"),
    (None, True, "retrain_reinit.png"), (None, False, "retrain_cell.png"),
])
def test_outputs_of_each_sweep(model, tmp_path, sweep, reinit, figure):
    reference = {"clean_accuracy": 0.9, "robust_accuracy": 0.05, "n_test": 10}
    if sweep:
        plan = plan_cells(model, sweep=sweep)
    elif reinit:
        plan = plan_cells(model, reinit_only=True)
    else:
        plan = plan_cells(model, part="after", cutoff=2)  # a single cell
    rows = [{"cell": s.name, "part": s.part, "cutoff": s.cutoff, "indices": list(s.indices),
             "retrained": ",".join(plan.names[i] for i in s.indices) or "none",
             "clean_accuracy": 0.5, "robust_accuracy": 0.2} for s in plan.selections]
    write_outputs(tmp_path, plan, reference, rows, sweep=sweep, title="t", header={"mode": "adversarial"})
    assert (tmp_path / figure).stat().st_size > 1000
    assert [p.name for p in tmp_path.glob("*.png")] == [figure]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["pretrained_accuracy"] == reference and len(results["cells"]) == len(plan.selections)
    table = (tmp_path / "results.csv").read_text().splitlines()
    assert len(table) == 2 + len(plan.selections) and table[1].startswith("pretrained,,,none")
    assert (tmp_path / "results.md").exists()
    assert (tmp_path / "combinations.csv").exists() == (sweep == "combinations")


def test_identical_selections_run_once(model, tmp_path):
    # before-3 and after-0 both retrain m0..m3: the second reuses the first's result.
    calls = []
    plan = plan_cells(model, sweep="cutoff")
    _, rows = run_cells(plan, CellStore(tmp_path), lambda s: calls.append(s.name) or
                        {"clean_accuracy": 0.5, "robust_accuracy": 0.1 * len(s.indices)},
                        pretrained=lambda: {"clean_accuracy": 0.9, "robust_accuracy": 0.0})
    assert "after-0" not in calls and len(calls) == 7
    after0 = next(r for r in rows if r["cell"] == "after-0")
    assert after0["same_as"] == "before-3" and after0["robust_accuracy"] == pytest.approx(0.4)


ONE_CELL = dict(pretrained="runs/std", mode="adversarial", part="before", cutoff=1)


def test_request_records_the_effective_training_step():
    assert RetrainRequest(**ONE_CELL, eps=0.1).step_size == pytest.approx(0.025)  # eps/4 (Siddiqui & Breuel)
    assert RetrainRequest(**ONE_CELL, eps=0.1, step_size=0.01).step_size == 0.01
    assert RetrainRequest(**ONE_CELL, eps=0.1, fast=True).step_size is None  # FGSM takes 1.25 eps
    conventional = RetrainRequest(**{**ONE_CELL, "mode": "conventional"})
    assert conventional.step_size is None and conventional.adversarial() is None
    assert conventional.eval_threat.steps == 200 and conventional.eval_threat.step_size is None
    config = RetrainRequest(**ONE_CELL, schedule="piecewise", lr_milestones=[2, 3]).train_config(natural_images=False)
    assert config.augment is False and config.lr_milestones == (2, 3)


@pytest.mark.parametrize("change, words", [
    (dict(eps=math.nan), "--eps must be a finite"),
    (dict(eps=math.inf), "--eps must be a finite"),
    (dict(eps=0.0), "--eps must be > 0"),
    (dict(lr=-1e-3), "--lr must be > 0"),
    (dict(momentum=1.0), "--momentum must be in [0, 1)"),
    (dict(weight_decay=-1e-4), "--weight-decay must be >= 0"),
    (dict(clean_fraction=1.5), "--clean-fraction must be in [0, 1)"),
    (dict(epochs=0), "--epochs must be >= 1"),
    (dict(eval_steps=0), "--eval-steps must be >= 1"),
    (dict(attack_steps=0), "--attack-steps must be >= 1"),
    (dict(step_size=math.inf), "--step-size must be a finite"),
    (dict(lr_milestones=(3, 2)), "--lr-milestones must be increasing"),
    (dict(fast=True, mode="conventional"), "--fast only applies"),
    (dict(reinit_only=True, part=None, cutoff=None), "drop --mode"),
    (dict(mode=None), "choose --mode"),
    (dict(sweep="cutoff"), "drop --cutoff"),
])
def test_bad_requests_are_refused_before_any_work(change, words):
    with pytest.raises(UserError, match=words.replace("[", r"\[").replace(")", r"\)").replace("^", r"\^")):
        RetrainRequest(**{**ONE_CELL, **change})
