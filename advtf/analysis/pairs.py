"""What the local-properties analyses share: several models on one dataset, natural/adversarial
pairs batch by batch, and checkpoint series of ``advtf train --save-every-epoch``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import numpy as np

from advtf.errors import UserError

_EPOCH = re.compile(r"epoch_(\d+)\.keras")


def load_models(paths, info) -> list:
    """Loads every model and checks that all of them fit the dataset (input shape, classes).

    Raises:
        UserError: a model cannot be loaded, takes other images or predicts another number of classes.
    """
    from advtf.inputs import load_trained_model

    models = []
    for path in paths:
        model = load_trained_model(path, info.image_shape)
        classes = int(model.output_shape[-1])
        if classes != info.num_classes:
            raise UserError(f"model {path} predicts {classes} classes but {info.name} has {info.num_classes}; "
                            "models analysed together must be trained on the same dataset")
        models.append(model)
    return models


def model_name(path) -> str:
    """A short label of a model path: the run directory's name for ``DIR/model.keras``, else the file name."""
    p = Path(str(path))
    return p.parent.name if p.name == "model.keras" else p.name


def fingerprints(paths) -> list[dict]:
    from advtf.inputs import model_fingerprint

    return [model_fingerprint(p) for p in paths]


def adversarial_pairs(model, splits, request, *, batch_size: int, seed: int, progress=None,
                      desc: str = "") -> Iterator[dict[str, np.ndarray]]:
    """:func:`advtf.adversarial.attack_batches` over the test split, with a progress bar.

    Every model attacked this way sees the same images in the same order (the test split is
    batched without shuffling), so rows of different models line up example by example.
    """
    from advtf.adversarial import attack_batches
    from advtf.data import make_batches

    source = splits.require("test")
    bar = progress(total=splits.sizes.get("test"), desc=desc or request.name, unit="img") if progress else None
    try:
        yield from attack_batches(model, make_batches(source, batch_size, training=False), request,
                                  num_classes=splits.info.num_classes, seed=seed, progress=bar)
    finally:
        if bar is not None:
            bar.close()


def success_on(predicted: np.ndarray, rows: dict[str, np.ndarray], targeted: bool) -> np.ndarray:
    """Whether adversarial examples succeed on a model that predicted ``predicted`` for them.

    Untargeted: the prediction differs from the true label; targeted: it is the target.
    """
    return predicted == rows["target"] if targeted else predicted != rows["label"]


def checkpoint_series(directory) -> tuple[str, list[tuple[int, Path]]]:
    """The ``(epoch, path)`` checkpoints of an ``advtf train --save-every-epoch`` run, in epoch order.

    ``directory`` is the run directory (holding ``epochs/``) or the ``epochs/`` directory itself.
    Returns the run's label (its name, with its weight decay when its manifest records one).

    Raises:
        UserError: no ``epoch_NNN.keras`` files there.
    """
    directory = Path(directory)
    epochs_dir = directory / "epochs" if (directory / "epochs").is_dir() else directory
    found = sorted((int(m.group(1)), p) for p in epochs_dir.glob("epoch_*.keras")
                   if (m := _EPOCH.fullmatch(p.name)))
    if not found:
        raise UserError(f"--checkpoints {directory}: no epochs/epoch_NNN.keras there; train with "
                        "`advtf train --save-every-epoch` and pass its --out directory")
    run_dir = epochs_dir.parent if epochs_dir.name == "epochs" else epochs_dir
    return run_label(run_dir), found


def checkpoint_fingerprints(series) -> dict[str, list[dict]]:
    """``{run label: [fingerprint of each epoch file]}`` of :func:`checkpoint_series` results, for manifests."""
    return {label: fingerprints([path for _, path in found]) for label, found in series}


def run_label(run_dir: Path) -> str:
    """A run's name, plus ``wd=<weight decay>`` read from its manifest when there is one."""
    from advtf.runs import MANIFEST, read_json

    label = run_dir.name
    manifest = run_dir / MANIFEST
    if manifest.is_file():
        try:
            wd = read_json(manifest).get("options", {}).get("weight_decay")
        except (OSError, ValueError):
            wd = None
        if wd is not None:
            label = f"{label} (wd={float(wd):g})"
    return label


def concat_rows(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenates per-batch dicts of arrays."""
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]} if chunks else {}


def by_run(rows: list[dict]) -> dict[str, dict[str, list]]:
    """Regroups ``{"run": ..., key: value}`` rows as ``{run: {key: [values in row order]}}`` for epoch curves."""
    grouped: dict[str, dict[str, list]] = {}
    for row in rows:
        entry = grouped.setdefault(row["run"], {})
        for key, value in row.items():
            entry.setdefault(key, []).append(value)
    return grouped
