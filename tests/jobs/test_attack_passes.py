"""``AttackPasses``: the stored passes equal ``adversarial_pairs`` bit for bit (several chunks, a short last
batch), a resumed run attacks nothing again, and an empty split yields nothing."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from advtf.adversarial import AttackRequest
from advtf.analysis.pairs import adversarial_pairs
from advtf.attacks import Threat
from advtf.inputs import DataRequest
from advtf.jobs import attack_passes as passes_module
from advtf.jobs.attack_passes import AttackPasses
from advtf.runs.resume import ResumeStore

DATA = DataRequest(dataset="digits", test_subset=30, seed=2)
# Mostly the random start (drawn from the batch's seed): a wrong batch index changes the images.
PGD = AttackRequest(name="pgd", threat=Threat(norm="linf", eps=0.3, steps=1, step_size=1e-3, random_start=True))
TARGETED = AttackRequest(name="pgd", threat=PGD.threat, targeted=True, target_mode="random")
BATCH = 4  # 30 images: 8 batches, the last of 2


@pytest.fixture(scope="module")
def splits():
    return DATA.load()


@pytest.fixture(scope="module")
def models():
    from advtf.models import create_model

    return [create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=s) for s in (0, 1)]


def _run(path):
    """What AttackPasses reads of a run directory: where to write, and a resume store read afresh."""
    path.mkdir(exist_ok=True)
    return SimpleNamespace(path=path, store=ResumeStore(path))


def _assert_same_batches(got: list[dict], expected: list[dict]) -> None:
    assert [len(b["label"]) for b in got] == [len(b["label"]) for b in expected]
    for a, b in zip(got, expected):
        assert sorted(a) == sorted(b)
        for key in b:
            x, y = np.asarray(a[key]), np.asarray(b[key])
            assert x.shape == y.shape and x.dtype == y.dtype, key
            assert x.tobytes() == y.tobytes(), key  # bit for bit


def test_stored_passes_equal_adversarial_pairs_bit_for_bit(splits, models, tmp_path, monkeypatch):
    monkeypatch.setattr(passes_module, "CHUNK_BATCHES", 3)  # chunks of 12: 12 + 12 + 6, batches 4 4 4 | .. | 4 2
    passes = AttackPasses.of_test_split(_run(tmp_path), splits, batch_size=BATCH, seed=DATA.seed)
    for model in models:
        for request in (PGD, TARGETED):
            passes.add(model, request)
    passes.add(models[0], PGD)  # registered once
    assert len(passes._passes) == 4
    passes.run_all()
    for model in models:
        for request in (PGD, TARGETED):
            got = list(passes.pairs(model, splits, request, batch_size=BATCH, seed=DATA.seed))
            expected = list(adversarial_pairs(model, splits, request, batch_size=BATCH, seed=DATA.seed))
            assert len(expected) == 8 and len(expected[-1]["label"]) == 2
            _assert_same_batches(got, expected)
    # the two models' passes differ (the comparison above could not pass with one pass read for both)
    a = np.concatenate([b["image"] for b in passes.pairs(models[0], splits, PGD, batch_size=BATCH, seed=DATA.seed)])
    b = np.concatenate([b["image"] for b in passes.pairs(models[1], splits, PGD, batch_size=BATCH, seed=DATA.seed)])
    assert not np.array_equal(a, b)
    with pytest.raises(ValueError, match="batch size"):
        next(passes.pairs(models[0], splits, PGD, batch_size=BATCH + 1, seed=DATA.seed))
    with pytest.raises(KeyError):
        next(passes.pairs(models[0], splits, AttackRequest(name="fgsm", threat=PGD.threat), batch_size=BATCH,
                          seed=DATA.seed))


def test_a_resumed_run_attacks_nothing_again(splits, models, tmp_path, monkeypatch):
    monkeypatch.setattr(passes_module, "CHUNK_BATCHES", 3)
    real, calls = passes_module.attack_batches, []

    def counting(*args, **kwargs):
        calls.append(kwargs["start"])
        return real(*args, **kwargs)

    monkeypatch.setattr(passes_module, "attack_batches", counting)
    first = AttackPasses.of_test_split(_run(tmp_path), splits, batch_size=BATCH, seed=DATA.seed)
    for model in models:
        first.add(model, PGD)
    first.run_all()
    assert calls == list(range(8)) * 2
    stored = [list(first.pairs(m, splits, PGD, batch_size=BATCH, seed=DATA.seed)) for m in models]
    calls.clear()
    again = AttackPasses.of_test_split(_run(tmp_path), splits, batch_size=BATCH, seed=DATA.seed)  # a resumed run
    for model in models:
        again.add(model, PGD)
    again.run_all()
    resumed = [list(again.pairs(m, splits, PGD, batch_size=BATCH, seed=DATA.seed)) for m in models]
    assert calls == []
    for a, b in zip(resumed, stored):
        _assert_same_batches(a, b)


def test_a_crash_mid_pass_keeps_the_finished_chunks(splits, models, tmp_path, monkeypatch):
    monkeypatch.setattr(passes_module, "CHUNK_BATCHES", 3)
    real, calls = passes_module.attack_batches, []

    def crashing(*args, **kwargs):
        calls.append(kwargs["start"])
        if kwargs["start"] == 4:  # the second batch of chunk 1: chunk 0 (batches 0-2) is stored
            raise RuntimeError("machine lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(passes_module, "attack_batches", crashing)
    passes = AttackPasses.of_test_split(_run(tmp_path), splits, batch_size=BATCH, seed=DATA.seed)
    passes.add(models[0], PGD)
    with pytest.raises(RuntimeError, match="machine lost"):
        passes.run_all()
    calls.clear()
    monkeypatch.setattr(passes_module, "attack_batches", lambda *a, **k: (calls.append(k["start"]), real(*a, **k))[1])
    again = AttackPasses.of_test_split(_run(tmp_path), splits, batch_size=BATCH, seed=DATA.seed)
    again.add(models[0], PGD)
    again.run_all()
    assert calls == [3, 4, 5, 6, 7]
    _assert_same_batches(list(again.pairs(models[0], splits, PGD, batch_size=BATCH, seed=DATA.seed)),
                         list(adversarial_pairs(models[0], splits, PGD, batch_size=BATCH, seed=DATA.seed)))


def test_an_empty_split_yields_no_batches(splits, models, tmp_path, monkeypatch):
    monkeypatch.setattr(passes_module, "attack_batches", lambda *a, **k: pytest.fail("nothing to attack"))
    empty = dataclasses.replace(splits, test=splits.test.take(0), sizes={**splits.sizes, "test": 0})
    passes = AttackPasses.of_test_split(_run(tmp_path), empty, batch_size=BATCH, seed=DATA.seed)
    passes.add(models[0], PGD)
    passes.run_all()
    assert list(passes.pairs(models[0], empty, PGD, batch_size=BATCH, seed=DATA.seed)) == []
    assert list(adversarial_pairs(models[0], empty, PGD, batch_size=BATCH, seed=DATA.seed)) == []


class Bar:
    """A progress bar that records what it was told."""

    made: list["Bar"] = []

    def __init__(self, total, desc, unit):
        self.total, self.desc, self.counted, self.closed = total, desc, [], False
        Bar.made.append(self)

    def update(self, k):
        self.counted.append(k)

    def close(self):
        self.closed = True


def test_reading_a_pass_counts_its_examples_on_the_callers_bar(splits, models, tmp_path, monkeypatch):
    monkeypatch.setattr(passes_module, "CHUNK_BATCHES", 3)
    passes = AttackPasses.of_test_split(_run(tmp_path), splits, batch_size=BATCH, seed=DATA.seed)
    passes.add(models[0], PGD)
    passes.run_all()
    Bar.made.clear()
    batches = list(passes.pairs(models[0], splits, PGD, batch_size=BATCH, seed=DATA.seed, progress=Bar,
                                desc="filters"))
    (bar,) = Bar.made
    assert (bar.total, bar.desc, bar.closed) == (30, "filters", True)
    assert bar.counted == [len(b["label"]) for b in batches] == [4] * 7 + [2]
