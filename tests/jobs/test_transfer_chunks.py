"""``advtf transfer-eval`` and ``advtf robust-table`` count by resumable chunk: the numbers of one uninterrupted
pass (:func:`transfer_matrix`, :func:`accuracy_matrix` on the batched split), also after a crash and --resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advtf.adversarial import AttackRequest
from advtf.analysis.robust_table import accuracy_matrix
from advtf.analysis.transfer import transfer_matrix
from advtf.attacks import Threat
from advtf.data import make_batches
from advtf.inputs import DataRequest
from advtf.jobs import attack as attack_job
from advtf.jobs import execute
from advtf.jobs import robust_table as table_job
from advtf.jobs import transfer_eval as transfer_job
from advtf.jobs.robust_table import RobustTableRequest
from advtf.jobs.transfer_eval import TransferRequest

DATA = DataRequest(dataset="digits", test_subset=30, seed=2)
# Mostly the random start (drawn from the batch's seed): a wrong batch index changes the counts.
THREAT = Threat(norm="linf", eps=0.3, steps=1, step_size=1e-3, random_start=True)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    import keras

    from advtf.data import load_dataset, split_arrays
    from advtf.models import create_model, save_model

    root = tmp_path_factory.mktemp("models")
    x, y = split_arrays(load_dataset("digits", train_subset=400, seed=0).train)
    out = {}
    for name, seed, epochs in (("a", 0, 4), ("b", 1, 2)):
        net = create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=seed)
        net.compile(optimizer=keras.optimizers.Adam(0.01),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        net.fit(x, y, epochs=epochs, batch_size=50, verbose=0)
        out[name] = save_model(net, root / f"{name}.keras")
    return out


def _transfer(models, targeted):
    attack = AttackRequest(name="pgd", threat=THREAT, targeted=targeted)
    return TransferRequest(sources={"0.5": str(models["b"]), "0": str(models["a"])},
                           victims={"b": str(models["b"]), "a": str(models["a"])}, attack=attack, data=DATA,
                           batch_size=4)


def _one_pass(models, request: TransferRequest) -> dict:
    from advtf.inputs import load_trained_model

    sources = {"0": load_trained_model(models["a"]), "0.5": load_trained_model(models["b"])}  # by eps
    victims = {v: load_trained_model(p) for v, p in request.victims.items()}
    matrix = transfer_matrix(sources, victims, make_batches(DATA.load().test, 4, training=False), request.attack,
                             num_classes=10, seed=DATA.seed)
    matrix.pop("targets")
    return matrix


@pytest.mark.parametrize("targeted", [False, True])
def test_chunked_transfer_equals_one_pass(models, tmp_path, monkeypatch, targeted):
    monkeypatch.setattr(attack_job, "CHUNK_EXAMPLES", 8)  # 30 examples: chunks of 2 batches, the last one short
    request = _transfer(models, targeted)
    results = execute("transfer-eval", request, out=tmp_path / "tr")
    expected = _one_pass(models, request)
    assert results["n"] == 30 and {k: results[k] for k in expected} == expected
    assert json.loads((tmp_path / "tr" / "results.json").read_text())["table"] == expected["table"]
    assert list(results["table"]) == ["0", "0.5"] and list(results["clean"]) == ["b", "a"]


def test_a_crashed_transfer_eval_resumes_to_the_same_numbers(models, tmp_path, monkeypatch):
    monkeypatch.setattr(attack_job, "CHUNK_EXAMPLES", 8)
    real, calls = transfer_job.transfer_batch_counts, []

    def crashing(*args, **kwargs):
        calls.append(kwargs["batch"])
        if len(calls) == 4:  # the second batch of chunk 1: chunk 0 is finished
            raise RuntimeError("machine lost")
        return real(*args, **kwargs)

    request = _transfer(models, False)
    monkeypatch.setattr(transfer_job, "transfer_batch_counts", crashing)
    with pytest.raises(RuntimeError, match="machine lost"):
        execute("transfer-eval", request, out=tmp_path / "tr")
    resumed = []

    def counting(*args, **kwargs):
        resumed.append(kwargs["batch"])
        return real(*args, **kwargs)

    monkeypatch.setattr(transfer_job, "transfer_batch_counts", counting)
    results = execute("transfer-eval", request, out=tmp_path / "tr", resume=True)
    assert calls == [0, 1, 2, 3] and resumed == list(range(2, 8))  # chunk 0 (batches 0, 1) was kept
    expected = _one_pass(models, request)
    assert {k: results[k] for k in expected} == expected
    assert json.loads((tmp_path / "tr" / "manifest.json").read_text())["resumed"] is True


def _table(models):
    return RobustTableRequest(classifiers={"b": str(models["b"]), "a": str(models["a"])},
                              testsets={"Test": "digits", "Other": "digits"},
                              data=DataRequest(dataset="digits", test_subset=30, train_subset=20, seed=2),
                              batch_size=4)


def _table_one_pass(models, request: RobustTableRequest) -> dict:
    from advtf.inputs import load_trained_model

    classifiers = {c: load_trained_model(p) for c, p in request.classifiers.items()}
    test = request.data.load()
    return accuracy_matrix(classifiers, {"Test": make_batches(test.test, 4, training=False),
                                         "Other": make_batches(test.test, 4, training=False)})


def test_chunked_robust_table_equals_one_pass_and_resumes(models, tmp_path, monkeypatch):
    monkeypatch.setattr(attack_job, "CHUNK_EXAMPLES", 8)
    request = _table(models)
    expected = _table_one_pass(models, request)
    execute("robust-table", request, out=tmp_path / "one")
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    assert {k: one[k] for k in expected} == expected
    real, calls = table_job.batch_hits, []

    def crashing(*args):
        calls.append(1)
        if len(calls) == 11:  # 8 batches of the first test set, then chunk 1 of the second: its chunk 0 is kept
            raise RuntimeError("machine lost")
        return real(*args)

    monkeypatch.setattr(table_job, "batch_hits", crashing)
    with pytest.raises(RuntimeError, match="machine lost"):
        execute("robust-table", request, out=tmp_path / "tr")
    monkeypatch.setattr(table_job, "batch_hits", real)
    calls.clear()
    monkeypatch.setattr(table_job, "batch_hits", lambda *args: (calls.append(1), real(*args))[1])
    results = execute("robust-table", request, out=tmp_path / "tr", resume=True)
    assert {k: results[k] for k in expected} == expected
    done = json.loads((tmp_path / "tr" / "manifest.json").read_text())
    assert done["resumed"] is True and len(calls) == 6  # only chunks 1-3 of the second test set again
    assert (tmp_path / "tr" / "accuracy.csv").read_bytes() == (tmp_path / "one" / "accuracy.csv").read_bytes()
