"""``advtf robustify`` / ``advtf relabel`` end to end: saved sets, resume, training on them, bad input."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_attack_cli import assert_user_error, run, trained  # noqa: F401  (a fixture)

from advtf.cli.main import advtf

DIGITS = ["--dataset", "digits", "--quiet"]


ROBUSTIFY = ["--test-subset", "24", "--steps", "15", "--step-size", "0.1", "--chunk-size", "10", "--batch-size", "8"]


def _killed_after(batches, monkeypatch, module, name, args):
    """Runs the CLI with ``module.name`` raising KeyboardInterrupt after ``batches`` calls (the machine "dies")."""
    real, calls = getattr(module, name), []

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) > batches:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(module, name, interrupted)
    try:
        return CliRunner().invoke(advtf, [str(a) for a in args])
    finally:
        monkeypatch.setattr(module, name, real)


@pytest.fixture(scope="module")
def robustified(trained):
    out = trained.with_name("R0")
    result = run("robustify", trained, *DIGITS, *ROBUSTIFY, "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    assert "relative distance after" in result.output
    return out


def test_robustify_writes_a_saved_robustified_test_set(trained, robustified):
    from advtf.data import load_dataset, load_saved_elements, split_arrays

    results = json.loads((robustified / "results.json").read_text())
    assert results["n"] == 24 and results["robustness"] == {"eps": 0.0, "norm": None}
    assert results["relative_distance_after"] < results["relative_distance_before"]
    for name in ("examples.csv", "examples.md", "robustified.png", "manifest.json"):
        assert (robustified / name).exists(), name
    assert not (robustified / "resume").exists()
    manifest = json.loads((robustified / "manifest.json").read_text())
    assert manifest["dataset"]["kind"] == "robustified"
    assert manifest["dataset"]["source"]["model"]["sha256"] == manifest["inputs"]["model"]["sha256"]
    elements = list(load_saved_elements(robustified, "test").as_numpy_iterator())
    original = split_arrays(load_dataset("digits", test_subset=24).test)
    assert [int(e["label"]) for e in elements] == original[1].tolist()
    seeds = np.array([e["seed_index"] for e in elements])
    assert not np.any(seeds == np.arange(24))
    assert np.mean([e["distance_after"] for e in elements]) == pytest.approx(results["relative_distance_after"],
                                                                             rel=1e-5)
    splits = load_dataset(str(robustified))  # test: robustified; train: from the source dataset
    assert splits.sizes["test"] == 24 and splits.sizes["train"] > 0


def test_an_interrupted_robustify_resumes_to_the_same_set(trained, robustified, monkeypatch):
    import advtf.jobs.robustify as robustify_module
    from advtf.data import load_saved_elements

    out = trained.with_name("R0-resumed")
    result = _killed_after(2, monkeypatch, robustify_module, "robustify_batch",  # the first chunk: 2 batches
                           ["robustify", trained, *DIGITS, *ROBUSTIFY, "--out", out])
    assert result.exit_code != 0 and not out.exists()
    assert (out.with_name("R0-resumed.partial") / "resume" / "chunk_00000").exists()
    changed = run("robustify", trained, *DIGITS, *ROBUSTIFY[:-4], "--steps", "16", "--out", out, "--resume")
    assert_user_error(changed, words="other options")
    result = run("robustify", trained, *DIGITS, *ROBUSTIFY, "--out", out, "--resume")
    assert result.exit_code == 0, result.output + result.stderr
    assert json.loads((out / "results.json").read_text())["resumed_chunks"] == 1
    resumed = list(load_saved_elements(out, "test").as_numpy_iterator())
    whole = list(load_saved_elements(robustified, "test").as_numpy_iterator())
    np.testing.assert_allclose(np.stack([e["image"] for e in resumed]), np.stack([e["image"] for e in whole]),
                               atol=1e-6)


def test_robustify_on_two_replicas_gives_the_same_set(trained, robustified, two_cpu_strategy):
    from advtf.data import load_saved_elements

    out = trained.with_name("R0-mirrored")
    result = run("robustify", trained, *DIGITS, *ROBUSTIFY, "--strategy", "mirrored", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    mirrored = list(load_saved_elements(out, "test").as_numpy_iterator())
    single = list(load_saved_elements(robustified, "test").as_numpy_iterator())
    images_m, images_s = (np.stack([e["image"] for e in s]) for s in (mirrored, single))
    after_m, after_s = (np.array([e["distance_after"] for e in s]) for s in (mirrored, single))
    # Half batches per replica round differently in the last bits; keep-the-best can then pick another
    # iterate of (almost) the same distance for an example. The distances must agree everywhere, the
    # images everywhere but in such rare flips.
    np.testing.assert_allclose(after_m, after_s, rtol=1e-2, atol=1e-5)
    differs = np.abs(images_m - images_s).reshape(len(images_m), -1).max(axis=1) > 1e-5
    assert differs.sum() <= 2, np.flatnonzero(differs)


def test_relabel_then_train_with_the_paper_defaults(trained):
    from advtf.data import load_saved_elements

    out = trained.with_name("D-neg")
    result = run("relabel", trained, *DIGITS, "--train-subset", "60", "--mode", "negative", "--eps", "2",
                 "--steps", "10", "--step-size", "0.3", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 60 and 0 <= results["success_rate"] <= 1
    assert sum(results["label_histogram"].values()) == 60
    for name in ("labels.csv", "labels.md", "relabeled.png"):
        assert (out / name).exists(), name
    elements = list(load_saved_elements(out, "train").as_numpy_iterator())
    labels = np.array([e["label"] for e in elements])
    original = np.array([e["original_label"] for e in elements])
    assert np.array_equal(labels, (original + 1) % 10)
    assert np.mean([e["success"] for e in elements]) == pytest.approx(results["success_rate"])
    model = out.with_name("neg-robust")
    result = run("train", "--dataset", out, "--model", "test_cnn", "--epochs", "1", "--quiet", "--test-subset", "20",
                 "--eval-steps", "1", "--precise-bn", "2", "--out", model)
    assert result.exit_code == 0, result.output + result.stderr
    assert "Table 3 defaults" in result.output
    options = json.loads((model / "manifest.json").read_text())["options"]
    assert options["lr"] == 1e-4 and options["optimizer"] == "adam" and options["augment"] is False
    assert options["data"]["validation"] == 0.1 and options["early_stopping"] == 10
    assert json.loads((model / "results.json").read_text())["precise_bn_batches"] == 1  # 54 images: one batch


RELABEL = ["--train-subset", "30", "--mode", "zero", "--eps", "2", "--steps", "5", "--step-size", "0.5",
           "--chunk-size", "10", "--batch-size", "5"]


def test_an_interrupted_relabel_resumes_to_the_same_set(trained, monkeypatch):
    import advtf.jobs.relabel as relabel_module
    from advtf.data import load_saved_elements

    whole = trained.with_name("D-zero")
    assert run("relabel", trained, *DIGITS, *RELABEL, "--out", whole).exit_code == 0
    out = trained.with_name("D-zero-resumed")
    result = _killed_after(2, monkeypatch, relabel_module, "relabel_batch",  # the first chunk: 2 batches
                           ["relabel", trained, *DIGITS, *RELABEL, "--out", out])
    assert result.exit_code != 0 and not out.exists()
    partial = out.with_name("D-zero-resumed.partial")
    assert (partial / "resume" / "chunk_00000").exists() and not (partial / "resume" / "chunk_00001").exists()
    changed = run("relabel", trained, *DIGITS, *RELABEL[:-4], "--chunk-size", "15", "--batch-size", "5", "--out", out,
                  "--resume")
    assert_user_error(changed, words="other options (chunk_size)")
    result = run("relabel", trained, *DIGITS, *RELABEL, "--out", out, "--resume")
    assert result.exit_code == 0, result.output + result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["resumed_chunks"] == 1
    assert results["label_histogram"] == json.loads((whole / "results.json").read_text())["label_histogram"]
    resumed = list(load_saved_elements(out, "train").as_numpy_iterator())
    reference = list(load_saved_elements(whole, "train").as_numpy_iterator())
    for key in ("label", "original_label", "index", "success"):
        assert [e[key] for e in resumed] == [e[key] for e in reference], key
    np.testing.assert_allclose(np.stack([e["image"] for e in resumed]), np.stack([e["image"] for e in reference]),
                               atol=1e-6)


def test_bad_inputs_are_one_line_errors_and_leave_nothing(trained, tmp_path):
    import keras

    inputs = keras.Input((16, 16, 1))
    plain = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    plain.save(tmp_path / "plain.keras")
    out = tmp_path / "out"
    assert_user_error(run("robustify", tmp_path / "plain.keras", *DIGITS, "--test-subset", "8", "--out", out),
                      words="endpoints", out=out)
    assert_user_error(run("robustify", trained, "--dataset", "fashion_mnist", "--test-subset", "8", "--quiet",
                          "--out", out), words="input", out=out)
    assert_user_error(run("relabel", trained, *DIGITS, "--mode", "negative", "--per-image", "all", "--out", out),
                      words="--mode zero", out=out)
    assert_user_error(run("relabel", trained, *DIGITS, "--mode", "zero", "--attack", "nope", "--out", out),
                      words="nope", out=out)
    assert_user_error(run("robustify", trained, *DIGITS, "--test-subset", "1", "--out", out), words="two images",
                      out=out)
    assert_user_error(run("relabel", trained, *DIGITS, "--mode", "zero", "--strategy", "multiworker", "--out", out),
                      words="TF_CONFIG", out=out)
