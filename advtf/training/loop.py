"""The strategy-aware training loop: standard, PGD (Madry et al. 2018) and fast (Wong et al. 2020).

A custom loop with ``strategy.run`` rather than ``model.fit``: Keras 3's ``fit`` fails under
MultiWorkerMirroredStrategy (keras-team/keras#20585), and adversarial training needs the
attack inside the step anyway. Checkpoints every epoch make ``--resume`` exact: data order,
augmentation and attack noise are all seeded by (seed, epoch, step), never by how many steps ran
in this process, so a run killed anywhere (even mid-epoch) redoes the epoch after its last
checkpoint exactly. Each epoch's files (history, best weights) are written before its checkpoint:
a kill between them leaves rows and weights the redone epoch rewrites identically.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from advtf.attacks import Threat, fast_fgsm, pgd
from advtf.data import DataSplits, make_batches
from advtf.errors import UserError
from advtf.evaluation import Evaluator
from advtf.distribute.replicas import replica_seed
from advtf.models.precision import PRECISIONS, attack_view, with_precision
from advtf.training.schedules import learning_rate, make_optimizer

# Checkpoints and best weights live in the run's resume store (key ``train``), removed after the commit.
RESUME_DIR = "resume/train"

HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "train_accuracy", "val_clean_accuracy",
                   "val_robust_accuracy", "seconds"]


@dataclasses.dataclass(frozen=True)
class AdversarialConfig:
    """How training examples are attacked.

    Attributes:
        threat: the training threat model (norm, eps, steps, step size, random start).
        attack_target: ``"label"`` attacks the true label; ``"prediction"`` the model's
            prediction on the clean image (avoids label leaking).
        clean_fraction: fraction of every batch left clean (Siddiqui & Breuel mix clean
            samples into adversarial retraining).
        fast: FGSM with random start and step 1.25 eps (Wong et al. 2020) instead of PGD.
    """

    threat: Threat
    attack_target: str = "label"
    clean_fraction: float = 0.0
    fast: bool = False

    def __post_init__(self):
        if self.attack_target not in ("label", "prediction"):
            raise UserError(f"--attack-target must be label or prediction (got {self.attack_target!r})")
        if not 0.0 <= self.clean_fraction < 1.0:
            raise UserError(f"--clean-fraction must be in [0, 1) (got {self.clean_fraction})")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; defaults follow the local-properties paper's ResNet-18 recipe."""

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "piecewise"
    lr_milestones: tuple = ()
    augment: bool | None = None  # None: the dataset's default (crop + flip for natural images)
    select_by: str = "last"
    early_stopping: int = 0
    save_every_epoch: bool = False
    seed: int = 0
    jit: bool = False
    precise_bn: int = 0  # batches for recomputing BatchNormalization statistics after training (0: off)
    precision: str = "float32"  # or mixed_float16 / mixed_bfloat16 (advtf.models.precision)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})")
        if self.precise_bn < 0:
            raise UserError("--precise-bn must be >= 0 (a number of training batches)")
        if self.epochs < 1 or self.batch_size < 1:
            raise UserError("--epochs and --batch-size must be >= 1")
        if self.select_by not in ("last", "clean", "robust"):
            raise UserError(f"--select-by must be last, clean or robust (got {self.select_by!r})")


def _train_step_fn(model, optimizer, adversarial: AdversarialConfig | None, config: TrainConfig,
                   global_batch: int, replicas: int):
    """The per-replica step: attack (optional), forward, coupled weight decay, update.

    Logits and loss are float32 in every precision. With a ``LossScaleOptimizer`` (float16) the
    loss is scaled before the gradient and the optimizer unscales (or skips a non-finite step);
    the decay term is added in the same scaled units. The attack runs on :func:`attack_view`.
    """
    couple_decay = config.weight_decay > 0 and config.optimizer != "adamw"
    attack = (fast_fgsm if adversarial and adversarial.fast else pgd)
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    attacked = attack_view(model)

    def step(x, y, step_index):
        y = tf.cast(y, tf.int32)
        x_train = x
        if adversarial is not None:
            label = y
            if adversarial.attack_target == "prediction":
                label = tf.argmax(model(x, training=False), -1, output_type=tf.int32)
            n_clean = tf.cast(tf.round(adversarial.clean_fraction * tf.cast(tf.shape(x)[0], tf.float32)), tf.int32)
            x_adv = attack(attacked, x[n_clean:], label[n_clean:], adversarial.threat,
                           seed=replica_seed(config.seed, step_index), jit=config.jit)
            x_train = tf.concat([x[:n_clean], x_adv], axis=0)
        with tf.GradientTape() as tape:
            logits = tf.cast(model(x_train, training=True), tf.float32)
            per_example = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.cast(tf.add_n(model.losses), tf.float32))
            if scaled:
                loss = optimizer.scale_loss(loss)
        variables = model.trainable_variables
        grads = tape.gradient(loss, variables)
        if couple_decay:
            decay = config.weight_decay / replicas
            if scaled:
                decay = decay * optimizer.dynamic_scale
            grads = [g + decay * v for g, v in zip(grads, variables)]
        optimizer.apply_gradients(zip(grads, variables))
        correct = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y)
        return {"loss": tf.reduce_sum(per_example), "correct": tf.reduce_sum(tf.cast(correct, tf.float32)),
                "n": tf.cast(tf.size(y), tf.float32)}

    return step


