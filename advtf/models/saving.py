"""Saving and loading advtf models (`.keras` zip format, safe mode) and input checks."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import keras

from advtf.errors import UserError
from advtf.models import layers as _custom_layers  # noqa: F401  (registers advtf>* layers)

_HINT = "pass a .keras file written by `advtf train`"


def save_model(model: keras.Model, path: str | Path) -> Path:
    """Writes `model` (architecture, weights, endpoint markers) to a `.keras` file.

    Returns:
        The path written.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise UserError(f"cannot save model to '{path}': the file name must end in .keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def load_model(path: str | Path) -> keras.Model:
    """Loads a model saved by `save_model` with `safe_mode=True` (no arbitrary code).

    Args:
        path: a `.keras` file, or a run directory holding `model.keras`.

    Raises:
        UserError: the file is missing, not a `.keras` zip archive, or corrupt.
    """
    path = Path(path)
    if path.is_dir() and (path / "model.keras").is_file():
        path = path / "model.keras"
    if not path.is_file():
        raise UserError(f"cannot load model '{path}': no such file; {_HINT}")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise UserError(f"cannot load model '{path}': not a .keras zip archive; {_HINT}")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # Keras raises many types for damaged archives
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"cannot load model '{path}': corrupt or incompatible ({reason}); {_HINT}"
        ) from err


def input_fits(model: keras.Model, image_shape: Sequence[int]) -> None:
    """Raises UserError unless images of `image_shape` (H, W, C) fit the model's input.

    A leading batch dimension in `image_shape` is ignored.
    """
    dims = tuple(image_shape)
    dims = dims[1:] if len(dims) == 4 else dims
    got = tuple(None if d is None else int(d) for d in dims)
    expected = tuple(model.input_shape[1:])
    if len(got) != 3 or any(e is not None and e != g for e, g in zip(expected, got)):
        raise UserError(
            f"model {model.name!r} expects {_fmt(expected)} images but the dataset gives "
            f"{_fmt(got)}; build the model for this dataset (input_shape={got}) or pick a "
            "dataset of the model's size"
        )


def _fmt(shape) -> str:
    return "×".join("?" if d is None else str(d) for d in shape)
