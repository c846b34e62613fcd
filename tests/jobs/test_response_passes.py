"""``advtf response`` attacks first, by resumable pass (:class:`advtf.jobs.attack_passes.AttackPasses`): its
tables, checkpoint curves and activation-map pair equal the inline analysis (``adversarial_pairs``), also after
a crash and --resume, and on two cluster workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from advtf.adversarial import AttackRequest
from advtf.analysis import response as analysis
from advtf.attacks import Threat
from advtf.inputs import DataRequest, load_models
from advtf.jobs import attack_passes, execute
from advtf.jobs.response import ResponseRequest

DATA = DataRequest(dataset="digits", test_subset=14, seed=2)
# Mostly the random start (drawn from the batch's seed): a batch attacked with another seed changes the numbers.
PGD = AttackRequest(name="pgd", threat=Threat(norm="linf", eps=0.3, steps=1, step_size=1e-3, random_start=True))
FGSM = AttackRequest(name="fgsm", threat=Threat(norm="linf", eps=0.1))
BATCH = 4  # 14 images: 4 batches, the last one short


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Two fitted models ``a``, ``b`` and a run of two (untrained) checkpoints."""
    import keras

    from advtf.data import load_dataset, split_arrays
    from advtf.models import create_model, save_model

    root = tmp_path_factory.mktemp("response-models")
    x, y = split_arrays(load_dataset("digits", train_subset=200, seed=0).train)
    out = {}
    for name, seed in (("a", 0), ("b", 1)):
        net = create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=seed)
        net.compile(optimizer=keras.optimizers.Adam(0.01),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        net.fit(x, y, epochs=1, batch_size=50, verbose=0)
        out[name] = save_model(net, root / f"{name}.keras")
    (root / "ckpt" / "epochs").mkdir(parents=True)
    for epoch, seed in ((1, 2), (2, 3)):
        save_model(create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=seed),
                   root / "ckpt" / "epochs" / f"epoch_{epoch:03d}.keras")
    out["ckpt"] = root / "ckpt"
    return out


def _request(models) -> ResponseRequest:
    return ResponseRequest(models=(str(models["a"]), str(models["b"])), attack=PGD, data=DATA, batch_size=BATCH,
                           also=(FGSM,), adv_from=(str(models["a"]),), checkpoints=(str(models["ckpt"]),),
                           activation_maps="m1", channels=2)


@pytest.fixture(scope="module")
def expected(models) -> dict:
    """The inline analysis: every attack through adversarial_pairs, batch by batch, no stored pass."""
    from advtf.analysis.response import activation_map_pair, epoch_row, response_tables

    request, splits = _request(models), DATA.load()
    paths = list(request.models)
    loaded = load_models(paths, splits.info)
    (adv,) = load_models(request.adv_from, splits.info)
    layers = analysis.default_layers(loaded[0])
    rows, notes = response_tables(paths, loaded, splits, [PGD, FGSM], layers=layers, adv_from=request.adv_from,
                                  adv_models=[adv], batch_size=BATCH, seed=DATA.seed)
    curves = []
    for epoch in (1, 2):
        path = models["ckpt"] / "epochs" / f"epoch_{epoch:03d}.keras"
        table, _ = response_tables([path], load_models([path], splits.info), splits, [PGD], layers=layers,
                                   batch_size=BATCH, seed=DATA.seed)
        curves.append(epoch_row("ckpt", epoch, table, layers))
    _, pair = activation_map_pair(paths, loaded, splits, PGD, layer="m1", channels=2, batch_size=BATCH,
                                  seed=DATA.seed)
    return {"rows": rows, "notes": notes, "checkpoints": curves, "activation_maps": {**pair, "layer": "m1"},
            "layers": layers}


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(attack_passes, "CHUNK_BATCHES", 2)  # chunks of 8 images: 2 per pass, the last one short


def _same(results: dict, expected: dict) -> None:
    assert {k: results[k] for k in expected} == expected
    assert len(results["rows"]) == 2 * 3 * 3  # (a own, b own, b from a) x 2 attacks x 3 splits
    assert [c["epoch"] for c in results["checkpoints"]] == [1, 2]


def test_response_from_stored_passes_equals_the_inline_analysis(models, expected, small_chunks, tmp_path):
    results = execute("response", _request(models), out=tmp_path / "r")
    _same(results, expected)
    assert {k: v for k, v in json.loads((tmp_path / "r" / "results.json").read_text()).items()
            if k in expected} == json.loads(json.dumps(expected))
    assert expected["rows"][0]["m0_max"] > 0 and expected["activation_maps"]["attacked_model"] == "a.keras"


def test_a_crashed_response_resumes_without_redoing_finished_chunks(models, expected, small_chunks, tmp_path,
                                                                     monkeypatch):
    real, calls = attack_passes.attack_batches, []

    def crashing(*args, **kwargs):
        calls.append(kwargs["start"])
        if len(calls) == 4:  # the second batch of the first pass's chunk 1: its chunk 0 is finished
            raise RuntimeError("machine lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(attack_passes, "attack_batches", crashing)
    with pytest.raises(RuntimeError, match="machine lost"):
        execute("response", _request(models), out=tmp_path / "r")
    resumed = []
    monkeypatch.setattr(attack_passes, "attack_batches",
                        lambda *args, **kwargs: (resumed.append(kwargs["start"]), real(*args, **kwargs))[1])
    results = execute("response", _request(models), out=tmp_path / "r", resume=True)
    assert calls == [0, 1, 2, 3]
    # 6 passes (pgd, fgsm on a and b; pgd on both checkpoints) of 4 batches; batches 0, 1 of the first were kept
    assert resumed == [2, 3] + list(range(4)) * 5
    _same(results, expected)
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["resumed"] is True


@pytest.mark.slow
def test_response_on_two_workers_equals_one_process(models, tmp_path):
    from test_cluster_jobs import ENV, assert_same_results, finished, on_cluster

    small = [sys.executable, "-P", "-c", "import advtf.jobs.attack_passes as p; p.CHUNK_BATCHES = 2; "
             "from advtf.cli.main import main; main()"]
    args = ["response", models["a"], "--compare", models["b"], "--adv-from", models["a"], "--also-attack", "fgsm",
            "--checkpoints", models["ckpt"], "--activation-maps", "m1", "--dataset", "digits", "--test-subset", "30",
            "--attack", "pgd", "--norm", "linf", "--eps", "0.3", "--steps", "2", "--batch-size", "4", "--quiet"]
    one = subprocess.run([*small, *map(str, args), "--out", str(tmp_path / "one")], capture_output=True, text=True,
                         env=ENV, timeout=400)
    assert one.returncode == 0, one.stderr[-2000:]
    chief, worker = finished(on_cluster([*args, "--out", tmp_path / "two"], commands={0: small, 1: small}))
    assert chief.returncode == 0 and worker.returncode == 0, chief.stderr[-3000:] + worker.stderr[-3000:]
    assert "worker 1 of 2 finished its share" in worker.stdout
    assert not (tmp_path / "two.partial").exists()
    assert_same_results(tmp_path / "two", tmp_path / "one", ("response.csv", "response.md", "checkpoints.csv"))
