"""What every loader returns: a dataset's metadata and its train/validation/test pipelines."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import tensorflow as tf

from advtf.errors import UserError


@dataclass(frozen=True)
class DatasetInfo:
    """Metadata of a dataset, enough to build and normalise a model for it.

    Attributes:
        name: Registered name, or ``"saved:<dirname>"`` for a saved dataset.
        num_classes: Number of classes; labels are ``0 .. num_classes - 1``.
        class_names: Human-readable class names, in label order.
        image_shape: ``(height, width, channels)`` of every image.
        mean: Per-channel mean in [0, 1] pixel units (for the model's normalisation layer).
        std: Per-channel standard deviation in pixel units.
        natural_images: True when crop + flip augmentation suits the images by default.
        source: Where the data was read from (a path, or ``"tfds:<name>"``).
    """

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    natural_images: bool
    source: str

    def to_json(self) -> dict[str, Any]:
        """Returns a JSON-able dict (tuples become lists)."""
        return {f.name: _listify(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DatasetInfo:
        """Rebuilds the info written by :meth:`to_json`.

        Raises:
            UserError: A field is missing (the manifest holding it was edited or truncated).
        """
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in d]
        if missing:
            raise UserError(
                f"dataset info is missing {', '.join(missing)}; re-create the saved dataset "
                "with the advtf command that wrote it"
            )
        return cls(
            name=str(d["name"]),
            num_classes=int(d["num_classes"]),
            class_names=tuple(str(c) for c in d["class_names"]),
            image_shape=tuple(int(s) for s in d["image_shape"]),  # type: ignore[arg-type]
            mean=tuple(float(m) for m in d["mean"]),
            std=tuple(float(s) for s in d["std"]),
            natural_images=bool(d["natural_images"]),
            source=str(d["source"]),
        )


def _listify(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass
class DataSplits:
    """The pipelines of one dataset, unbatched, with elements ``(image, label)``.

    Attributes:
        info: The dataset's metadata.
        train: Training examples (after subsetting and carving out validation).
            ``None`` only for a saved dataset without a train split and without a source.
        validation: Examples carved out of train, or ``None`` when not requested.
        test: Test examples; ``None`` only as for ``train``.
        sizes: Number of examples per split (0 for an absent split).
        fingerprint: Small JSON-able dict identifying the input, for run manifests.
    """

    info: DatasetInfo
    train: tf.data.Dataset | None
    validation: tf.data.Dataset | None
    test: tf.data.Dataset | None
    sizes: dict[str, int] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def require(self, split: str) -> tf.data.Dataset:
        """Returns a split, raising a clear error when it is absent.

        Raises:
            UserError: The split does not exist in this dataset.
        """
        ds = getattr(self, split, None)
        if ds is None:
            hint = (
                "pass --validation to carve one out of train"
                if split == "validation"
                else "use a dataset that has it, or a saved dataset whose manifest names a source"
            )
            raise UserError(f"dataset {self.info.name} has no {split} split; {hint}")
        return ds
