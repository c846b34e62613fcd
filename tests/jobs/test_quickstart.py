"""The main job's plumbing at a tiny budget (the real budget runs from the README)."""

import hashlib
import json
import signal
from pathlib import Path

import pytest

import advtf.jobs.quickstart as quickstart
from advtf.jobs import execute
from advtf.jobs.quickstart import QuickstartRequest, QuickstartSettings
from advtf.runs import Interrupted

FASHION = Path("/usr/share/datasets/fashion-mnist")
TINY = QuickstartSettings(train_subset=200, test_subset=40, model="test_cnn", width=1.0, epochs=1,
                          batch_size=50, attack_steps=1, eval_steps=2, sweep=(0.0, 0.5, 1.0))

pytestmark = pytest.mark.skipif(not FASHION.exists(), reason="Debian's dataset-fashion-mnist is not installed")


def test_quickstart_writes_report_tables_and_both_runs(tmp_path):
    out = tmp_path / "qs"
    results = execute("quickstart", QuickstartRequest(settings=TINY), out=out)
    for kind in ("standard", "robust"):
        assert (out / kind / "model.keras").exists()
        assert not (out / kind / "resume").exists()
        assert 0 <= results[kind]["robust_accuracy"] <= results[kind]["clean_accuracy"] <= 1
    assert results["robust_gain"] == pytest.approx(
        results["robust"]["robust_accuracy"] - results["standard"]["robust_accuracy"])
    assert len(results["sweep"]) == 2 * len(TINY.sweep)
    assert json.loads((out / "results.json").read_text())["eps"] == TINY.eps
    report = (out / "report.md").read_text()
    assert "| standard |" in report and "accuracy_vs_eps.png" in report
    assert (out / "accuracy_vs_eps.png").stat().st_size > 1000
    assert (out / "accuracy_vs_eps.csv").read_text().startswith("model,eps,accuracy")


def test_resume_keeps_the_finished_training_run(tmp_path, monkeypatch):
    """Interrupted while training the robust model: --resume trains only that one, standard/ is untouched."""
    real = quickstart.train_and_evaluate
    trained = []

    def interrupt_robust(request, splits, directory, **kw):
        if request.robust:
            raise Interrupted(signal.SIGTERM)
        trained.append(directory.name)
        return real(request, splits, directory, **kw)

    out = tmp_path / "qs"
    monkeypatch.setattr(quickstart, "train_and_evaluate", interrupt_robust)
    with pytest.raises(Interrupted):
        execute("quickstart", QuickstartRequest(settings=TINY), out=out)
    partial = tmp_path / "qs.partial"
    assert not out.exists() and (partial / "standard" / "results.json").exists()
    standard_model = hashlib.sha256((partial / "standard" / "model.keras").read_bytes()).hexdigest()

    def count(request, splits, directory, **kw):
        trained.append(directory.name)
        return real(request, splits, directory, **kw)

    monkeypatch.setattr(quickstart, "train_and_evaluate", count)
    results = execute("quickstart", QuickstartRequest(settings=TINY), out=out, resume=True)
    assert trained == ["standard", "robust"]  # standard once (first run), robust once (the resume)
    assert hashlib.sha256((out / "standard" / "model.keras").read_bytes()).hexdigest() == standard_model
    assert results["robust"]["clean_accuracy"] >= 0 and not partial.exists()
    assert not any(out.rglob("resume"))
