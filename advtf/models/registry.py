"""Model registry: `register_model`, `list_models`, `create_model`.

A model family registers short factories with `@register_model(...)`; `create_model` validates
the common arguments once, so factories only build graphs. Registry names are the CLI choices.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras

from advtf.errors import UserError
from advtf.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about a model before building it.

    Attributes:
        name: registry name (also the built model's `name`).
        family: architecture family, e.g. "resnet_v2", "resnet", "vgg", "victim".
        description: one line for `advtf models`.
        default_input_shape: (H, W, C) the model is usually built for.
        min_input_size: smallest H / W the architecture accepts (for wrapped
            keras.applications networks: the network's minimum; smaller images are
            resized up to it inside the model).
        paper: the paper the architecture comes from.
    """

    name: str
    family: str
    description: str
    default_input_shape: tuple[int, int, int]
    min_input_size: int
    paper: str


@dataclass(frozen=True)
class BuildArgs:
    """Validated arguments handed to every factory."""

    input_shape: tuple[int, int, int]
    num_classes: int
    width: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str | None
    seed: int | None
    mean_std_given: bool = False


@dataclass(frozen=True)
class ModelEntry:
    """One registered model: its spec, its factory and whether it resizes small inputs itself."""

    spec: ModelSpec
    factory: Callable[[BuildArgs, ModelSpec], keras.Model]
    resizes_input: bool = False


MODELS: Registry[ModelEntry] = Registry("model", "see `advtf models`")


def register_model(
    name: str,
    *,
    family: str,
    description: str,
    default_input_shape: tuple[int, int, int],
    min_input_size: int = 8,
    paper: str = "",
    resizes_input: bool = False,
) -> Callable:
    """Decorator registering `factory(args: BuildArgs, spec: ModelSpec) -> keras.Model`.

    `resizes_input=True` means the model resizes smaller images up to `min_input_size`
    itself, so `create_model` accepts any size.
    """
    spec = ModelSpec(name, family, description, tuple(default_input_shape), min_input_size, paper)

    def decorator(factory: Callable) -> Callable:
        MODELS.register(name, ModelEntry(spec, factory, resizes_input))
        return factory

    return decorator


def list_models(pattern: str = "*") -> list[ModelSpec]:
    """Registered models whose name matches the fnmatch `pattern`, sorted by name."""
    return [MODELS.get(n).spec for n in sorted(MODELS) if fnmatch.fnmatchcase(n, pattern)]


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model; UserError listing the names if unknown."""
    return MODELS.get(name).spec


def create_model(
    name: str,
    *,
    input_shape: tuple[int, int, int],
    num_classes: int,
    width: float = 1.0,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    weights: str | None = None,
    seed: int | None = None,
) -> keras.Model:
    """Build a registered model taking images in [0, 1] (HWC) and returning logits.

    Args:
        name: registry name (see `list_models`).
        input_shape: (H, W, C) of the images the model will see.
        num_classes: number of logits.
        width: multiplies every channel count (1.0 = published architecture).
        mean, std: per-channel (or scalar) normalisation applied inside the model as
            its first layer; default 0.5 / 0.5.
        weights: None (random init) or "imagenet" (keras.applications models only).
        seed: makes the initial weights reproducible.

    Returns:
        A functional `keras.Model` named `name`, with `ep_*` endpoint markers.
    """
    spec = get_spec(name)
    shape = _check_shape(input_shape, spec)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise UserError(f"num_classes must be a positive integer, got {num_classes!r}")
    if not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise UserError(f"width must be a positive number, got {width!r}; use e.g. --width 0.25")
    if weights not in (None, "imagenet"):
        raise UserError(f"weights must be None or 'imagenet', got {weights!r}")
    if seed is not None and (not isinstance(seed, int) or seed < 0):
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
    args = BuildArgs(
        input_shape=shape,
        num_classes=num_classes,
        width=float(width),
        mean=_per_channel("mean", 0.5 if mean is None else mean, shape[2]),
        std=_per_channel("std", 0.5 if std is None else std, shape[2]),
        weights=weights,
        seed=seed,
        mean_std_given=mean is not None or std is not None,
    )
    if any(s <= 0 for s in args.std):
        raise UserError(f"std must be positive, got {args.std}")
    return MODELS.get(name).factory(args, spec)


def _check_shape(input_shape, spec: ModelSpec) -> tuple[int, int, int]:
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(
            f"input_shape must be (height, width, channels), got {input_shape!r}; "
            "e.g. input_shape=(32, 32, 3)"
        )
    if min(shape[:2]) < spec.min_input_size and not MODELS.get(spec.name).resizes_input:
        raise UserError(
            f"model {spec.name!r} needs images of at least {spec.min_input_size}×"
            f"{spec.min_input_size} pixels, got {shape[0]}×{shape[1]}; resize the dataset "
            "or pick another model"
        )
    return shape


def _per_channel(what: str, value, channels: int) -> tuple[float, ...]:
    values = [value] if isinstance(value, (int, float)) else list(value)
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise UserError(
            f"{what} has {len(values)} values but the images have {channels} channels; "
            f"give one {what} per channel or a single number"
        )
    return tuple(float(v) for v in values)
