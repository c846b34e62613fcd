"""Follows the README's "Extending advtf" steps: a new attack, a new dataset and a new analysis command,
each registered and run end to end from the command line (registries are copied, nothing leaks)."""

from __future__ import annotations

import dataclasses
import json

import click
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

import advtf.attacks
import advtf.attacks.registry
import advtf.data.registry
import advtf.jobs
from advtf import validation as check
from advtf.attacks import Threat
from advtf.attacks.registry import register_attack
from advtf.cli.main import advtf as advtf_cli
from advtf.cli.options import data_request, dataset_options, print_summary, run_job, run_options
from advtf.data.registry import RawSplits, register_dataset
from advtf.inputs import DataRequest, load_trained_model
from advtf.plots.figure import new_figure, save
from advtf.runs import write_json, write_table


@pytest.fixture(autouse=True)
def fresh_registries(monkeypatch):
    attacks = advtf.attacks.registry.ATTACKS.copy()
    monkeypatch.setattr(advtf.attacks.registry, "ATTACKS", attacks)
    monkeypatch.setattr(advtf.attacks, "ATTACKS", attacks)
    monkeypatch.setattr(advtf.data.registry, "DATASETS", advtf.data.registry.DATASETS.copy())
    monkeypatch.setattr(advtf.jobs, "JOBS", advtf.jobs.JOBS.copy())
    monkeypatch.setattr("advtf.cli.main.JOBS", advtf.jobs.JOBS)


# -- step 1 of "A new attack": a function with the attack signature, registered -----------------------------------
def register_sign_noise():
    @register_attack("sign-noise", norms=("linf",), default_steps=1, summary="Random signs of size eps (a baseline).")
    def sign_noise(model, x, y, threat: Threat, *, targeted=False, target=None, seed=None, jit=False,
                   scale: float = 1.0):
        seed = tf.constant([0, 1], tf.int64) if seed is None else seed  # the stateless seed advtf passes
        noise = tf.sign(tf.random.stateless_uniform(tf.shape(x), seed=seed, minval=-1.0, maxval=1.0))
        return tf.clip_by_value(x + scale * threat.eps * noise, 0.0, 1.0)


# -- step 1 of "A new dataset": a loader returning RawSplits, registered --------------------------------------------
def register_stripes():
    @register_dataset("stripes", description="vertical vs horizontal stripes, 8x8 (a toy)", natural_images=False)
    def load_stripes(*, data_dir, image_size, download):
        images = np.zeros((40, 8, 8, 1), np.float32)
        images[::2, :, ::2] = 1.0   # vertical stripes: class 0
        images[1::2, ::2, :] = 1.0  # horizontal stripes: class 1
        labels = (np.arange(40) % 2).astype(np.int32)
        ds = lambda sl: tf.data.Dataset.from_tensor_slices((images[sl], labels[sl]))  # noqa: E731
        return RawSplits({"train": ds(slice(0, 30)), "test": ds(slice(30, 40))}, {"train": 30, "test": 10},
                         ("vertical", "horizontal"), (8, 8, 1), (0.5,), (0.5,), "generated")


# -- "A new analysis command": analysis (pure), plot, job module, one registry line, one CLI function ---------------
def mean_confidence(logits: np.ndarray) -> dict:
    """Step 1 (advtf/analysis/): pure computation, arrays in, dict out."""
    probs = tf.nn.softmax(logits).numpy()
    return {"mean_confidence": float(probs.max(axis=1).mean()), "per_class": probs.mean(axis=0).tolist()}


def confidence_figure(per_class, path, *, class_names):
    """Step 2 (advtf/plots/): a figure from results only."""
    fig, axes = new_figure(1, 1, figsize=(3, 2))
    axes[0, 0].bar(range(len(per_class)), per_class, tick_label=list(class_names))
    save(fig, path, title="mean predicted probability")


@dataclasses.dataclass(frozen=True)
class ConfidenceRequest(advtf.jobs.Request):
    """Step 3 (advtf/jobs/): a validated request ..."""

    model: str
    data: DataRequest = DataRequest()
    batch_size: int = 16

    def __post_init__(self):
        check.count("--batch-size", self.batch_size)

    def inputs(self):
        return [self.model]


def run(request: ConfidenceRequest, run, *, progress=None, report=None) -> dict:
    """... and run(request, run): read inputs, compute, write results.json, a table and a figure."""
    splits = request.data.load()
    model = load_trained_model(request.model, splits.info.image_shape)
    images = np.stack([x for x, _ in splits.test.as_numpy_iterator()])
    run.record_inputs(dataset=splits.fingerprint)
    results = mean_confidence(model.predict(images, batch_size=request.batch_size, verbose=0))
    write_json(run.path / "results.json", results)
    write_table(run.path, "confidence", [{"class": c, "mean_probability": p}
                                         for c, p in zip(splits.info.class_names, results["per_class"])])
    confidence_figure(results["per_class"], run.path / "confidence.png", class_names=splits.info.class_names)
    return results


@click.command()
@click.argument("model_path", metavar="MODEL")
@dataset_options()
@click.option("--batch-size", type=int, default=16)
@run_options()
def confidence(**kw):
    """Step 5 (cli/): mean confidence of a model on the test split.

    Example: advtf confidence runs/std --out runs/conf
    """
    request = ConfidenceRequest(model=kw["model_path"], data=data_request(kw), batch_size=kw["batch_size"])
    results = run_job("confidence", request, kw)
    print_summary("advtf confidence", [("mean confidence", results["mean_confidence"])], out=kw["out"])


def test_a_new_attack_dataset_and_analysis_command(tmp_path):
    from advtf.models import create_model, save_model

    register_sign_noise()
    register_stripes()
    # step 4: one line in advtf/jobs/__init__.py's command table
    advtf.jobs.register("confidence", "Mean confidence on the test split.", cli=f"{__name__}:confidence",
                        module=__name__)
    model = save_model(create_model("test_cnn", input_shape=(8, 8, 1), num_classes=2, seed=0), tmp_path / "m.keras")
    runner = CliRunner()
    listed = runner.invoke(advtf_cli, ["attacks"])
    assert "sign-noise" in listed.output
    evaluated = runner.invoke(advtf_cli, ["evaluate", str(model), "--dataset", "stripes", "--attack", "sign-noise",
                                          "--eps", "0.1", "--quiet", "--out", str(tmp_path / "eval")])
    assert evaluated.exit_code == 0, evaluated.output
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["n"] == 10 and 0.0 <= results["robust_accuracy"] <= 1.0
    assert "Mean confidence on the test split." in runner.invoke(advtf_cli, ["--help"]).output
    done = runner.invoke(advtf_cli, ["confidence", str(model), "--dataset", "stripes", "--out", str(tmp_path / "c")])
    assert done.exit_code == 0, done.output
    out = tmp_path / "c"
    assert {"results.json", "confidence.csv", "confidence.md", "confidence.png", "manifest.json"} <= \
        {p.name for p in out.iterdir()}
    assert 0.5 <= json.loads((out / "results.json").read_text())["mean_confidence"] <= 1.0
    bad = runner.invoke(advtf_cli, ["confidence", str(model), "--dataset", "stripes", "--batch-size", "0",
                                    "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and not (tmp_path / "bad").exists()
