"""What a command reads: a dataset request and a trained model, with their fingerprints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from advtf.errors import UserError


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

    def load(self):
        """The :class:`advtf.data.DataSplits` this request names."""
        from advtf.data import load_dataset

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
    from advtf.models import input_fits, load_model

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
    from advtf.models import input_fits

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
    from advtf.runs import sha256_file

    path = Path(path)
    if path.is_dir():
        path = path / "model.keras"
    return {"path": str(path), "sha256": sha256_file(path)}
