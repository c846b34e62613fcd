"""``advtf frequency``, ``perturbations`` and ``features`` attack through resumable chunks
(:class:`advtf.jobs.attack_passes.AttackPasses`): their outputs equal the analysis fed by
``adversarial_pairs`` inline, also after a crash mid-attack and ``--resume`` (finished chunks are
not attacked again), and two cluster workers write what one process writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from advtf.adversarial import AttackRequest
from advtf.analysis.pairs import adversarial_pairs
from advtf.attacks import Threat
from advtf.inputs import DataRequest
from advtf.jobs import attack_passes as passes_module
from advtf.jobs import execute

DATA = DataRequest(dataset="digits", test_subset=18, seed=2)
# Mostly the random start (drawn from the batch's seed): a wrong batch index changes every number.
ATTACK = AttackRequest(name="pgd", threat=Threat(norm="linf", eps=0.3, steps=1, step_size=1e-3, random_start=True))
BATCH = 4  # 18 images: 5 batches, the last of 2; with CHUNK_BATCHES 2, chunks of batches 0-1, 2-3, 4
CHUNK_BATCHES = 2


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[Path]:
    import keras

    from advtf.data import load_dataset, split_arrays
    from advtf.models import create_model, save_model

    root = tmp_path_factory.mktemp("models")
    x, y = split_arrays(load_dataset("digits", train_subset=400, seed=0).train)
    out = []
    for name, seed, epochs in (("a", 0, 3), ("b", 1, 3)):
        net = create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=seed)
        net.compile(optimizer=keras.optimizers.Adam(0.01),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        keras.utils.set_random_seed(seed)  # fit's shuffling: the same models (and shown examples) every run
        net.fit(x, y, epochs=epochs, batch_size=50, verbose=0)
        out.append(save_model(net, root / f"{name}.keras"))
    return out


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(passes_module, "CHUNK_BATCHES", CHUNK_BATCHES)


def executed(name, request, out) -> Path:
    """``execute`` with small chunks, for module-scoped fixtures (no function-scoped monkeypatch there)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(passes_module, "CHUNK_BATCHES", CHUNK_BATCHES)
        execute(name, request, out=out)
    return Path(out)


def _loaded(paths):
    from advtf.inputs import load_trained_model

    return [load_trained_model(p) for p in paths]


def crash_then_resume(monkeypatch, name, request, out, *, crash_at: int) -> tuple[dict, list[tuple[int, int]]]:
    """Runs job ``name`` until the ``crash_at``-th attacked batch raises, then ``--resume``s it.

    Returns the resumed results and the (pass, batch) attacked on resume; a pass is told apart by
    its model object (each run loads its own).
    """
    real, calls = passes_module.attack_batches, []

    def crashing(model, *args, **kwargs):
        calls.append(kwargs["start"])
        if len(calls) == crash_at:
            raise RuntimeError("machine lost")
        return real(model, *args, **kwargs)

    monkeypatch.setattr(passes_module, "attack_batches", crashing)
    with pytest.raises(RuntimeError, match="machine lost"):
        execute(name, request, out=out)
    models, resumed = [], []

    def counting(model, *args, **kwargs):
        if not any(model is m for m in models):
            models.append(model)
        resumed.append((next(k for k, m in enumerate(models) if m is model), kwargs["start"]))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(passes_module, "attack_batches", counting)
    results = execute(name, request, out=out, resume=True)
    assert json.loads((Path(out) / "manifest.json").read_text())["resumed"] is True
    return results, resumed


# -- frequency ----------------------------------------------------------------------------------------------

RADII = (0.0, 2.0, 5.0, 12.0)


def _frequency_request(models):
    from advtf.jobs.frequency import FrequencyRequest

    return FrequencyRequest(models=tuple(map(str, models)), attack=ATTACK, data=DATA, batch_size=BATCH, radii=RADII)


@pytest.fixture(scope="module")
def frequency_inline(models) -> tuple[list[dict], np.ndarray]:
    """Each model's entry and the natural spectrum, from the analysis attacking inline."""
    from advtf.analysis.frequency import low_pass_masks, measure_model, model_entry

    splits = DATA.load()
    masks = low_pass_masks(16, 16, RADII)
    measured = [measure_model(m, splits, ATTACK, masks, batch_size=BATCH, seed=DATA.seed, natural=k == 0,
                              pairs=adversarial_pairs) for k, m in enumerate(_loaded(models))]
    natural = measured[0]["natural_log"] / measured[0]["n"]
    return [model_entry(p, m, natural, list(RADII), 4.0) for p, m in zip(models, measured)], natural


@pytest.fixture(scope="module")
def frequency_run(models, tmp_path_factory) -> Path:
    return executed("frequency", _frequency_request(models), tmp_path_factory.mktemp("frequency") / "f")


