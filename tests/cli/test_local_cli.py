"""``advtf frequency | perturbations | response | kernels`` end to end on tiny digits models, and bad input."""

import json

import numpy as np
import pytest
from test_attack_cli import assert_user_error, run  # the shared CliRunner helpers

DATA = ["--dataset", "digits", "--test-subset", "24", "--quiet"]
ATTACK = ["--attack", "pgd", "--norm", "linf", "--eps", "0.1", "--steps", "2"]


def assert_ok(result):
    assert result.exit_code == 0, result.output + result.stderr


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("local-cli")
    common = ["train", "--dataset", "digits", "--model", "test_cnn", "--train-subset", "300", "--test-subset", "24",
              "--batch-size", "50", "--optimizer", "adam", "--lr", "0.01", "--epochs", "2", "--eval-steps", "1",
              "--norm", "linf", "--eps", "0.1", "--quiet"]
    assert_ok(run(*common, "--save-every-epoch", "--out", root / "std"))
    assert_ok(run(*common, "--robust", "--attack-steps", "1", "--weight-decay", "1e-3", "--out", root / "adv"))
    return root


def test_every_command_has_help_with_an_example():
    for command in ("frequency", "perturbations", "response", "kernels"):
        result = run(command, "--help")
        assert_ok(result)
        assert "Example" in result.output and f"advtf {command}" in result.output


def test_frequency_two_models(models, tmp_path):
    out = tmp_path / "freq"
    result = run("frequency", models / "std", models / "adv", *DATA, *ATTACK, "--radii", "0,1,3,6,12", "--out", out)
    assert_ok(result)
    assert "best low-pass adversarial" in result.output
    results = json.loads((out / "results.json").read_text())
    assert results["radii"] == [0, 1, 3, 6, 12] and len(results["models"]) == 2
    for m in results["models"]:
        curves = m["curves"]
        # Radius 0: the low-pass keeps nothing (both curves equal), the swap "natural + adversarial high" is the
        # adversarial image; past the corner (12 > 8*sqrt(2) for 16x16) everything is kept.
        assert curves["low_natural"][0] == curves["low_adversarial"][0]
        assert curves["natural_low_adversarial_high"][0] == pytest.approx(m["adversarial_accuracy"])
        assert curves["natural_low_adversarial_high"][-1] == pytest.approx(m["clean_accuracy"])
        assert curves["high_natural"][0] == pytest.approx(m["clean_accuracy"])
        assert curves["low_natural"][-1] == pytest.approx(m["clean_accuracy"])
    for name in ("frequency.csv", "frequency.md", "spectra.json", "frequency.png", "spectrum.png", "manifest.json"):
        assert (out / name).exists(), name
    spectra = json.loads((out / "spectra.json").read_text())
    assert np.asarray(spectra["natural"]).shape == (16, 16)


def test_perturbations(models, tmp_path):
    out = tmp_path / "pert"
    result = run("perturbations", models / "adv", models / "std", *DATA, *ATTACK, "--only", "all", "--count", "2",
                 "--out", out)
    assert_ok(result)
    results = json.loads((out / "results.json").read_text())
    assert len(results["shown"]) == 2 and results["note"] is None
    assert 0 <= results["models"][0]["at_bound"] <= 1
    assert (out / "perturbations.png").exists() and (out / "examples.csv").exists()
    for m in results["models"]:  # accuracy.png draws these; attacks never raise accuracy
        assert 0 <= m["adversarial_accuracy"] <= m["clean_accuracy"] <= 1
    assert (out / "accuracy.png").exists()


def test_perturbations_nothing_to_show_is_explained(models, tmp_path):
    out = tmp_path / "pert-none"
    result = run("perturbations", models / "std", *DATA, *ATTACK, "--eps", "1e-6", "--only", "successful",
                 "--out", out)
    assert_ok(result)
    assert "no naturally correct image with a successful attack" in result.output
    assert not (out / "perturbations.png").exists()
    assert (out / "accuracy.png").exists()  # every run has a figure, even with no example to show


