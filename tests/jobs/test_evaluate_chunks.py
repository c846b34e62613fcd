"""``advtf evaluate`` counts by resumable chunk: the accuracies of one uninterrupted pass over the batched split,
also after a crash and --resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advtf.attacks import Threat
from advtf.data import make_batches
from advtf.evaluation import Evaluator, evaluate
from advtf.inputs import DataRequest
from advtf.jobs import attack as attack_job
from advtf.jobs import execute
from advtf.jobs.evaluate import EvaluateRequest

DATA = DataRequest(dataset="digits", test_subset=30, seed=2)
# Mostly the random start (drawn from the batch's seed): a wrong batch index changes the robust count.
THREAT = Threat(norm="linf", eps=0.3, steps=1, step_size=1e-3, random_start=True)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from advtf.models import create_model, save_model

    import keras

    from advtf.data import load_dataset, split_arrays

    net = create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=0)
    x, y = split_arrays(load_dataset("digits", train_subset=400, seed=0).train)
    net.compile(optimizer=keras.optimizers.Adam(0.01), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(x, y, epochs=4, batch_size=50, verbose=0)  # a model whose robust accuracy the noise can move
    return save_model(net, tmp_path_factory.mktemp("model") / "model.keras")


@pytest.fixture(scope="module")
def one_pass(model):
    from advtf.inputs import load_trained_model

    return evaluate(load_trained_model(model), make_batches(DATA.load().test, 4, training=False), threat=THREAT,
                    seed=DATA.seed)


def _request(model):
    return EvaluateRequest(model=str(model), threat=THREAT, data=DATA, batch_size=4, checks=False)


def test_chunked_counts_equal_one_pass(model, one_pass, tmp_path, monkeypatch):
    monkeypatch.setattr(attack_job, "CHUNK_EXAMPLES", 8)  # 30 examples: chunks of 2 batches, the last one short
    results = execute("evaluate", _request(model), out=tmp_path / "ev")
    assert 0 < one_pass["n"] == results["n"] == 30
    assert (results["clean_accuracy"], results["robust_accuracy"]) == (one_pass["clean_accuracy"],
                                                                       one_pass["robust_accuracy"])


def test_a_crashed_evaluation_resumes_to_the_same_counts(model, one_pass, tmp_path, monkeypatch):
    monkeypatch.setattr(attack_job, "CHUNK_EXAMPLES", 8)
    real, calls = Evaluator.sums, []

    def crashing(self, *args, **kwargs):
        calls.append(kwargs.get("start"))
        if len(calls) == 4:  # the second batch of chunk 1: chunk 0 is finished
            raise RuntimeError("machine lost")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Evaluator, "sums", crashing)
    with pytest.raises(RuntimeError, match="machine lost"):
        execute("evaluate", _request(model), out=tmp_path / "ev")
    assert calls == [0, 1, 2, 3]
    monkeypatch.setattr(Evaluator, "sums", real)
    results = execute("evaluate", _request(model), out=tmp_path / "ev", resume=True)
    assert (results["clean_accuracy"], results["robust_accuracy"]) == (one_pass["clean_accuracy"],
                                                                       one_pass["robust_accuracy"])
    assert json.loads((tmp_path / "ev" / "manifest.json").read_text())["resumed"] is True
