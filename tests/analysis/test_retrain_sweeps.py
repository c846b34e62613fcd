"""``advtf retrain`` sweep bookkeeping: cell plans, resume, changed options, Fig. 6 medians (no training)."""

import json

import numpy as np
import pytest

from advtf.analysis.retrain import CellStore, combination_medians, plan_cells, run_cells, write_outputs
from advtf.errors import UserError
from advtf.models import create_model


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
    kept = {n: (tmp_path / "cells" / n / "results.json").stat().st_mtime_ns for n in ("before-0", "before-1")}
    got, rows = run_cells(plan, CellStore(tmp_path), _fake_cell(calls),
                          pretrained=lambda: pytest.fail("the reference is finished"), report=lines.append)
    assert calls[4:] == ["before-2", "before-3"]  # only the unfinished cells ran
    assert {n: (tmp_path / "cells" / n / "results.json").stat().st_mtime_ns for n in kept} == kept
    assert got == reference and [r["cell"] for r in rows] == ["before-0", "before-1", "before-2", "before-3"]
    assert [r["clean_accuracy"] for r in rows] == pytest.approx([0.6, 0.7, 0.8, 0.9])
    assert sum("kept from the interrupted run" in line for line in lines) == 3  # pretrained + 2 cells
    assert lines[-1].startswith("[4/4] before-3: clean 0.9000  robust 0.0000")


def test_combination_medians_by_hand(model):
    # Four modules, a hand-made accuracy per subset: robust = 0.5 if m0 is retrained else 0.1, plus 0.01 per module.
    plan = plan_cells(model, sweep="combinations")
    rows = [{"indices": list(s.indices), "clean_accuracy": 0.8 - 0.05 * len(s.indices),
             "robust_accuracy": (0.5 if 0 in s.indices else 0.1) + 0.01 * len(s.indices)} for s in plan.selections]
    medians = combination_medians(rows, plan.names)
    # With m0: 8 subsets of sizes 1,2,2,2,3,3,3,4 -> robust 0.51..0.54, median of (0.52, 0.53) at positions 4, 5.
    assert medians[0]["robust_accuracy_with"] == pytest.approx(0.525)
    # Without m0: sizes 0,1,1,1,2,2,2,3 -> 0.10..0.13, median 0.115.
    assert medians[0]["robust_accuracy_without"] == pytest.approx(0.115)
    # m1 with: half contain m0 -> values {0.11,0.12,0.12,0.13} and {0.52,0.53,0.53,0.54}: median (0.13+0.52)/2.
    assert medians[1]["robust_accuracy_with"] == pytest.approx(0.325)
    for m in medians:
        j = int(m["module"][1:])
        with_j = [r["clean_accuracy"] for r in rows if j in r["indices"]]
        assert m["clean_accuracy_with"] == pytest.approx(float(np.median(with_j)))
        assert m["cells_with"] == m["cells_without"] == 8


def test_outputs_of_each_sweep(model, tmp_path):
    reference = {"clean_accuracy": 0.9, "robust_accuracy": 0.05, "n_test": 10}
    for sweep, figure in (("cutoff", "retrain_cutoff.png"), ("combinations", "retrain_combinations.png"),
                          (None, "retrain_reinit.png")):
        plan = plan_cells(model, sweep=sweep) if sweep else plan_cells(model, reinit_only=True)
        rows = [{"cell": s.name, "part": s.part, "cutoff": s.cutoff, "indices": list(s.indices),
                 "retrained": ",".join(plan.names[i] for i in s.indices) or "none",
                 "clean_accuracy": 0.5, "robust_accuracy": 0.2} for s in plan.selections]
        out = tmp_path / str(sweep)
        out.mkdir()
        write_outputs(out, plan, reference, rows, sweep=sweep, title="t", header={"mode": "adversarial"})
        assert (out / figure).stat().st_size > 1000
        results = json.loads((out / "results.json").read_text())
        assert results["pretrained_accuracy"] == reference and len(results["cells"]) == len(plan.selections)
        table = (out / "results.csv").read_text().splitlines()
        assert len(table) == 2 + len(plan.selections) and table[1].startswith("pretrained,,,none")
        assert (out / "combinations.csv").exists() == (sweep == "combinations")


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
