"""``advtf cam`` and ``advtf psr`` attack first, by resumable pass (:class:`advtf.jobs.attack_passes.AttackPasses`):
their scores, grid statistics and refined attacks equal the inline analysis (``adversarial_pairs``), also after a
crash and --resume, and on two cluster workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from advtf.adversarial import AttackRequest
from advtf.analysis.cam import MapMaker
from advtf.analysis.interpret import cam_statistics, psr_statistics
from advtf.analysis.psr import grid_masks
from advtf.attacks import Threat
from advtf.inputs import DataRequest, load_models
from advtf.jobs import attack_passes, execute
from advtf.jobs.cam import CamRequest
from advtf.jobs.psr import PsrRequest

DATA = DataRequest(dataset="digits", test_subset=14, seed=2)
# Targets are drawn from each batch's seed: a batch attacked with another seed changes the pairs.
ATTACK = AttackRequest(name="ifgsm", threat=Threat(norm="linf", eps=0.2, steps=3), targeted=True)
BATCH = 4  # 14 images: 4 batches, the last one short


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[str]:
    import keras

    from advtf.data import load_dataset, split_arrays
    from advtf.models import create_model, save_model

    root = tmp_path_factory.mktemp("interpret-models")
    x, y = split_arrays(load_dataset("digits", train_subset=400, seed=0).train)
    out = []
    for name, seed in (("a", 0), ("b", 1)):
        net = create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=seed)
        net.compile(optimizer=keras.optimizers.Adam(0.01),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        net.fit(x, y, epochs=4, batch_size=50, verbose=0)
        out.append(str(save_model(net, root / f"{name}.keras")))
    return out


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(attack_passes, "CHUNK_BATCHES", 2)  # chunks of 8 images: 2 per pass, the last one short


def _cam(models) -> CamRequest:
    return CamRequest(models=tuple(models), attack=ATTACK, data=DATA, examples=2, batch_size=BATCH)


def _psr(models) -> PsrRequest:
    return PsrRequest(models=(models[0],), attack=ATTACK, data=DATA, grid=4, refine=("s1", "s2"), examples=2,
                      batch_size=BATCH, chunk=64)


@pytest.fixture(scope="module")
def cam_expected(models) -> list[dict]:
    """Per model, the statistics of the inline analysis (each attack through adversarial_pairs)."""
    splits = DATA.load()
    return [cam_statistics(m, MapMaker(m, "cam"), splits, ATTACK, examples=2, batch_size=BATCH,
                           seed=DATA.seed)["stats"] for m in load_models(models, splits.info)]


@pytest.fixture(scope="module")
def psr_expected(models) -> dict:
    splits = DATA.load()
    (model,) = load_models(models[:1], splits.info)
    found = psr_statistics(model, MapMaker(model, "cam"), splits, ATTACK, grid_masks(16, 16, 4, 4), xi=1e-4,
                           refine=("s1", "s2"), examples=2, batch_size=BATCH, chunk=64, seed=DATA.seed)
    refine = {r: {k: v for k, v in summary.items() if k != "figure"} for r, summary in found["refine"].items()}
    return {"stats": found["stats"], "refine": refine}


def _same_cam(results: dict, expected: list[dict]) -> None:
    assert [{k: row[k] for k in stats} for row, stats in zip(results["rows"], expected)] == expected
    assert len(results["rows"]) == 2 and all(stats["pairs"] > 0 for stats in expected)


def _same_psr(results: dict, expected: dict) -> None:
    (row,) = results["rows"]
    assert {k: row[k] for k in expected["stats"]} == expected["stats"] and row["pairs"] > 0
    refined = {r["refine"]: r for r in results["refine"]}
    assert set(refined) == {"s1", "s2"}
    for r, summary in expected["refine"].items():
        assert {k: refined[r][k] for k in summary} == summary, r


def test_cam_from_stored_passes_equals_the_inline_analysis(models, cam_expected, small_chunks, tmp_path):
    results = execute("cam", _cam(models), out=tmp_path / "cam")
    _same_cam(results, cam_expected)
    _same_cam(json.loads((tmp_path / "cam" / "results.json").read_text()), cam_expected)
    assert len((tmp_path / "cam" / "examples.csv").read_text().splitlines()) == 1 + sum(
        s["pairs"] for s in cam_expected)


def test_psr_from_stored_passes_equals_the_inline_analysis(models, psr_expected, small_chunks, tmp_path):
    results = execute("psr", _psr(models), out=tmp_path / "psr")
    _same_psr(results, psr_expected)
    _same_psr(json.loads((tmp_path / "psr" / "results.json").read_text()), psr_expected)


def _crash_then_resume(monkeypatch, name: str, request, out: Path, crash_at: int) -> tuple[list, list, dict]:
    """Runs the job with the attack failing at its ``crash_at``-th batch, then --resume; the batch indices
    attacked by each run and the resumed results."""
    real, calls, resumed = attack_passes.attack_batches, [], []

    def crashing(*args, **kwargs):
        calls.append(kwargs["start"])
        if len(calls) == crash_at:
            raise RuntimeError("machine lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(attack_passes, "attack_batches", crashing)
    with pytest.raises(RuntimeError, match="machine lost"):
        execute(name, request, out=out)
    monkeypatch.setattr(attack_passes, "attack_batches",
                        lambda *args, **kwargs: (resumed.append(kwargs["start"]), real(*args, **kwargs))[1])
    results = execute(name, request, out=out, resume=True)
    assert json.loads((out / "manifest.json").read_text())["resumed"] is True
    return calls, resumed, results


def test_a_crashed_cam_resumes_without_redoing_finished_chunks(models, cam_expected, small_chunks, tmp_path,
                                                               monkeypatch):
    # the second model's chunk 1 fails: the first model's pass and the second's chunk 0 are kept
    calls, resumed, results = _crash_then_resume(monkeypatch, "cam", _cam(models), tmp_path / "cam", crash_at=7)
    assert calls == [0, 1, 2, 3, 0, 1, 2] and resumed == [2, 3]
    _same_cam(results, cam_expected)


def test_a_crashed_psr_resumes_without_redoing_finished_chunks(models, psr_expected, small_chunks, tmp_path,
                                                               monkeypatch):
    calls, resumed, results = _crash_then_resume(monkeypatch, "psr", _psr(models), tmp_path / "psr", crash_at=3)
    assert calls == [0, 1, 2] and resumed == [2, 3]
    _same_psr(results, psr_expected)


@pytest.mark.slow
def test_cam_and_psr_on_two_workers_equal_one_process(models, tmp_path):
    from test_cluster_jobs import ENV, assert_same_results, finished, on_cluster

    small = [sys.executable, "-P", "-c", "import advtf.jobs.attack_passes as p; p.CHUNK_BATCHES = 2; "
             "from advtf.cli.main import main; main()"]
    common = ["--dataset", "digits", "--test-subset", "30", "--attack", "ifgsm", "--norm", "linf", "--eps", "0.2",
              "--steps", "3", "--targeted", "--batch-size", "4", "--examples", "2", "--quiet"]
    for args, tables in ((["cam", *models, *common], ("cam.csv", "examples.csv")),
                         (["psr", models[0], *common, "--grid", "4", "--refine", "s1", "--refine", "s2"],
                          ("psr.csv", "refine.csv"))):
        one, two = tmp_path / f"{args[0]}-one", tmp_path / f"{args[0]}-two"
        done = subprocess.run([*small, *map(str, args), "--out", str(one)], capture_output=True, text=True, env=ENV,
                              timeout=400)
        assert done.returncode == 0, done.stderr[-2000:]
        chief, worker = finished(on_cluster([*args, "--out", two], commands={0: small, 1: small}))
        assert chief.returncode == 0 and worker.returncode == 0, chief.stderr[-3000:] + worker.stderr[-3000:]
        assert "worker 1 of 2 finished its share" in worker.stdout
        assert not two.with_name(two.name + ".partial").exists()
        assert_same_results(two, one, tables)
