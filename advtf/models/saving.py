"""Saving and loading advtf models (`.keras` zip format, safe mode) and input checks.

Model files are untrusted input: only `.keras` zip archives are loaded, their config is
screened for anything that would run Python code (Lambda layers, functions outside Keras)
before Keras sees it, and Keras then loads them with ``safe_mode=True``. Legacy HDF5 model
files are refused because Keras ignores ``safe_mode`` for them.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

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
        UserError: the file is missing, a legacy HDF5 model, not a `.keras` zip archive,
            asks to run Python code, or is corrupt.
    """
    path = Path(path)
    if path.is_dir() and (path / "model.keras").is_file():
        path = path / "model.keras"
    if not path.is_file():
        raise UserError(f"cannot load model '{path}': no such file; {_HINT}")
    if path.suffix.lower() in (".h5", ".hdf5") or _is_hdf5(path):
        raise UserError(
            f"cannot load model '{path}': legacy HDF5 model files are refused because Keras ignores "
            "safe_mode for them (they can run code); re-save the model as .keras with a Keras you trust"
        )
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise UserError(f"cannot load model '{path}': not a .keras zip archive; {_HINT}")
    screen_archive(path)
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # Keras raises many types for damaged archives
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise UserError(
            f"cannot load model '{path}': corrupt or incompatible ({reason}); {_HINT}"
        ) from err


def load_run_weights(model: keras.Model, run_dir: str | Path, name: str) -> None:
    """Loads weights advtf wrote into a run directory (``initial.weights.h5``) into ``model``.

    Weight files hold arrays only (no code); the file must still be a regular file inside
    ``run_dir`` (no symlink or ``..`` leading elsewhere).

    Raises:
        UserError: the file leaves the run directory or does not fit ``model``.
    """
    run_dir = Path(run_dir)
    path = run_dir / name
    if PurePosixPath(name).name != name or not path.resolve().is_relative_to(run_dir.resolve()):
        raise UserError(f"{path} points outside the run directory {run_dir}; remove it to use fresh weights")
    try:
        model.load_weights(path)
    except Exception as err:  # a file of another architecture
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise UserError(f"{path} does not fit the model ({reason}); remove it to use fresh weights") from None


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_MAX_CONFIG_BYTES = 64 * 2**20
# Layers that run Python code or load other files when built: never in an advtf model.
_CODE_LAYERS = frozenset({"Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer", "__lambda__"})
# Packages whose functions a config may reference (activations, losses, metrics, ops).
_FUNCTION_PACKAGES = frozenset({"activations", "losses", "metrics", "ops"})


def _is_hdf5(path: Path) -> bool:
    """True when the HDF5 signature sits where HDF5 puts its superblock (0, 512, 1024, ...)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        offset = 0
        while offset + len(_HDF5_MAGIC) <= min(size, 2**24):
            f.seek(offset)
            if f.read(len(_HDF5_MAGIC)) == _HDF5_MAGIC:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False


def screen_archive(path: str | Path) -> None:
    """Refuses a `.keras` archive whose members or config could make Keras run code.

    Checked independently of Keras' own safe mode (which has had bypasses): member names stay
    inside the archive; no Lambda-like layer or serialised function; every ``module`` is Keras,
    ``builtins`` or advtf; functions come only from Keras activations, losses, metrics or ops;
    custom objects are advtf's own registered layers.

    Raises:
        UserError: one line naming what was found.
    """
    path = Path(path)
    refuse = f"cannot load model '{path}': refused, the archive"
    fix = "load only models written by `advtf train` or another source you trust"
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                member = PurePosixPath(info.filename.replace("\\", "/"))
                if member.is_absolute() or ".." in member.parts or ":" in info.filename:
                    raise UserError(f"{refuse} holds a member path leaving it ({info.filename!r}); {fix}")
            try:
                info = archive.getinfo("config.json")
            except KeyError:
                raise UserError(
                    f"cannot load model '{path}': corrupt or incompatible (no config.json in the archive); {_HINT}"
                ) from None
            if info.file_size > _MAX_CONFIG_BYTES:
                raise UserError(f"{refuse} has a config.json of {info.file_size} bytes; {fix}")
            config = json.loads(archive.read(info))
    except (zipfile.BadZipFile, OSError, ValueError, RecursionError) as err:
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load model '{path}': corrupt or incompatible ({reason}); {_HINT}") from None
    problem = _code_reference(config)
    if problem:
        raise UserError(f"{refuse} asks to run Python code ({problem}); {fix}")


def _code_reference(node) -> str | None:
    """The first config entry that would run or import non-Keras code, described; None if none."""
    stack = [node]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(node.values())
        class_name, module = node.get("class_name"), node.get("module")
        registered = node.get("registered_name")
        if isinstance(class_name, str) and class_name in _CODE_LAYERS:
            return f"a {class_name} layer"
        if "module" in node and module is not None:
            if not isinstance(module, str):
                return f"module {str(module)[:60]!r}"
            package = module.split(".")
            name = f"{module}.{str(node.get('config') if class_name == 'function' else class_name)[:60]}"
            if package[0] not in ("keras", "builtins", "advtf"):
                return name
            if class_name == "function" and package[0] == "keras" and not _FUNCTION_PACKAGES & set(package):
                return f"function {name}"
            if package[0] == "advtf" and not (isinstance(registered, str) and registered.startswith("advtf>")):
                return f"{name} is no registered advtf layer"
        if registered is not None and not (
            isinstance(registered, str) and (registered == class_name or registered.startswith("advtf>"))
        ):
            return f"custom object {str(registered)[:60]!r}"
    return None


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
