"""The main job on the embedded default: standard vs L2-robust model on Fashion-MNIST.

Trains both at a quick CPU budget, evaluates them under PGD across a sweep of eps, and
writes a short report (Markdown + figure). Each model is a complete ``advtf train`` run
directory inside the output, so every later command can start from it.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from advtf.attacks import Threat
from advtf.inputs import DataRequest, load_trained_model
from advtf.runs import read_json, write_json, write_table
from advtf.training.loop import AdversarialConfig, TrainConfig
from advtf.training.run import ModelRequest, TrainJob, run_training


@dataclasses.dataclass(frozen=True)
class QuickstartSettings:
    """The quick budget (about 10 minutes on a 2-core CPU)."""

    train_subset: int = 10000
    test_subset: int = 1000
    model: str = "resnet20v2"
    width: float = 0.5
    epochs: int = 4
    batch_size: int = 128
    lr: float = 2e-3
    eps: float = 1.0
    attack_steps: int = 5
    eval_steps: int = 20
    sweep: tuple = (0.0, 0.5, 1.0, 1.5, 2.0)


def _jobs(s: QuickstartSettings, data: DataRequest):
    threat = Threat(norm="l2", eps=s.eps, steps=s.attack_steps)
    config = TrainConfig(epochs=s.epochs, batch_size=s.batch_size, optimizer="adam", lr=s.lr,
                         weight_decay=0.0, schedule="cosine", seed=data.seed)
    model = ModelRequest(s.model, width=s.width)
    eval_threat = dataclasses.replace(threat, steps=s.eval_steps, step_size=None)
    return {
        "standard": TrainJob(data, model, config, None, eval_threat),
        "robust": TrainJob(data, model, config, AdversarialConfig(threat), eval_threat),
    }


def run_quickstart(workdir: Path, *, data_dir: str | None = None, seed: int = 0,
                   settings: QuickstartSettings = QuickstartSettings(), progress=None) -> dict:
    """Runs the main job into ``workdir``; finished parts found there are kept (resume).

    ``results.json``: ``standard`` and ``robust`` (each ``clean_accuracy``,
    ``robust_accuracy``), ``robust_gain`` (robust minus standard PGD accuracy), ``eps``,
    ``sweep`` (rows of model, eps, accuracy), ``settings``.
    """
    from advtf.data import make_batches
    from advtf.evaluation import evaluate
    from advtf.plots.robustness import accuracy_vs_eps

    workdir = Path(workdir)
    data = DataRequest("fashion_mnist", data_dir=data_dir, train_subset=settings.train_subset,
                       test_subset=settings.test_subset, seed=seed)
    runs = {}
    for kind, job in _jobs(settings, data).items():
        sub = workdir / kind
        if (sub / "results.json").exists():
            runs[kind] = read_json(sub / "results.json")
        else:
            runs[kind] = run_training(job, sub, progress=progress)
            shutil.rmtree(sub / "resume", ignore_errors=True)  # that model is finished: its results.json says so
    splits = data.load()
    test = make_batches(splits.test, 250, training=False)
    rows = []
    for kind in runs:
        model = load_trained_model(workdir / kind, splits.info.image_shape)
        for eps in settings.sweep:
            if eps == 0:  # already measured by the training run, on the same test images
                accuracy = runs[kind]["clean_accuracy"]
            elif eps == settings.eps:
                accuracy = runs[kind]["robust_accuracy"]
            else:
                threat = Threat(norm="l2", eps=eps, steps=settings.eval_steps)
                accuracy = evaluate(model, test, threat=threat, seed=seed)["robust_accuracy"]
            rows.append({"model": kind, "eps": eps, "accuracy": accuracy})
    accuracy_vs_eps({k: [(r["eps"], r["accuracy"]) for r in rows if r["model"] == k] for k in runs},
                    workdir / "accuracy_vs_eps.png", chance=1 / splits.info.num_classes,
                    title=f"Fashion-MNIST, L2 PGD-{settings.eval_steps}", xlabel="L2 eps")
    write_table(workdir, "accuracy_vs_eps", rows)
    summary = {kind: {k: runs[kind][k] for k in ("clean_accuracy", "robust_accuracy", "wall_seconds")}
               for kind in runs}
    results = {**summary, "robust_gain": runs["robust"]["robust_accuracy"] - runs["standard"]["robust_accuracy"],
               "eps": settings.eps, "norm": "l2", "sweep": rows, "settings": dataclasses.asdict(settings)}
    write_json(workdir / "results.json", results)
    (workdir / "report.md").write_text(_report(results, settings))
    return results


def _report(results: dict, s: QuickstartSettings) -> str:
    lines = [
        "# advtf quickstart: standard vs L2-robust on Fashion-MNIST", "",
        f"{s.model} (width {s.width}), {s.train_subset} training images, {s.epochs} epochs, Adam lr {s.lr} "
        f"with cosine decay. Robust model: PGD adversarial training (Madry et al.), L2 eps {s.eps}, "
        f"{s.attack_steps} steps of 2.5*eps/steps. Evaluation on {s.test_subset} test images, "
        f"L2 PGD-{s.eval_steps} on the true label.", "",
        "| model | clean accuracy | PGD accuracy (eps %g) | train seconds |" % s.eps, "|---|---|---|---|",
    ]
    for kind in ("standard", "robust"):
        r = results[kind]
        lines.append(f"| {kind} | {r['clean_accuracy']:.3f} | {r['robust_accuracy']:.3f} | {r['wall_seconds']:.0f} |")
    lines += ["", f"Robust minus standard PGD accuracy: **{results['robust_gain']:+.3f}**.", "",
              "![accuracy vs eps](accuracy_vs_eps.png)", "",
              "Each model's run directory (`standard/`, `robust/`) holds model.keras, history.csv and "
              "training.png; `accuracy_vs_eps.csv` holds the sweep.", ""]
    return "\n".join(lines)
