"""A complete ``advtf train`` run: data, model, loop, test evaluation, run directory."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from advtf.attacks import Threat
from advtf.inputs import DataRequest
from advtf.runs import write_json
from advtf.training.loop import RESUME_DIR, AdversarialConfig, TrainConfig, train
from advtf.distribute.strategy import make_strategy


# Training on a derived set (robustified, relabeled, adversarial) follows Springer et al.'s Table 3
# for zero-/negative-robust classifiers: Adam with its default parameters (so no weight decay),
# lr 1e-4 with decay, no augmentation, early stopping on a held-out part of the set. `advtf train`
# applies these to the options a user did not give.
DERIVED_SET_DEFAULTS = {"optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "schedule": "cosine",
                        "augment": False, "validation": 0.1, "early_stopping": 10}


def derived_set_kind(dataset: str) -> str | None:
    """The kind of a saved dataset directory (``robustified``, ``relabeled``, ...), else None."""
    from advtf.data.saved import is_saved_dataset, read_section

    if not is_saved_dataset(dataset):
        return None
    return read_section(dataset).section.get("kind") or "saved"


@dataclasses.dataclass(frozen=True)
class ModelRequest:
    """Which architecture to build (``advtf models`` lists the names)."""

    name: str = "resnet20v2"
    width: float = 1.0
    weights: str | None = None


@dataclasses.dataclass(frozen=True)
class TrainJob:
    """Everything ``advtf train`` needs; the CLI fills it from its options."""

    data: DataRequest
    model: ModelRequest
    config: TrainConfig
    adversarial: AdversarialConfig | None
    eval_threat: Threat  # used for the final robust accuracy on the test split
    strategy: str = "auto"


def run_training(job: TrainJob, workdir: Path, *, progress=None) -> dict:
    """Trains, evaluates on the test split and writes ``workdir``; returns results.

    ``results.json`` keys: ``clean_accuracy``, ``robust_accuracy`` (under ``eval_threat``
    on the test split, true label attacked), ``n_test``, ``epochs``, ``best_epoch``,
    ``wall_seconds``, ``model``, ``dataset``, ``robust_training``, ``threat``, ``params``,
    ``precise_bn_batches`` (batches of the BatchNormalization recalibration, 0 when off), and the
    effective optimisation settings ``optimizer``, ``lr``, ``weight_decay``, ``schedule``,
    ``lr_milestones`` (epochs where piecewise divides lr by 10; empty otherwise).
    """
    from advtf.evaluation import evaluate
    from advtf.models import count_params, create_model
    from advtf.plots.training import training_curves

    start = time.time()
    strategy = make_strategy(job.strategy)
    data = job.data.load()
    data.require("train")
    info = data.info
    config = job.config
    if config.augment is None:
        config = dataclasses.replace(config, augment=info.natural_images)

    workdir = Path(workdir)

    def build():
        model = create_model(job.model.name, input_shape=info.image_shape, num_classes=info.num_classes,
                             width=job.model.width, mean=info.mean, std=info.std,
                             weights=job.model.weights, seed=job.config.seed)
        initial = workdir / "initial.weights.h5"  # the weights before training, for `advtf retrain --reinit-only`
        if not initial.exists() and not (workdir / RESUME_DIR).exists():
            model.save_weights(initial)
        return model

    result = train(build, data, config, job.adversarial, workdir=workdir, strategy=strategy, progress=progress)
    from advtf.data import make_batches
    from advtf.training.batch_norm import recalibrate_batch_norm

    precise_bn = recalibrate_batch_norm(result.model, make_batches(data.train, config.batch_size, training=False),
                                        config.precise_bn, strategy) if config.precise_bn else 0

    test = evaluate(result.model, make_batches(data.test, job.config.batch_size, training=False),
                    threat=job.eval_threat, strategy=strategy, seed=job.config.seed,
                    progress=progress(total=None, desc="test (PGD)") if progress else None)
    results = {
        "augment": config.augment,
        "optimizer": config.optimizer,
        "lr": config.lr,
        "weight_decay": config.weight_decay,
        "schedule": config.schedule,
        "lr_milestones": list(config.lr_milestones) if config.schedule == "piecewise" else [],
        "clean_accuracy": test["clean_accuracy"],
        "robust_accuracy": test["robust_accuracy"],
        "n_test": test["n"],
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "wall_seconds": round(time.time() - start, 2),
        "model": job.model.name,
        "width": job.model.width,
        "params": count_params(result.model),
        "dataset": info.name,
        "dataset_fingerprint": data.fingerprint,
        "robust_training": job.adversarial is not None,
        "training_threat": job.adversarial.threat.to_json() if job.adversarial else None,
        "fast": bool(job.adversarial and job.adversarial.fast),
        "precise_bn_batches": precise_bn,
        "threat": job.eval_threat.to_json(),
        "attack": "pgd",
    }
    result.model.save(workdir / "model.keras")
    # Checkpoints are resume state, removed by the run directory only after the commit.
    write_json(workdir / "results.json", {k: v for k, v in results.items() if k != "dataset_fingerprint"})
    training_curves(result.history, workdir / "training.png",
                    title=f"{job.model.name} on {info.name}" + (" (adversarial)" if job.adversarial else ""))
    return results
