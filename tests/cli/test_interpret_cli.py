"""``advtf cam`` and ``advtf psr`` end to end on a tiny digits model, and bad input."""

import json

import numpy as np
from test_attack_cli import assert_user_error, run, trained  # noqa: F401  (the shared model fixture)

DATA = ["--dataset", "digits", "--test-subset", "16", "--quiet"]
ATTACK = ["--attack", "ifgsm", "--norm", "linf", "--eps", "0.2", "--steps", "5", "--targeted"]


def assert_ok(result):
    assert result.exit_code == 0, result.output + result.stderr


def test_help_has_examples():
    for command in ("cam", "psr"):
        result = run(command, "--help")
        assert_ok(result)
        assert "Example" in result.output and f"advtf {command}" in result.output


def test_cam_writes_scores_equal_to_its_per_pair_table(trained, tmp_path):
    out = tmp_path / "cam"
    result = run("cam", trained, *DATA, *ATTACK, "--examples", "2", "--out", out)
    assert_ok(result)
    results = json.loads((out / "results.json").read_text())
    row = results["rows"][0]
    assert row["pairs"] > 0 and 0 <= row["is_x0_t0"] <= 1 and 0 <= row["is_xadv_t"] <= 1
    lines = (out / "examples.csv").read_text().splitlines()
    header = lines[0].split(",")
    column = header.index("is_x0_t0")
    values = np.array([float(line.split(",")[column]) for line in lines[1:]])
    assert len(lines) - 1 == row["pairs"]
    assert np.isclose(np.nanmean(values), row["is_x0_t0"])
    for name in ("cam.csv", "cam.md", "cam.png", "manifest.json"):
        assert (out / name).exists(), name


def test_psr_with_both_refinements(trained, tmp_path):
    out = tmp_path / "psr"
    result = run("psr", trained, *DATA, *ATTACK, "--grid", "4", "--refine", "s1", "--refine", "s2",
                 "--examples", "2", "--out", out)
    assert_ok(result)
    results = json.loads((out / "results.json").read_text())
    row = results["rows"][0]
    assert row["grids"] == 16 and row["pairs"] > 0
    assert -1 <= row["corr_s"] <= 1
    shares = [row[f"perturbed_{c}"] for c in ("suppression", "balanced", "promotion")]
    assert np.isclose(sum(shares), 1.0)
    refine = {r["refine"]: r for r in results["refine"]}
    assert set(refine) == {"s1", "s2"}
    for r in refine.values():
        assert r["refined_linf"] <= 0.2 + 1e-6 and 0 <= r["refined_success_rate"] <= 1
        assert r["refined_l0"] <= r["original_l0"] + 1e-9 or r["pixels_allowed"] == 1
    assert abs(refine["s2"]["pixels_allowed"] - 0.3) < 0.1  # B(x0,t0): the top 30% of the map
    for name in ("psr.csv", "psr.md", "refine.csv", "psr_examples.png", "psr_cam.png", "refine_s1.png",
                 "refine_s2.png"):
        assert (out / name).exists(), name


def test_bad_input_is_one_line(trained, tmp_path):
    out = tmp_path / "bad"
    assert_user_error(run("cam", trained, *DATA, *ATTACK, "--method", "gradcam", "--layer", "nope", "--out", out),
                      words="no layer or endpoint", out=out)
    assert_user_error(run("cam", trained, *DATA, *ATTACK, "--method", "gradcam", "--layer", "logits",
                          "--out", out), words="not convolutional", out=out)
    assert_user_error(run("psr", trained, *DATA, *ATTACK, "--grid", "40", "--out", out), words="larger than", out=out)
    assert_user_error(run("psr", *DATA, *ATTACK, "--out", out), words="MODEL", out=out)


def test_a_run_where_every_attack_fails_is_one_line(trained, tmp_path):
    """No pair to score or draw (eps far below any decision margin): exit 2, one line, nothing in --out."""
    weak = ["--attack", "ifgsm", "--norm", "linf", "--eps", "1e-6", "--steps", "1", "--targeted"]
    for command in ("cam", "psr"):
        out = tmp_path / command
        assert_user_error(run(command, trained, *DATA, *weak, "--out", out),
                          words="no successful adversarial examples", out=out)


def test_activation_bias_for_attacks_with_their_own_threats(trained, tmp_path):
    out = tmp_path / "bias"
    result = run("response", trained, *DATA, "--attack", "ifgsm", "--norm", "linf", "--eps", "0.1", "--steps", "3",
                 "--also-attack", "cw:l2:1:5", "--also-attack", "fgsm", "--activation-maps", "m1", "--channels", "3",
                 "--out", out)
    assert_ok(result)
    results = json.loads((out / "results.json").read_text())
    rows = [r for r in results["rows"] if r["split"] == "all"]
    assert [r["attack"] for r in rows] == ["ifgsm", "cw", "fgsm"]
    for r in rows:  # l2 lies between max and total for every layer
        for layer in results["layers"]:
            assert r[f"{layer}_max"] <= r[f"{layer}_l2"] + 1e-6 <= r[f"{layer}_total"] + 2e-6
    assert results["activation_maps"]["layer"] == "m1" and (out / "activation_maps.png").exists()
    bad = tmp_path / "bad"
    assert_user_error(run("response", trained, *DATA, "--also-attack", "cw:l2", "--out", bad), words="NAME:NORM:EPS",
                      out=bad)
    assert_user_error(run("response", trained, *DATA, "--also-attack", "cw:linf:1", "--out", bad), words="norm",
                      out=bad)
