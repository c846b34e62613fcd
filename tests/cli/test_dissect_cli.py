"""``advtf dissect`` end to end on tiny models with the synthetic concepts and a Broden fixture, and bad input."""

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from test_attack_cli import assert_user_error, run  # the shared CliRunner helpers

ATTACK = ["--norm", "linf", "--eps", "0.1", "--steps", "2"]
FAST = ["--draws", "200", "--batch-size", "16", "--quiet"]


def _write_broden():
    spec = importlib.util.spec_from_file_location("_broden_fixture", Path(__file__).parents[1] / "data" /
                                                  "test_broden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_broden


def assert_ok(result):
    assert result.exit_code == 0, result.output + result.stderr


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from advtf.models import create_model, save_model

    root = tmp_path_factory.mktemp("dissect-cli")
    grey = save_model(create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=0), root / "grey.keras")
    rgb = save_model(create_model("test_cnn", input_shape=(16, 16, 3), num_classes=10, seed=1), root / "rgb.keras")
    broden = root / "broden"
    broden.mkdir()
    _write_broden()(broden)
    return {"grey": grey, "rgb": rgb, "broden": broden}


def _activations(model_path, images, layer):
    from advtf.analysis.dissect import prepare_images
    from advtf.models import feature_extractor, load_model

    model = load_model(model_path)
    x = prepare_images(images, tuple(model.input_shape[1:]))
    return feature_extractor(model, [layer])(x, training=False)[layer].numpy()


def _units(out):
    with open(out / "units.csv") as f:
        return list(csv.DictReader(f))


def test_help_has_an_example():
    result = run("dissect", "--help")
    assert_ok(result)
    assert "advtf dissect" in result.output and "0.005" in result.output and "Writes" in result.output


def test_synthetic_end_to_end(models, tmp_path):
    from advtf.data.concepts import synthetic_concepts

    out = tmp_path / "syn"
    result = run("dissect", models["grey"], "--concept-images", "40", "--attack-images", "8", "--layers", "m0,m1",
                 "--top-n", "5,10,40", "--detector-top", "10", "--show-units", "2", *ATTACK, *FAST, "--out", out)
    assert_ok(result)
    assert "m0 (16 units) detectors" in result.output and "p-values" in result.output
    for name in ("results.json", "units.csv", "units.md", "detectors.csv", "pvalues.md", "detectors.png",
                 "pvalues.png", "segmentation_m0.png", "segmentation_m1.png", "manifest.json"):
        assert (out / name).exists(), name
    results = json.loads((out / "results.json").read_text())
    assert results["concepts"]["images"] == 40 and "luminance" in results["concepts"]["model_input"]
    assert results["attack"]["attack_target"] == "prediction" and results["attack_images"] == 8
    units = _units(out)
    assert len(units) == 16 + 32
    # the thresholds are the 0.995 quantile of the layer's activations on the (greyscale) concept images
    images = next(synthetic_concepts(40, (16, 16), seed=0).batches(40))["image"]
    for layer, count in (("m0", 16), ("m1", 32)):
        acts = _activations(models["grey"], images, layer)
        expected = np.quantile(acts.reshape(-1, count).astype(np.float64), 0.995, axis=0)
        got = np.array([float(u["threshold"]) for u in units if u["layer"] == layer])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        info = results["layers"][layer]
        flags = [u for u in units if u["layer"] == layer and u["detector"] == "True"]
        assert sum(info["detectors"].values()) == len(flags)
        for category, n in info["detectors"].items():
            assert n == sum(u["category"] == category for u in flags)
        assert sorted(int(u["sensitivity_rank"]) for u in units if u["layer"] == layer) == list(range(1, count + 1))
        assert info["top_sensitive"] == 10
    pvalues = [p for layer in results["layers"].values() for p in layer["p_values"] if p["p_value"] is not None]
    assert len(pvalues) == 4 and all(1 / 201 <= p["p_value"] <= 1 for p in pvalues)
    m0 = {p["n"]: p for p in results["layers"]["m0"]["p_values"]}
    assert m0[40]["skipped"] and m0[5]["p_value"] is not None
    assert any("skipped" in n for n in results["notes"])


def test_broden_end_to_end_with_histogram_thresholds(models, tmp_path):
    from advtf.data.broden import load_broden

    out = tmp_path / "broden"
    result = run("dissect", models["rgb"], "--concepts", f"broden:{models['broden']}", "--layers", "m0",
                 "--quantile", "0.05", "--quantile-budget", "1", "--attack-images", "3", "--top-n", "5",
                 "--union-images", "overlap",
                 *ATTACK, *FAST, "--out", out)
    assert_ok(result)
    results = json.loads((out / "results.json").read_text())
    assert results["concepts"]["images"] == 4 and results["concepts"]["segmentation_shape"] == [112, 112]
    assert "16x16" in results["concepts"]["model_input"] and "luminance" not in results["concepts"]["model_input"]
    assert results["layers"]["m0"]["threshold_method"].startswith("histogram")
    assert results["union_images"] == "overlap"
    assert results["attack_images"] == 3
    images = next(load_broden(models["broden"]).batches(4))["image"]
    acts = _activations(models["rgb"], images, "m0").reshape(-1, 16).astype(np.float64)
    expected = np.quantile(acts, 0.95, axis=0)
    got = np.array([float(u["threshold"]) for u in _units(out)])
    span = acts.max(0) - acts.min(0)
    assert np.all(np.abs(got - expected) <= span / 1024 ** 2 + 1e-5)
    assert set(results["concepts"]["categories"]) == {"color", "object", "part", "material", "scene", "texture"}


@pytest.mark.parametrize("args, words", [
    (["--layers", "m0,nope"], "available endpoints"),
    (["--layers", "representation"], "not a spatial feature map"),
    (["--concepts", "imagenet"], "synthetic or broden:DIR"),
    (["--quantile", "2"], "quantile"),
    (["--resume"], "nothing to resume"),
    (["--targeted"], "no such option"),
])
def test_bad_options(models, tmp_path, args, words):
    out = tmp_path / "bad"
    result = run("dissect", models["grey"], "--concept-images", "8", *ATTACK, *FAST, *args, "--out", out)
    if words == "no such option":  # click's own usage error
        assert result.exit_code == 2 and not out.exists()
        return
    assert_user_error(result, words=words, out=out)


@pytest.mark.parametrize("damage, words", [
    (lambda root: (root / "index.csv").unlink(), "no index.csv"),
    (lambda root: (root / "label.csv").unlink(), "no label.csv"),
    (lambda root: (root / "index.csv").write_text("image,split\nx.jpg,train\n"), "header"),
    (lambda root: (root / "index.csv").write_text(
        "image,split,ih,iw,sh,sw,color,object,part,material,scene,texture\n"
        "../../secret.jpg,train,224,224,112,112,,,,,,\n"), "leaves the Broden images/"),
])
def test_bad_broden_directory(models, tmp_path, damage, words):
    import shutil

    broden = tmp_path / "broden"
    shutil.copytree(models["broden"], broden)
    damage(broden)
    out = tmp_path / "bad"
    result = run("dissect", models["rgb"], "--concepts", f"broden:{broden}", *ATTACK, *FAST, "--out", out)
    assert_user_error(result, words=words, out=out)