def _check_frequency(out: Path, expected) -> None:
    entries, natural = expected
    results = json.loads((out / "results.json").read_text())
    spectra = json.loads((out / "spectra.json").read_text())
    assert len(results["models"]) == 2
    for got, want in zip(results["models"], entries):
        assert got["n"] == 18
        for key in ("clean_accuracy", "adversarial_accuracy", "curves", "best_low_adversarial", "log_ratio_high",
                    "log_ratio_low"):
            assert got[key] == want[key], key
        np.testing.assert_array_equal(np.array(spectra[want["model"]]), want["adversarial_spectrum"])
    np.testing.assert_array_equal(np.array(spectra["natural"]), natural)
    rows = (out / "frequency.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * len(RADII)


def test_frequency_equals_the_inline_analysis(frequency_run, frequency_inline):
    _check_frequency(frequency_run, frequency_inline)


def test_frequency_crashed_mid_attack_resumes_without_attacking_finished_chunks(models, frequency_run,
                                                                                 frequency_inline, tmp_path,
                                                                                 monkeypatch, small_chunks):
    # the 9th batch is batch 3 of model b: model a's pass and b's chunk 0 (batches 0-1) are stored
    _, resumed = crash_then_resume(monkeypatch, "frequency", _frequency_request(models), tmp_path / "f", crash_at=9)
    assert resumed == [(0, 2), (0, 3), (0, 4)]  # one model (b) attacked again, from its chunk 1
    _check_frequency(tmp_path / "f", frequency_inline)
    for table in ("frequency.csv", "frequency.md", "spectra.json"):
        assert (tmp_path / "f" / table).read_bytes() == (frequency_run / table).read_bytes(), table


# -- perturbations ------------------------------------------------------------------------------------------


def _perturbations_request(models):
    from advtf.jobs.perturbations import PerturbationsRequest

    return PerturbationsRequest(models=tuple(map(str, models)), attack=ATTACK, data=DATA, batch_size=BATCH,
                                only="all", count=3)


@pytest.fixture(scope="module")
def perturbations_inline(models) -> tuple[list[dict], list[dict], np.ndarray]:
    """Per-model summaries, per-example rows and the shown indices from the analysis attacking inline."""
    from advtf.analysis.pairs import concat_rows
    from advtf.analysis.perturbations import model_summary, select_examples

    splits = DATA.load()
    attacked = [concat_rows(list(adversarial_pairs(m, splits, ATTACK, batch_size=BATCH, seed=DATA.seed)))
                for m in _loaded(models)]
    shown = select_examples([r["success"] for r in attacked], [r["clean_correct"] for r in attacked], "all", 3)
    summaries, examples = [], []
    for path, rows in zip(models, attacked):
        entry, shown_rows = model_summary(path, rows, shown, ATTACK.threat.eps)
        summaries.append(entry)
        examples += shown_rows
    return summaries, examples, shown


@pytest.fixture(scope="module")
def perturbations_run(models, tmp_path_factory) -> Path:
    return executed("perturbations", _perturbations_request(models), tmp_path_factory.mktemp("pert") / "p")


def _check_perturbations(out: Path, expected) -> None:
    summaries, examples, shown = expected
    results = json.loads((out / "results.json").read_text())
    assert len(shown) == 3 and results["shown"] == shown.tolist() and results["note"] is None
    assert results["models"] == json.loads(json.dumps(summaries))  # as results.json writes them
    assert results["models"][0]["n"] == 18
    rows = (out / "examples.csv").read_text().splitlines()
    assert len(rows) == 1 + len(examples) == 1 + 2 * 3
    assert (out / "perturbations.png").is_file()


def test_perturbations_equal_the_inline_analysis(perturbations_run, perturbations_inline):
    _check_perturbations(perturbations_run, perturbations_inline)


def test_perturbations_crashed_mid_attack_resume_without_attacking_finished_chunks(models, perturbations_run,
                                                                                   perturbations_inline, tmp_path,
                                                                                   monkeypatch, small_chunks):
    # the 4th batch is batch 3 of model a: its chunk 0 (batches 0-1) is stored
    _, resumed = crash_then_resume(monkeypatch, "perturbations", _perturbations_request(models), tmp_path / "p",
                                   crash_at=4)
    assert resumed == [(0, 2), (0, 3), (0, 4), *((1, b) for b in range(5))]  # a from chunk 1, then all of b
    _check_perturbations(tmp_path / "p", perturbations_inline)
    for table in ("perturbations.csv", "perturbations.md", "examples.csv", "examples.md"):
        assert (tmp_path / "p" / table).read_bytes() == (perturbations_run / table).read_bytes(), table

# -- features -----------------------------------------------------------------------------------------------

FEATURES = dict(modules=("m0", "m2"), method="tsne", positions=3, embed_samples=20, mmd_samples=20, permutations=9,
                perplexity=5.0)


def _features_request(models):
    from advtf.jobs.features import FeaturesRequest

    return FeaturesRequest(models=tuple(map(str, models)), attack=ATTACK, data=DATA, batch_size=BATCH, **FEATURES)


@pytest.fixture(scope="module")
def features_inline(models) -> tuple[list[dict], list[dict]]:
    """Rows and panels (model, module order) from the analysis fed by ``adversarial_pairs`` inline."""
    from advtf.analysis.features import analyse_module, collect_features

    splits, rows, panels = DATA.load(), [], []
    for path, model in zip(models, _loaded(models)):
        pairs = adversarial_pairs(model, splits, ATTACK, batch_size=BATCH, seed=DATA.seed)
        samples, accuracy = collect_features(model, FEATURES["modules"], pairs, positions=3, seed=DATA.seed)
        for module in FEATURES["modules"]:
            row, panel = analyse_module(samples[module], method="tsne", embed_samples=20, mmd_samples=20,
                                        permutations=9, perplexity=5.0, seed=DATA.seed)
            rows.append({"model": str(path), **row, **accuracy})
            panels.append(panel)
    return rows, panels


@pytest.fixture(scope="module")
def features_run(models, tmp_path_factory) -> Path:
    return executed("features", _features_request(models), tmp_path_factory.mktemp("features") / "f")


def _check_features(out: Path, expected) -> None:
    from advtf.jobs.features import PANEL_ARRAYS, load_embeddings

    rows, panels = expected
    results = json.loads((out / "results.json").read_text())
    assert results["rows"] == json.loads(json.dumps(rows)) and len(rows) == 4
    assert {r["n_images"] for r in rows} == {18}
    saved = load_embeddings(out / "embeddings.npz", len(panels))
    for got, want in zip(saved, panels):
        for key in PANEL_ARRAYS:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_features_equal_the_inline_analysis(features_run, features_inline):
    _check_features(features_run, features_inline)


def test_features_crashed_mid_attack_resume_without_attacking_finished_chunks(models, features_run, features_inline,
                                                                              tmp_path, monkeypatch, small_chunks):
    # the 10th batch is batch 4 of model b: its chunks 0 and 1 (batches 0-3) are stored
    _, resumed = crash_then_resume(monkeypatch, "features", _features_request(models), tmp_path / "f", crash_at=10)
    assert resumed == [(0, 4)]  # only b's last chunk
    _check_features(tmp_path / "f", features_inline)
    for table in ("features.csv", "features.md", "embeddings.npz"):
        assert (tmp_path / "f" / table).read_bytes() == (features_run / table).read_bytes(), table

# -- two cluster workers --------------------------------------------------------------------------------------

# every worker (and the one process) with the chunks above: 5 batches make 3 chunks for 2 workers
SMALL_PASSES = [sys.executable, "-P", "-c", "import advtf.jobs.attack_passes as p; "
                f"p.CHUNK_BATCHES = {CHUNK_BATCHES}; from advtf.cli.main import main; main()"]
COMMON = ["--dataset", "digits", "--seed", "2", "--attack", "pgd", "--norm", "linf",
          "--eps", "0.3", "--steps", "1", "--step-size", "0.001", "--batch-size", str(BATCH), "--quiet"]
ON_CLUSTER = {  # the command's own options, the outputs compared byte for byte besides results.json
    "frequency": (["--test-subset", "18", "--radii", "0,2,5,12"], ("frequency.csv", "frequency.md", "spectra.json")),
    "perturbations": (["--test-subset", "18", "--only", "all", "--count", "3"],
                      ("perturbations.csv", "examples.csv")),
    "features": (["--images", "18", "--modules", "m0,m2", "--positions", "3", "--embed-samples", "20",
                  "--mmd-samples", "20", "--permutations", "9", "--perplexity", "5"],
                 ("features.csv", "embeddings.npz")),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(ON_CLUSTER))
def test_on_two_workers_equals_one_process(models, tmp_path, command):
    from test_cluster_jobs import ENV, finished, on_cluster  # the shared launchers of local workers

    options, outputs = ON_CLUSTER[command]
    args = [command, *map(str, models), *COMMON, *options]
    one = subprocess.run([*SMALL_PASSES, *args, "--out", str(tmp_path / "one")], capture_output=True, text=True,
                         env=ENV, timeout=400)
    assert one.returncode == 0, one.stderr[-2000:]
    chief, worker = finished(on_cluster([*args, "--out", tmp_path / "two"],  # no --strategy: TF_CONFIG decides
                                        commands={0: SMALL_PASSES, 1: SMALL_PASSES}))
    assert chief.returncode == 0 and worker.returncode == 0, chief.stderr[-3000:] + worker.stderr[-3000:]
    assert "worker 1 of 2 finished its share" in worker.stdout
    assert not (tmp_path / "two.partial").exists()  # the chief merged and committed
    for name in ("results.json", *outputs):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
