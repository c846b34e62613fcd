"""``advtf train``: a standard or adversarially robust classifier, resumable by epoch.

The loop, schedules and checkpoints are :mod:`advtf.training`; this job loads the data, builds
the model, trains it with its checkpoints in the run's resume store, evaluates it on the test
split and writes the run directory (``model.keras``, ``results.json``, ``results.csv/.md``,
``history.csv``, ``training.png``, ``initial.weights.h5``, ``logs/``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from advtf import validation as check
from advtf.attacks import Threat
from advtf.data import DataSplits, make_batches
from advtf.data.saved import is_saved_dataset, read_section
from advtf.distribute import STRATEGIES
from advtf.distribute.strategy import make_strategy
from advtf.errors import UserError
from advtf.evaluation import evaluate
from advtf.inputs import DataRequest
from advtf.jobs import Request
from advtf.jobs.training_checks import check_optimisation, check_training_threat, checked_milestones
from advtf.models import count_params, create_model
from advtf.models.precision import PRECISIONS, model_precision
from advtf.models.registry import get_spec
from advtf.plots.training import training_curves
from advtf.runs import write_json, write_table
from advtf.training.batch_norm import recalibrate_batch_norm
from advtf.training.loop import RESUME_DIR, AdversarialConfig, TrainConfig, save_weights_atomically, train
from advtf.training.schedules import default_milestones

# Training on a derived set (robustified, relabeled, adversarial) follows Springer et al.'s Table 3
# for zero-/negative-robust classifiers: Adam with its default parameters (so no weight decay),
# lr 1e-4 with decay, no augmentation, early stopping on a held-out part of the set. `advtf train`
# applies these to the options a user did not give.
DERIVED_SET_DEFAULTS = {"optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "schedule": "cosine",
                        "augment": False, "validation": 0.1, "early_stopping": 10}

INITIAL_WEIGHTS = "initial.weights.h5"  # the weights before training, for `advtf retrain --reinit-only`
CHECKPOINTS = "train"  # the key of the checkpoints in the run's resume store


def derived_set_kind(dataset: str) -> str | None:
    """The kind of a saved dataset directory (``robustified``, ``relabeled``, ...), else None."""
    if not is_saved_dataset(dataset):
        return None
    return read_section(dataset).section.get("kind") or "saved"


@dataclasses.dataclass(frozen=True)
class TrainRequest(Request):
    """Options of ``advtf train``; every field is the option of the same name.

    ``lr_milestones=None`` means piecewise's default (50% and 75% of ``epochs``) and
    ``select_by="auto"`` the validation metric of the training (robust for ``robust``, clean
    otherwise) with a validation split, else the last epoch; both are resolved here, so the
    recorded request holds the effective values.
    """

    data: DataRequest = DataRequest()
    model: str = "resnet20v2"
    width: float = 1.0
    weights: str | None = None
    robust: bool = False
    norm: str = "l2"
    eps: float = 0.5
    attack_steps: int = 7
    step_size: float | None = None
    restarts: int = 1
    attack_target: str = "label"
    clean_fraction: float = 0.0
    fast: bool = False
    eval_steps: int = 20
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "piecewise"
    lr_milestones: tuple | None = None
    augment: bool | None = None
    select_by: str = "auto"
    early_stopping: int = 0
    precise_bn: int = 0
    save_every_epoch: bool = False
    jit: bool = False
    strategy: str = "auto"
    precision: str = "float32"

    def __post_init__(self):
        data = self.data
        check.seed(data.seed)
        check.validation_split(data.validation)
        check.optional_count("--train-subset", data.train_subset)
        check.optional_count("--test-subset", data.test_subset)
        check.optional_count("--image-size", data.image_size, minimum=8)
        get_spec(self.model)
        check.positive("--width", self.width)
        check.choice("--weights", self.weights or "none", ("none", "imagenet"))
        check_training_threat(self)
        if not self.robust and (self.fast or self.clean_fraction):
            raise UserError("--fast and --clean-fraction only apply to adversarial training; add --robust or drop them")
        check_optimisation(self)
        self._resolve_milestones()
        check.choice("--select-by", self.select_by, ("auto", "last", "clean", "robust"))
        self._resolve_selection()
        check.count("--early-stopping", self.early_stopping, minimum=0)
        check.count("--precise-bn", self.precise_bn, minimum=0)
        check.choice("--strategy", self.strategy, STRATEGIES)
        check.choice("--precision", self.precision, PRECISIONS)

    def _resolve_milestones(self) -> None:
        milestones = self.lr_milestones
        if milestones is None:
            milestones = default_milestones(self.epochs) if self.schedule == "piecewise" else ()
        milestones = checked_milestones(milestones, self.epochs, self.schedule)
        object.__setattr__(self, "lr_milestones", milestones)

    def _resolve_selection(self) -> None:
        has_validation = bool(self.data.validation)
        select_by = self.select_by
        if select_by == "auto":
            select_by = ("robust" if self.robust else "clean") if has_validation else "last"
        elif select_by in ("clean", "robust") and not has_validation:
            raise UserError(f"--select-by {select_by} picks the epoch by validation accuracy; add --validation "
                            "(e.g. --validation 0.1) or use --select-by last")
        if select_by == "robust" and not self.robust:
            raise UserError("--select-by robust measures validation accuracy under the training attack; "
                            "add --robust or use --select-by clean")
        if self.early_stopping and select_by == "last":
            raise UserError("--early-stopping stops on the validation accuracy; add --validation (e.g. 0.1) and "
                            "drop --select-by last")
        object.__setattr__(self, "select_by", select_by)

    def inputs(self) -> list[str]:
        return [self.data.dataset]

    @property
    def threat(self) -> Threat:
        """The training threat (its norm and eps are also the test evaluation's)."""
        return Threat(norm=self.norm, eps=self.eps, steps=self.attack_steps, step_size=self.step_size,
                      restarts=self.restarts)

    @property
    def eval_threat(self) -> Threat:
        """PGD-``eval_steps`` on the same ball with its default step, for the test split's robust accuracy."""
        return dataclasses.replace(self.threat, steps=self.eval_steps, step_size=None)

    @property
    def adversarial(self) -> AdversarialConfig | None:
        if not self.robust:
            return None
        return AdversarialConfig(threat=self.threat, attack_target=self.attack_target,
                                 clean_fraction=self.clean_fraction, fast=self.fast)

    def config(self, natural_images: bool) -> TrainConfig:
        """The loop's settings; augmentation defaults to on for natural images only."""
        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer, lr=self.lr,
            momentum=self.momentum, nesterov=self.nesterov, weight_decay=self.weight_decay, schedule=self.schedule,
            lr_milestones=self.lr_milestones, augment=natural_images if self.augment is None else self.augment,
            select_by=self.select_by, early_stopping=self.early_stopping, save_every_epoch=self.save_every_epoch,
            seed=self.data.seed, jit=self.jit, precise_bn=self.precise_bn, precision=self.precision)


