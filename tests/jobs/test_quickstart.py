"""The main job's plumbing at a tiny budget (the real budget runs from the README)."""

import json
from pathlib import Path

import pytest

from advtf.quickstart import QuickstartSettings, run_quickstart

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FASHION.exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_quickstart_writes_report_tables_and_both_runs(tmp_path):
    settings = QuickstartSettings(train_subset=200, test_subset=40, model="test_cnn", width=1.0, epochs=1,
                                  batch_size=50, attack_steps=1, eval_steps=2, sweep=(0.0, 0.5, 1.0))
    results = run_quickstart(tmp_path, settings=settings)
    for kind in ("standard", "robust"):
        assert (tmp_path / kind / "model.keras").exists()
        assert 0 <= results[kind]["robust_accuracy"] <= results[kind]["clean_accuracy"] <= 1
    assert results["robust_gain"] == pytest.approx(
        results["robust"]["robust_accuracy"] - results["standard"]["robust_accuracy"])
    assert len(results["sweep"]) == 2 * len(settings.sweep)
    assert json.loads((tmp_path / "results.json").read_text())["eps"] == settings.eps
    report = (tmp_path / "report.md").read_text()
    assert "| standard |" in report and "accuracy_vs_eps.png" in report
    assert (tmp_path / "accuracy_vs_eps.png").stat().st_size > 1000
    assert (tmp_path / "accuracy_vs_eps.csv").read_text().startswith("model,eps,accuracy")
