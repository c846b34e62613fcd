"""The main job on the embedded default: standard vs L2-robust model on Fashion-MNIST.

Trains both at a quick CPU budget, evaluates them under PGD across a sweep of eps, and
writes a short report (Markdown + figure). Each model is a complete ``advtf train`` run
directory inside the output, so every later command can start from it.
"""

from __future__ import annotations

import dataclasses
import shutil
from typing import Any

from advtf import validation as check
from advtf.attacks import Threat
from advtf.data import make_batches
from advtf.evaluation import evaluate
from advtf.inputs import DataRequest, load_trained_model
from advtf.jobs import Request
from advtf.jobs.train import TrainRequest, train_and_evaluate
from advtf.plots.robustness import accuracy_vs_eps
from advtf.runs import read_json, write_json, write_table
from advtf.runs.resume import RESUME

KINDS = ("standard", "robust")


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


@dataclasses.dataclass(frozen=True)
class QuickstartRequest(Request):
    """Options of ``advtf quickstart`` (``settings``: the budget, fixed on the command line)."""

    data_dir: str | None = None
    seed: int = 0
    settings: QuickstartSettings = QuickstartSettings()

    def __post_init__(self):
        check.seed(self.seed)
        for eps in self.settings.sweep:
            check.non_negative("the eps sweep", eps)
        self.training()  # the two training requests validate the budget

    def inputs(self) -> list[str]:
        return [self.data_dir] if self.data_dir else []

    @property
    def data(self) -> DataRequest:
        s = self.settings
        return DataRequest("fashion_mnist", data_dir=self.data_dir, train_subset=s.train_subset,
                           test_subset=s.test_subset, seed=self.seed)

    def training(self) -> dict[str, TrainRequest]:
        """The two ``advtf train`` requests: Adam with cosine decay, standard and L2 PGD (Madry et al.)."""
        s = self.settings
        return {kind: TrainRequest(data=self.data, model=s.model, width=s.width, robust=kind == "robust", norm="l2",
                                   eps=s.eps, attack_steps=s.attack_steps, eval_steps=s.eval_steps, epochs=s.epochs,
                                   batch_size=s.batch_size, optimizer="adam", lr=s.lr, weight_decay=0.0,
                                   schedule="cosine", select_by="last")
                for kind in KINDS}


def run(request: QuickstartRequest, run, *, progress=None, report=None) -> dict[str, Any]:
    """Runs the main job into ``run``; a finished training sub-run found there is kept (resume).

    Each sub-run (``standard/``, ``robust/``) is a complete ``advtf train`` run directory with its
    checkpoints in ``<sub>/resume/train`` until it finishes; the run's resume store then marks it
    done (so an interrupted quickstart keeps it) and the checkpoints are removed. ``results.json``: ``standard`` and
    ``robust`` (each ``clean_accuracy``, ``robust_accuracy``, ``wall_seconds``), ``robust_gain``
    (robust minus standard PGD accuracy), ``eps``, ``norm``, ``sweep`` (rows of model, eps,
    accuracy), ``settings``.
    """
    settings, seed = request.settings, request.seed
    splits = request.data.load()
    splits.require("train")
    run.record_inputs(dataset=splits.fingerprint)
    workdir = run.path
    runs = {}
    for kind, training in request.training().items():
        sub = workdir / kind
        if run.store.is_done(kind) and (sub / "results.json").exists():
            runs[kind] = read_json(sub / "results.json")
        else:
            runs[kind] = train_and_evaluate(training, splits, sub, progress=progress)
            run.store.mark_done(kind)  # the partial is kept from now on, with this finished sub-run
        shutil.rmtree(sub / RESUME, ignore_errors=True)  # that model is finished: its checkpoints go
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