def run(request: TrainRequest, run, *, progress=None, report=None) -> dict[str, Any]:
    """Trains into ``run`` (checkpoints in its resume store under ``train``); returns the results.

    The dataset's fingerprint is recorded before training, so ``--resume`` refuses a changed dataset.
    """
    splits = request.data.load()
    splits.require("train")
    run.record_inputs(dataset=splits.fingerprint)
    return train_and_evaluate(request, splits, run.path, checkpoints=run.store.path(CHECKPOINTS),
                              progress=progress)


def train_and_evaluate(request: TrainRequest, splits: DataSplits, directory: Path, *, checkpoints: Path | None = None,
                       progress=None) -> dict[str, Any]:
    """Trains, evaluates on the test split and writes ``directory``; returns the results.

    An existing checkpoint in ``checkpoints`` (default ``directory/resume/train``) is continued.
    ``results.json`` (written last: a directory holding it is finished) has ``clean_accuracy``,
    ``robust_accuracy`` (under ``request.eval_threat`` on the test split, true label attacked),
    ``n_test``, ``epochs``, ``best_epoch``, ``wall_seconds``, ``model``, ``dataset``,
    ``robust_training``, ``training_threat``, ``threat``, ``params``, ``precise_bn_batches``
    (batches of the BatchNormalization recalibration, 0 when off), and the effective
    optimisation settings ``optimizer``, ``lr``, ``weight_decay``, ``schedule``, ``augment``,
    ``lr_milestones`` (epochs where piecewise divides lr by 10; empty otherwise), and
    ``precision`` (the policy the saved model computes in: float32, mixed_float16 or mixed_bfloat16).
    """
    start = time.time()
    directory = Path(directory)
    strategy = make_strategy(request.strategy)
    info = splits.info
    config = request.config(info.natural_images)
    adversarial = request.adversarial
    checkpoints = Path(checkpoints) if checkpoints is not None else directory / RESUME_DIR
    fresh = not (checkpoints.is_dir() and any(checkpoints.iterdir()))  # else the initial weights are saved

    def build():
        model = create_model(request.model, input_shape=info.image_shape, num_classes=info.num_classes,
                             width=request.width, mean=info.mean, std=info.std, weights=request.weights,
                             seed=config.seed)
        if fresh and not (directory / INITIAL_WEIGHTS).exists():
            directory.mkdir(parents=True, exist_ok=True)
            save_weights_atomically(model, directory / INITIAL_WEIGHTS)
        return model

    result = train(build, splits, config, adversarial, workdir=directory, strategy=strategy, progress=progress,
                   checkpoints=checkpoints)
    precise_bn = recalibrate_batch_norm(result.model, make_batches(splits.train, config.batch_size, training=False),
                                        config.precise_bn, strategy) if config.precise_bn else 0
    threat = request.eval_threat
    test = evaluate(result.model, make_batches(splits.test, config.batch_size, training=False), threat=threat,
                    strategy=strategy, seed=config.seed,
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
        "model": request.model,
        "width": request.width,
        "params": count_params(result.model),
        "dataset": info.name,
        "robust_training": adversarial is not None,
        "training_threat": adversarial.threat.to_json() if adversarial else None,
        "fast": bool(adversarial and adversarial.fast),
        "precise_bn_batches": precise_bn,
        "threat": threat.to_json(),
        "attack": "pgd",
        "precision": model_precision(result.model),
    }
    result.model.save(directory / "model.keras")
    training_curves(result.history, directory / "training.png",
                    title=f"{request.model} on {info.name}" + (" (adversarial)" if adversarial else ""))
    write_table(directory, "results", [{
        "model": request.model, "dataset": info.name, "robust_training": results["robust_training"],
        "clean_accuracy": results["clean_accuracy"], "robust_accuracy": results["robust_accuracy"],
        "threat": f"PGD-{threat.steps} {threat.norm} eps={threat.eps:g}", "n_test": results["n_test"],
        "epochs": results["epochs"], "best_epoch": results["best_epoch"]}])
    write_json(directory / "results.json", results)
    return results


def worker_out(out, *, resume: bool) -> str:
    """Where a non-chief worker of multi-worker training writes: a private temporary run directory.

    Every worker of MultiWorkerMirroredStrategy saves checkpoints, but only the chief's run is the
    user's. With ``--resume`` the worker starts from a copy of the chief's interrupted run (its
    checkpoints, best weights and history), so every worker restores the same epoch and state and
    their collectives stay in step; without the chief's partial it has nothing to resume, as the
    chief says too.
    """
    import shutil
    import tempfile

    target = Path(tempfile.mkdtemp(prefix="advtf-worker-")) / "run"
    chief = Path(out).resolve()
    partial = chief.with_name(chief.name + ".partial")
    if resume and partial.is_dir():
        shutil.copytree(partial, target.with_name(target.name + ".partial"))
    return str(target)
