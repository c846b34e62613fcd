"""``advtf features`` end to end on two tiny digits models side by side, and bad input."""

import json
import sys

import numpy as np
import pytest
from test_attack_cli import assert_user_error, run  # the shared CliRunner helpers

SMALL = ["--dataset", "digits", "--images", "12", "--attack", "pgd", "--norm", "linf", "--eps", "0.1", "--steps", "2",
         "--positions", "6", "--embed-samples", "30", "--mmd-samples", "40", "--permutations", "19",
         "--perplexity", "5", "--quiet"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from tiny import fitted_test_cnn

    from advtf.models import create_model, save_model

    root = tmp_path_factory.mktemp("features-cli")
    fitted, _ = fitted_test_cnn(test_subset=8, epochs=2)
    save_model(fitted, root / "fitted.keras")
    save_model(create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=1), root / "random.keras")
    return root


def test_help_has_an_example():
    result = run("features", "--help")
    assert result.exit_code == 0 and "advtf features" in result.output and "Example" in result.output


def test_two_models_side_by_side(models, tmp_path):
    out = tmp_path / "features"
    result = run("features", models / "fitted.keras", models / "random.keras", *SMALL, "--modules", "m0,m2",
                 "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    assert "MMD2 | p | C2ST" in result.output and "accuracy clean / adversarial" in result.output
    results = json.loads((out / "results.json").read_text())
    assert results["modules"] == ["m0", "m2"] and results["method"] == "tsne"
    assert results["attack"] == "pgd" and results["targeted"] is False and results["attack_target"] == "label"
    assert [(r["model"].rsplit("/", 1)[-1], r["module"]) for r in results["rows"]] == [
        ("fitted.keras", "m0"), ("fitted.keras", "m2"), ("random.keras", "m0"), ("random.keras", "m2")]
    for row in results["rows"]:
        assert row["n_images"] == 12 and row["n_natural"] == row["n_adversarial"] == 12 * 6
        assert row["channels"] == {"m0": 16, "m2": 64}[row["module"]]
        assert row["mmd_n"] == 40 and 1 / 20 <= row["p_value"] <= 1 and row["bandwidth"] > 0
        assert 0 <= row["c2st_accuracy"] <= 1 and 0 <= row["adversarial_accuracy"] <= row["clean_accuracy"] + 1
    for name in ("features.csv", "features.md", "features.png", "embeddings.npz", "manifest.json"):
        assert (out / name).exists(), name
    assert "mmd2" in (out / "features.csv").read_text().splitlines()[0]
    with np.load(out / "embeddings.npz", allow_pickle=False) as data:
        for i, panel in enumerate(results["panels"]):
            assert panel["key"] == f"p{i}"
            assert data[f"p{i}_embedding"].shape == (60, 2)
            assert data[f"p{i}_adversarial"].sum() == 30
    # The figure can be redrawn from the run directory alone.
    from advtf.jobs.features import load_panels
    from advtf.plots.features import features_figure

    panels, saved = load_panels(out)
    assert [(p["model"], p["module"]) for p in panels] == [(r["model"], r["module"]) for r in saved["rows"]]
    features_figure(panels, saved["rows"], saved["modules"], tmp_path / "again.png")
    assert (tmp_path / "again.png").stat().st_size > 10_000


def test_default_modules_and_umap(models, tmp_path):
    # umap-learn comes with the `embed` extra, which tox installs: this runs, it does not skip.
    out = tmp_path / "umap"
    result = run("features", models / "fitted.keras", *SMALL, "--method", "umap", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["modules"] == ["m0", "m1", "m2"] and results["method"] == "umap"
    with np.load(out / "embeddings.npz", allow_pickle=False) as data:
        for i in range(3):
            points = data[f"p{i}_embedding"]
            assert points.shape == (60, 2) and np.isfinite(points).all() and points.std(axis=0).min() > 0


def test_trimap(models, tmp_path):
    out = tmp_path / "trimap"
    result = run("features", models / "fitted.keras", *SMALL, "--method", "trimap", "--modules", "m2", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["modules"] == ["m2"] and results["method"] == "trimap"
    with np.load(out / "embeddings.npz", allow_pickle=False) as data:
        points = data["p0_embedding"]
        assert points.shape == (60, 2) and np.isfinite(points).all() and points.std(axis=0).min() > 0
        assert data["p0_adversarial"].sum() == 30
    assert (out / "features.png").stat().st_size > 10_000


def test_bad_input(models, tmp_path, monkeypatch):
    out = tmp_path / "bad"
    model = models / "fitted.keras"
    assert_user_error(run("features", model, *SMALL, "--modules", "m1,m9", "--out", out),
                      words="unknown module 'm9' of fitted.keras; available spatial modules: m0, m1, m2", out=out)
    assert_user_error(run("features", model, *SMALL, "--modules", "m3", "--out", out), words="not spatial", out=out)
    assert_user_error(run("features", *SMALL, "--out", out), words="at least one MODEL", out=out)
    assert_user_error(run("features", model, *SMALL, "--target-class", "3", "--out", out),
                      words="only applies with --targeted", out=out)
    monkeypatch.setitem(sys.modules, "umap", None)
    assert_user_error(run("features", model, *SMALL, "--method", "umap", "--out", out),
                      words="pip install 'advtf[embed]'", out=out)
