"""``advtf attack`` and ``advtf evaluate`` with the attack suite, end to end, and every bad input."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from advtf.cli.main import advtf

DATA = ["--dataset", "digits", "--test-subset", "40", "--quiet"]


def run(*args):
    return CliRunner().invoke(advtf, [str(a) for a in args], catch_exceptions=False)


def assert_user_error(result, *, words, out=None):
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    assert "Traceback" not in result.output + result.stderr
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert words.lower() in message.lower(), message
    if out is not None:  # nothing left where --out would be: neither OUT, OUT.partial nor OUT.lock
        for left in (out, out.with_name(out.name + ".partial"), out.with_name(out.name + ".lock")):
            assert not left.exists(), left


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("attack-cli") / "std"
    result = run("train", "--dataset", "digits", "--model", "test_cnn", "--train-subset", "400", "--test-subset",
                 "40", "--batch-size", "50", "--optimizer", "adam", "--lr", "0.01", "--weight-decay", "0",
                 "--epochs", "3", "--eval-steps", "1", "--quiet", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    return out


@pytest.fixture(scope="module")
def pgd_set(trained):
    out = trained.with_name("std-pgd")
    result = run("attack", trained, *DATA, "--attack", "pgd", "--norm", "linf", "--eps", "0.1", "--steps", "5",
                 "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    assert "success rate" in result.output and "median l2 of delta" in result.output
    return out


def test_attack_writes_a_saved_adversarial_dataset(pgd_set):
    from advtf.data import load_dataset, load_saved_elements

    results = json.loads((pgd_set / "results.json").read_text())
    for key in ("n", "clean_accuracy", "adversarial_accuracy", "success_rate", "norms", "attack", "threat"):
        assert key in results
    assert results["n"] == 40 and results["attack"] == "pgd"
    assert set(results["norms"]) == {"l0", "l1", "l2", "linf"}
    assert results["norms"]["linf"]["mean"] <= 0.1 + 1e-6
    # The attack must bite: linf 0.1 with 5 PGD steps costs a digits CNN a third of its accuracy or more.
    assert results["clean_accuracy"] >= 0.5 and results["adversarial_accuracy"] <= results["clean_accuracy"] - 0.3
    for name in ("results.csv", "results.md", "examples.csv", "examples.md", "examples.png", "accuracy.png",
                 "manifest.json"):
        assert (pgd_set / name).exists(), name
    elements = list(load_saved_elements(pgd_set, "test").as_numpy_iterator())
    assert len(elements) == 40
    assert {"image", "natural", "label", "target", "success"} <= set(elements[0])
    delta = np.stack([e["image"] - e["natural"] for e in elements])
    assert np.abs(delta).max() <= 0.1 + 1e-6
    # The accuracy after the attack is the accuracy on the saved images.
    success = np.array([e["success"] for e in elements])
    assert results["success_rate"] == pytest.approx(success.mean())
    splits = load_dataset(str(pgd_set))
    assert splits.sizes["test"] == 40 and splits.info.num_classes == 10


def test_evaluate_on_the_saved_set_matches_accuracy_after(trained, pgd_set, tmp_path):
    out = tmp_path / "eval"
    result = run("evaluate", trained, "--dataset", pgd_set, "--quiet", "--norm", "linf", "--eps", "0.01",
                 "--steps", "1", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    after = json.loads((pgd_set / "results.json").read_text())["adversarial_accuracy"]
    assert json.loads((out / "results.json").read_text())["clean_accuracy"] == pytest.approx(after)


def test_targeted_next_class(trained, tmp_path):
    out = tmp_path / "next"
    result = run("attack", trained, *DATA, "--attack", "pgd", "--norm", "l2", "--eps", "3", "--steps", "10",
                 "--targeted", "--target-mode", "next", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    rows = np.genfromtxt(out / "examples.csv", delimiter=",", names=True, dtype=None, encoding=None)
    assert np.all(rows["target"] == (rows["label"] + 1) % 10)
    hit = rows["adversarial_prediction"] == rows["target"]
    assert np.array_equal(hit, rows["success"].astype(str) == "True")
    assert json.loads((out / "results.json").read_text())["success_rate"] >= 0.9


def test_given_target_class_and_options(trained, tmp_path):
    out = tmp_path / "given"
    result = run("attack", trained, *DATA, "--attack", "pgd", "--norm", "linf", "--eps", "0.3", "--steps", "5",
                 "--target-class", "3", "--targeted", "-O", "schedule=cosine", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["target_mode"] == "given" and results["options"] == {"schedule": "cosine"}
    assert results["success_rate"] >= 0.5  # the targeted attack reaches class 3 on most images, not none
    assert results["n_attackable"] == int(np.sum(np.genfromtxt(out / "examples.csv", delimiter=",", names=True)
                                                 ["label"] != 3))


@pytest.mark.parametrize("attack, norm, eps", [("fgsm", "linf", "0.1"), ("ifgsm", "l2", "2"),
                                              ("autoattack-lite", "linf", "0.1")])
def test_evaluate_takes_every_attack(trained, tmp_path, attack, norm, eps):
    out = tmp_path / attack
    result = run("evaluate", trained, *DATA, "--attack", attack, "--norm", norm, "--eps", eps, "--steps", "3",
                 "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["attack"] == attack and results["threat"]["norm"] == norm
    # A measurable drop: at least 8 of the 40 images lose their correct label (a no-op attack fails here).
    assert results["clean_accuracy"] >= 0.5 and results["robust_accuracy"] <= results["clean_accuracy"] - 0.2
    for name in ("results.csv", "results.md", "accuracy.png"):
        assert (out / name).stat().st_size > 0, name


def test_str_alone_runs_in_its_own_norm(trained, tmp_path):
    """--norm not given: the attack's own (Str supports only linf), not the command's l2."""
    out = tmp_path / "str"
    result = run("attack", trained, *DATA, "--attack", "str", "--eps", "0.1", "--steps", "2",
                 "-O", "search_steps=1", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["threat"]["norm"] == "linf" and results["threat"]["eps"] == pytest.approx(0.1)
    assert results["norms"]["linf"]["mean"] <= 0.1 + 1e-6


class _Captured(Exception):
    pass


@pytest.fixture
def captured(monkeypatch):
    """The request each command would run (the job itself is not run)."""
    import advtf.cli.attack
    import advtf.cli.evaluate
    import advtf.cli.transfer

    requests = []

    def capture(name, request, kw):
        requests.append(request)
        raise _Captured

    for module in (advtf.cli.attack, advtf.cli.evaluate, advtf.cli.transfer):
        monkeypatch.setattr(module, "run_job", capture)
    return requests


def _threat(request):
    return getattr(request, "threat", None) or request.attack.threat


@pytest.mark.parametrize("command", [["evaluate", "m"], ["attack", "m"],
                                     ["transfer-eval", "--source", "0=m", "--victim", "v=m"]])
@pytest.mark.parametrize("args, norm, eps", [
    ([], "l2", None),  # the command's own default for pgd
    (["--attack", "str"], "linf", 8 / 255),
    (["--attack", "ead"], "l1", 12.0),
    (["--attack", "fgsm"], "linf", 8 / 255),
    (["--attack", "cw"], "l2", None),
    (["--attack", "ead", "--norm", "l2"], "l2", None),  # a given norm is kept
    (["--attack", "str", "--eps", "0.1"], "linf", 0.1),  # a given eps is kept
    (["--norm", "linf", "--eps", "0.2", "--attack", "apgd-ce"], "linf", 0.2),
    (["--eps", "0.3", "--attack", "ead"], "l1", 0.3),  # --eps before --attack on the line
])
def test_norm_and_eps_follow_the_attack(captured, tmp_path, command, args, norm, eps):
    result = CliRunner().invoke(advtf, [*command, *args, "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, _Captured) or result.exit_code == 1, result.output
    threat = _threat(captured[-1])
    own = {"evaluate": 0.5, "attack": 0.5, "transfer-eval": 2.0}[command[0]]  # the command's l2 radius
    assert threat.norm == norm and threat.eps == pytest.approx(own if eps is None else eps)


@pytest.mark.parametrize("command", ["evaluate", "attack", "transfer-eval", "relabel", "cam", "psr", "dissect",
                                     "features", "frequency", "perturbations", "response", "train", "retrain"])
def test_help_shows_the_effective_norm_and_eps(command):
    text = " ".join(CliRunner().invoke(advtf, [command, "--help"]).output.split())
    options = text[text.index("Options:"):]
    for option in ("--norm [", "--eps NUMBER"):
        entry = options[options.index(option):]
        entry = entry[:entry.index(" --", 3)]
        assert "[default: " in entry, (option, entry)
    if "--attack NAME" in text:
        assert "the attack's own: " in text and "l1 for ead" in text and "for pgd" in text


def test_attack_listing():
    result = run("attacks", "--json")
    names = {row["name"]: row for row in json.loads(result.output)}
    assert {"fgsm", "ifgsm", "pgd", "cw", "ead", "str", "apgd-ce", "apgd-dlr", "autoattack-lite"} <= set(names)
    assert names["cw"]["norms"] == ["l2"] and "confidence" in names["cw"]["options"]


@pytest.mark.parametrize("args, words", [
    (["--attack", "nope"], "unknown attack"),
    (["--attack", "cw", "--norm", "linf"], "--norm l2"),
    (["--attack", "pgd", "--norm", "l1"], "does not support --norm l1"),
    (["--eps", "0"], "eps must be > 0"),
    (["--eps", "-0.5"], "eps must be > 0"),
    (["--steps", "0"], "steps must be >= 1"),
    (["-O", "nope=1"], "no option 'nope'"),
    (["-O", "schedule"], "KEY=VALUE"),
    (["-O", "schedule=zigzag"], "unknown step schedule"),
    (["--target-class", "3"], "only applies with --targeted"),
    (["--targeted", "--target-class", "12"], "outside 0..9"),
])
def test_bad_attack_input(trained, tmp_path, args, words):
    out = tmp_path / "out"
    assert_user_error(run("attack", trained, *DATA, "--norm", "l2", *args, "--out", out), words=words, out=out)


def _saved(tmp_path, images, labels, num_classes):
    from advtf.data import DatasetInfo, write_saved_dataset

    info = DatasetInfo(name="hand-made", num_classes=num_classes, class_names=tuple(map(str, range(num_classes))),
                       image_shape=(16, 16, 1), mean=(0.5,), std=(0.25,), natural_images=False, source="test")
    directory = tmp_path / "data"
    ds = tf.data.Dataset.from_tensor_slices({"image": images.astype(np.float32), "label": labels.astype(np.int32)})
    write_saved_dataset(directory, {"test": ds, "train": ds}, kind="hand-made", info=info, source={},
                        parameters={})
    return directory


def test_nan_images_are_refused(trained, tmp_path):
    images = np.random.default_rng(0).uniform(size=(4, 16, 16, 1))
    images[2, 3, 3, 0] = np.nan
    data = _saved(tmp_path, images, np.arange(4), 10)
    out = tmp_path / "out"
    assert_user_error(run("attack", trained, "--dataset", data, "--eps", "0.1", "--quiet", "--out", out),
                      words="NaN or inf", out=out)


def test_targeted_needs_two_classes(trained, tmp_path):
    data = _saved(tmp_path, np.zeros((4, 16, 16, 1)), np.zeros(4), 1)
    out = tmp_path / "out"
    assert_user_error(run("attack", trained, "--dataset", data, "--targeted", "--eps", "0.1", "--quiet",
                          "--out", out), words="at least two classes", out=out)


def test_attack_request_is_a_plain_record():
    from advtf.adversarial import AttackRequest
    from advtf.attacks import Threat

    request = AttackRequest("pgd", Threat(norm="l2", eps=0.5), targeted=True, target_mode="next")
    assert json.loads(json.dumps(request.to_json()))["target_mode"] == "next"
    assert dataclasses.replace(request, targeted=False).to_json()["target_mode"] is None
