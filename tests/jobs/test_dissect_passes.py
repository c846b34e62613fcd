"""``advtf dissect``'s attack (Eq. 8) as a stored, chunked pass: the job's sensitivities equal the
inline attack's bit for bit, a crash mid-attack resumes without redoing finished chunks, and two
cluster workers give the outputs of one process."""

from __future__ import annotations

import json

import numpy as np
import pytest

from advtf.adversarial import AttackRequest
from advtf.attacks import Threat

ATTACK = AttackRequest("pgd", Threat(norm="linf", eps=0.1, steps=2, step_size=None, restarts=1))
# 20 attacked images in batches of 2 (10 batches): chunks of 8 batches, batches 0-7 and 8-9
OPTIONS = dict(layers=("m0",), concept_images=20, attack_images=20, ns=(5,), draws=100, batch_size=2,
               show_images=2, show_units=2, seed=3)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from advtf.models import create_model, save_model

    path = tmp_path_factory.mktemp("dissect-model") / "m.keras"
    return save_model(create_model("test_cnn", input_shape=(12, 12, 1), num_classes=10, seed=0), path)


def _request(model_path):
    from advtf.jobs.dissect import DissectRequest

    return DissectRequest(model=str(model_path), attack=ATTACK, **OPTIONS)


def _inline(model_path):
    """Thresholds and Eq. 8 with the analysis' own inline attack (no job, no stored pass)."""
    import dataclasses

    from advtf.analysis.dissect import dissection_extractor, sensitivity_pass, thresholds_pass
    from advtf.data.concepts import synthetic_concepts
    from advtf.inputs import load_trained_model

    model = load_trained_model(str(model_path))
    extractor = dissection_extractor(model, ["m0"])
    concepts = synthetic_concepts(20, (12, 12), seed=3)
    thresholds, _ = thresholds_pass(extractor, concepts, (12, 12, 1), ["m0"], 0.005, batch_size=2,
                                    budget=1 << 25)
    attack = dataclasses.replace(ATTACK, attack_target="prediction")
    return sensitivity_pass(model, extractor, concepts, (12, 12, 1), ["m0"], thresholds, attack, count=20,
                            batch_size=2, seed=3, keep=2)


def _sensitivity(results) -> np.ndarray:
    return np.array([row["sensitivity"] for row in results["layers"]["m0"]["unit_rows"]])


@pytest.fixture(scope="module")
def expected(model_path):
    return _inline(model_path)


def test_the_stored_attack_gives_the_inline_sensitivities_bit_for_bit(model_path, expected, tmp_path):
    from advtf.jobs import execute

    results = execute("dissect", _request(model_path), out=tmp_path / "d")
    sensitivity, success_rate, attacked, _ = expected
    assert attacked == results["attack_images"] == 20
    assert results["attack_success_rate"] == success_rate
    assert _sensitivity(results).tolist() == sensitivity["m0"].tolist()
    assert sensitivity["m0"].max() > 0  # the attack flipped some mask pixels: the comparison is not of zeros
    assert json.loads((tmp_path / "d" / "results.json").read_text())["attack_success_rate"] == success_rate


def test_a_crash_mid_attack_resumes_without_redoing_finished_chunks(model_path, expected, tmp_path, monkeypatch):
    import advtf.jobs.attack_passes as passes_module
    from advtf.jobs import execute

    real, calls = passes_module.attack_batches, []

    def crashing(*args, **kwargs):
        calls.append(kwargs["seed"] - 3)  # batch b is seeded [seed + b, 0]
        if len(calls) == 9:  # the first batch of chunk 1: chunk 0 (batches 0-7) is finished
            raise RuntimeError("machine lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(passes_module, "attack_batches", crashing)
    with pytest.raises(RuntimeError, match="machine lost"):
        execute("dissect", _request(model_path), out=tmp_path / "d")
    partial = tmp_path / "d.partial"
    assert json.loads((partial / "resume" / "done.json").read_text())["done"] == ["pass0_00000"]
    kept = (partial / "resume" / "pass0_00000").stat().st_mtime_ns
    resumed = []

    def counting(*args, **kwargs):
        resumed.append(kwargs["seed"] - 3)
        return real(*args, **kwargs)

    monkeypatch.setattr(passes_module, "attack_batches", counting)
    results = execute("dissect", _request(model_path), out=tmp_path / "d", resume=True)
    assert calls == list(range(9)) and resumed == [8, 9]
    assert kept and json.loads((tmp_path / "d" / "manifest.json").read_text())["resumed"] is True
    sensitivity, success_rate, _, _ = expected
    assert results["attack_success_rate"] == success_rate
    assert _sensitivity(results).tolist() == sensitivity["m0"].tolist()


@pytest.mark.slow
def test_dissect_on_two_workers_equals_one_process(model_path, tmp_path):
    import subprocess

    from test_cluster_jobs import ADVTF, ENV, assert_same_results, finished, on_cluster

    args = ["dissect", model_path, "--layers", "m0", "--concept-images", "20", "--attack-images", "20",
            "--batch-size", "2", "--top-n", "5", "--draws", "100", "--show-images", "2", "--show-units", "2",
            "--seed", "3", "--norm", "linf", "--eps", "0.1", "--steps", "2", "--quiet"]
    one = subprocess.run([*ADVTF, *map(str, args), "--out", str(tmp_path / "one")], capture_output=True,
                         text=True, env=ENV, timeout=400)
    assert one.returncode == 0, one.stderr[-2000:]
    chief, worker = finished(on_cluster([*args, "--out", tmp_path / "two"]))  # auto: TF_CONFIG is set
    assert chief.returncode == 0 and worker.returncode == 0, chief.stderr[-3000:] + worker.stderr[-3000:]
    assert "worker 1 of 2 finished its share" in worker.stdout
    assert not (tmp_path / "two.partial").exists()  # the chief committed
    assert_same_results(tmp_path / "one", tmp_path / "two",
                        ("units.csv", "units.md", "detectors.csv", "pvalues.csv", "segmentation_m0.png"))