def test_response_tables_transfer_and_fgsm(models, tmp_path):
    out = tmp_path / "resp"
    result = run("response", models / "std", "--compare", models / "adv", "--adv-from", models / "std",
                 "--also-attack", "fgsm", *DATA, *ATTACK, "--out", out)
    assert_ok(result)
    results = json.loads((out / "results.json").read_text())
    assert results["layers"] == ["m0", "m1", "m2", "m3"]
    keys = {(r["model"].split("/")[-1], r["source"], r["attack"], r["split"]) for r in results["rows"]}
    assert ("adv", "from std", "pgd", "all") in keys and ("std", "own", "fgsm", "failed") in keys
    assert not any(r["source"] == "from std" and "std" in r["model"].split("/")[-1] for r in results["rows"])
    for r in results["rows"]:
        if r["split"] == "all":
            assert r["n"] == 24 and r["m0_max"] <= r["m0_total"]
    for r in results["rows"]:  # every empty split is explained
        if r["n"] == 0 and r["split"] != "all":
            assert any(f"no {r['split']} attacks" in note for note in results["notes"]), results["notes"]
    assert (out / "response.csv").exists() and (out / "response.png").exists()
    # A source that is not analysed itself: only its transferred rows.
    out = tmp_path / "resp-transfer"
    assert_ok(run("response", models / "adv", "--adv-from", models / "std", "--layers", "m3", *DATA, *ATTACK,
                  "--out", out))
    sources = {r["source"] for r in json.loads((out / "results.json").read_text())["rows"]}
    assert sources == {"own", "from std"}


def test_response_and_kernels_over_checkpoints(models, tmp_path):
    out = tmp_path / "ckpt"
    assert_ok(run("response", "--checkpoints", models / "std", *DATA, *ATTACK, "--layers", "m0,m2", "--out", out))
    curves = json.loads((out / "results.json").read_text())["checkpoints"]
    assert [c["epoch"] for c in curves] == [1, 2] and "m2_total" in curves[0]
    assert (out / "checkpoints_max.png").exists() and (out / "checkpoints_total.png").exists()
    (fingerprinted,) = json.loads((out / "manifest.json").read_text())["inputs"]["checkpoints"].values()
    assert [f["path"].rsplit("/", 1)[-1] for f in fingerprinted] == ["epoch_001.keras", "epoch_002.keras"]
    out = tmp_path / "kern"
    result = run("kernels", models / "std", models / "adv", "--checkpoints", models / "std", "--out", out, "--quiet")
    assert_ok(result)
    results = json.loads((out / "results.json").read_text())
    assert [r["layer"] for r in results["models"][0]["layers"]] == ["conv1", "conv2", "conv3"]
    assert len(results["checkpoints"]) == 2 and "wd=" in results["checkpoints"][0]["run"]
    for name in ("kernels.csv", "summary.md", "kernels.png", "checkpoints.png"):
        assert (out / name).exists(), name


def test_bad_input(models, tmp_path):
    out = tmp_path / "bad"
    assert_user_error(run("response", models / "std", *DATA, *ATTACK, "--layers", "m0,layer9", "--out", out),
                      words="unknown endpoint", out=out)
    assert_user_error(run("frequency", models / "std", "--dataset", "fashion_mnist", "--test-subset", "4", "--quiet",
                          *ATTACK, "--out", out), words="expects", out=out)
    from advtf.models import create_model, save_model

    three = save_model(create_model("test_cnn", input_shape=(16, 16, 1), num_classes=3), tmp_path / "three.keras")
    assert_user_error(run("response", models / "std", "--compare", three, *DATA, *ATTACK, "--out", out),
                      words="predicts 3 classes", out=out)
    assert_user_error(run("response", "--checkpoints", tmp_path, *DATA, "--out", out), words="epoch_NNN", out=out)
    assert_user_error(run("kernels", "--out", out), words="nothing to analyse", out=out)
    assert_user_error(run("frequency", models / "std", *DATA, "--attack", "nope", "--out", out), words="nope", out=out)
    result = run("frequency", models / "std", *DATA, "--radii", "1,x", "--out", out)
    assert result.exit_code == 2 and "comma-separated" in result.output + result.stderr