def make_train_step(model, optimizer, adversarial: AdversarialConfig | None, config: TrainConfig,
                    global_batch: int, strategy: tf.distribute.Strategy):
    """The compiled distributed training step ``step(x, y, step_index) -> {loss, correct, n}``.

    Sums over replicas; ``x, y`` come from ``strategy.experimental_distribute_dataset``.
    Public so benchmarks time exactly what training runs.
    """
    replica_step = _train_step_fn(model, optimizer, adversarial, config, global_batch,
                                  strategy.num_replicas_in_sync)

    @tf.function(reduce_retracing=True)
    def distributed_step(x, y, step_index):
        out = strategy.run(replica_step, args=(x, y, step_index))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in out.items()}

    return distributed_step


@dataclasses.dataclass
class TrainResult:
    model: keras.Model
    history: list[dict]
    best_epoch: int
    epochs_run: int


def _read_history(path: Path) -> list[dict]:
    """The rows ``_write_history`` wrote, typed as the loop makes them (integer epochs, floats, None)."""
    if not path.exists():
        return []
    with open(path) as f:
        return [{k: (None if v in ("", None) else int(v) if k == "epoch" else float(v)) for k, v in row.items()}
                for row in csv.DictReader(f)]


def _write_history(path: Path, history: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        writer.writerows(history)
    tmp.replace(path)


def _selection_score(row: dict, select_by: str) -> float:
    key = {"clean": "val_clean_accuracy", "robust": "val_robust_accuracy"}.get(select_by)
    return row["epoch"] if key is None else (row.get(key) or 0.0)


def train(build_model: Callable[[], keras.Model], data: DataSplits, config: TrainConfig,
          adversarial: AdversarialConfig | None = None, *, workdir: str | Path,
          strategy: tf.distribute.Strategy | None = None, progress: Callable | None = None,
          on_epoch: Callable[[dict], None] | None = None, checkpoints: str | Path | None = None) -> TrainResult:
    """Trains ``build_model()`` on ``data.train`` and returns the selected model.

    Args:
        build_model: creates the model (called inside the strategy's scope; rebuilt under
            ``config.precision`` when that is not float32, with the same weights).
        data: splits from :func:`advtf.data.load_dataset`.
        config: optimisation settings.
        adversarial: attack settings for adversarial training; ``None`` trains on clean data.
        workdir: holds ``history.csv``, ``logs/`` and ``epochs/`` (with ``save_every_epoch``).
        checkpoints: the directory of the per-epoch checkpoints and ``best.weights.h5`` (default
            ``workdir/resume/train``; a job passes its resume store's ``train`` entry); an existing
            checkpoint there is resumed.
        strategy: a ``tf.distribute`` strategy (default: the current one).
        progress: ``progress(total=steps, desc=...)`` returning a tqdm-like bar, or ``None``.
        on_epoch: called with each epoch's history row.
    """
    strategy = strategy or tf.distribute.get_strategy()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    n_train = data.sizes["train"]
    global_batch = min(config.batch_size, n_train)
    if global_batch % strategy.num_replicas_in_sync:
        raise UserError(f"--batch-size {global_batch} must be divisible by the {strategy.num_replicas_in_sync} replicas")
    steps_per_epoch = n_train // global_batch
    with strategy.scope():
        model = build_model()
        if config.precision != "float32":
            model = with_precision(model, config.precision)
        schedule = learning_rate(config.schedule, config.lr, steps_per_epoch=steps_per_epoch,
                                 epochs=config.epochs, milestones=config.lr_milestones)
        optimizer = make_optimizer(config.optimizer, schedule, momentum=config.momentum,
                                   nesterov=config.nesterov, weight_decay=config.weight_decay)
        if config.precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
    checkpoints = Path(checkpoints) if checkpoints is not None else workdir / RESUME_DIR
    manager = tf.train.CheckpointManager(checkpoint, checkpoints, max_to_keep=2)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).expect_partial()
    history = _read_history(workdir / "history.csv")[: int(epoch_var.numpy())]

    distributed_step = make_train_step(model, optimizer, adversarial, config, global_batch, strategy)

    val_threat = adversarial.threat if (adversarial and config.select_by == "robust") else None
    validate = Evaluator(model, threat=val_threat, strategy=strategy, seed=config.seed, jit=config.jit)
    writer = tf.summary.create_file_writer(str(workdir / "logs"))
    best_path = checkpoints / "best.weights.h5"
    best_path.parent.mkdir(parents=True, exist_ok=True)
    for epoch in range(int(epoch_var.numpy()), config.epochs):
        start = time.time()
        batches = make_batches(data.train, global_batch, training=True, augment=config.augment,
                               seed=config.seed * 1000 + epoch, drop_remainder=True)
        bar = progress(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}") if progress else None
        totals = {"loss": 0.0, "correct": 0.0, "n": 0.0}
        for i, (x, y) in enumerate(strategy.experimental_distribute_dataset(batches)):
            out = distributed_step(x, y, tf.constant(epoch * steps_per_epoch + i, tf.int64))
            for k in totals:
                totals[k] += float(out[k])
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{totals['loss'] / max(totals['n'], 1):.3f}",
                                acc=f"{totals['correct'] / max(totals['n'], 1):.3f}")
        if bar is not None:
            bar.close()
        row = {"epoch": epoch + 1, "lr": _current_lr(optimizer),
               "train_loss": totals["loss"] / max(totals["n"], 1),
               "train_accuracy": totals["correct"] / max(totals["n"], 1),
               "val_clean_accuracy": None, "val_robust_accuracy": None}
        if data.validation is not None:
            val = validate(make_batches(data.validation, global_batch, training=False))
            row["val_clean_accuracy"] = val["clean_accuracy"]
            row["val_robust_accuracy"] = val.get("robust_accuracy")
        row["seconds"] = round(time.time() - start, 3)
        best_before = max((_selection_score(r, config.select_by) for r in history), default=-math.inf)
        history.append(row)
        if _selection_score(row, config.select_by) > best_before:
            save_weights_atomically(model, best_path)
        if config.save_every_epoch:
            (workdir / "epochs").mkdir(exist_ok=True)
            model.save(workdir / "epochs" / f"epoch_{epoch + 1:03d}.keras")
        _log_scalars(writer, row)
        # The history first, the checkpoint last: a resume keeps the first `epoch` rows of the history.
        _write_history(workdir / "history.csv", history)
        epoch_var.assign(epoch + 1)
        manager.save(checkpoint_number=epoch + 1)
        if on_epoch is not None:
            on_epoch(row)
        if _should_stop(history, config):
            break
    best_epoch = _best_epoch(history, config.select_by)
    if best_path.exists() and config.select_by != "last":
        model.load_weights(best_path)
    return TrainResult(model=model, history=history, best_epoch=best_epoch, epochs_run=len(history))


def save_weights_atomically(model: keras.Model, path: Path) -> None:
    """``model.save_weights(path)`` written aside and renamed: a kill leaves the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(".tmp-" + path.name)  # Keras wants the .weights.h5 ending
    model.save_weights(tmp)
    os.replace(tmp, path)


def _current_lr(optimizer) -> float:
    lr = optimizer.learning_rate
    return float(np.asarray(lr.numpy() if hasattr(lr, "numpy") else lr))


def _best_epoch(history: list[dict], select_by: str) -> int:
    if not history:
        return 0
    return int(max(history, key=lambda r: (_selection_score(r, select_by), -r["epoch"]))["epoch"])


def _should_stop(history: list[dict], config: TrainConfig) -> bool:
    """Early stopping: no improvement of the selection metric for ``early_stopping`` epochs."""
    if config.early_stopping <= 0 or config.select_by == "last":
        return False
    return history[-1]["epoch"] - _best_epoch(history, config.select_by) >= config.early_stopping


def _log_scalars(writer, row: dict) -> None:
    with writer.as_default(step=int(row["epoch"])):
        for key, value in row.items():
            if key != "epoch" and value is not None:
                tf.summary.scalar(key, value)
    writer.flush()
