"""What a command reads: a dataset request, trained models and checkpoint series, with their fingerprints."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from advtf import validation as check
from advtf.data import load_dataset
from advtf.errors import UserError
from advtf.models import input_fits, load_model
from advtf.runs import MANIFEST, read_json, sha256_file

_EPOCH = re.compile(r"epoch_(\d+)\.keras")


@dataclasses.dataclass(frozen=True)
class DataRequest:
    """The shared dataset options of every command (``--dataset``, ``--data-dir``, ...)."""

    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    image_size: int | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    validation: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise UserError("--dataset is empty; give a registered name (`advtf datasets`) or a saved dataset directory")
        check.optional_count("--image-size", self.image_size, minimum=8)
        check.optional_count("--train-subset", self.train_subset)
        check.optional_count("--test-subset", self.test_subset)
        check.validation_split(self.validation, self.train_subset)
        check.seed(self.seed)

    def load(self):
        """The :class:`advtf.data.DataSplits` this request names."""
        return load_dataset(
            self.dataset, data_dir=self.data_dir, image_size=self.image_size,
            train_subset=self.train_subset, test_subset=self.test_subset,
            validation=self.validation, seed=self.seed,
        )


def load_trained_model(path: str | Path, image_shape=None):
    """A model written by ``advtf train`` (a ``.keras`` file or a run directory holding one).

    Raises:
        UserError: missing or corrupt file, or a model whose input does not fit ``image_shape``.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "model.keras").exists():
            raise UserError(f"{path} holds no model.keras; pass a .keras file or a run directory of `advtf train`")
        path = path / "model.keras"
    model = load_model(path)
    if image_shape is not None:
        input_fits(model, tuple(image_shape))
    return model


def check_model_fits(model, info, *, what: str) -> None:
    """UserError, prefixed with ``what``, unless ``model`` takes ``info``'s images and predicts its classes."""
    try:
        input_fits(model, info.image_shape)
    except UserError as e:
        raise UserError(f"{what}: {e}") from None
    classes = model.output_shape[-1]
    if classes != info.num_classes:
        raise UserError(f"{what}: the model predicts {classes} classes but {info.name} has {info.num_classes}; "
                        f"pass a model trained on {info.name}")


def load_named_models(paths: dict[str, str | Path], option: str) -> dict:
    """``{name: model}`` of ``{name: path}``; a load error names the option and entry (``--victim a: ...``)."""
    models = {}
    for name, path in paths.items():
        try:
            models[name] = load_trained_model(path)
        except UserError as e:
            raise UserError(f"{option} {name}: {e}") from None
    return models


def model_fingerprint(path: str | Path) -> dict:
    """Path and sha256 of a model file, for manifests."""

    path = Path(path)
    if path.is_dir():
        path = path / "model.keras"
    return {"path": str(path), "sha256": sha256_file(path)}


def load_models(paths, info) -> list:
    """Loads every model and checks that all of them fit the dataset (input shape, classes).

    Raises:
        UserError: a model cannot be loaded, takes other images or predicts another number of classes.
    """
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
    return [model_fingerprint(p) for p in paths]


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
