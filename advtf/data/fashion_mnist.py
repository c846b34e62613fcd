"""Fashion-MNIST (the default dataset), streamed from the idx files Debian installs.

``apt-get install dataset-fashion-mnist`` puts them in ``/usr/share/datasets/fashion-mnist/``;
Keras' downloader puts the same files in ``~/.keras/datasets/fashion-mnist/``.
"""

from __future__ import annotations

from pathlib import Path

from advtf.data.idx import find_idx_dir, idx_split
from advtf.data.images import resize_split
from advtf.data.registry import RawSplits, register_dataset
from advtf.errors import UserError

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
MEAN, STD = (0.2860,), (0.3530,)
SYSTEM_DIRS = (Path("~/.keras/datasets/fashion-mnist"), Path("/usr/share/datasets/fashion-mnist"))


def search_dirs(data_dir: str | None, subdir: str = "fashion-mnist") -> list[Path]:
    """Directories searched in order: ``data_dir``, ``data_dir/<subdir>``, then the system ones."""
    dirs = [Path(data_dir).expanduser(), Path(data_dir).expanduser() / subdir] if data_dir else []
    return dirs + [d.expanduser() for d in SYSTEM_DIRS]


def _locate(data_dir: str | None) -> tuple[bool, str]:
    found = find_idx_dir(search_dirs(data_dir))
    if found:
        return True, str(found)
    return False, "not found in " + ", ".join(str(d) for d in search_dirs(data_dir))


@register_dataset(
    "fashion_mnist",
    description="Fashion-MNIST: 70k 28x28 grayscale clothing images, 10 classes (default)",
    natural_images=False,
    locate=_locate,
)
def load_fashion_mnist(*, data_dir: str | None, image_size: int | None, download: bool) -> RawSplits:
    """Streams Fashion-MNIST from the first directory holding its four idx files."""
    del download  # the files come from the Debian package or --data-dir, never downloaded
    found = find_idx_dir(search_dirs(data_dir))
    if found is None:
        where = ", ".join(str(d) for d in search_dirs(data_dir))
        raise UserError(
            f"Fashion-MNIST not found in {where}; install it with "
            "`apt-get install dataset-fashion-mnist` or pass --data-dir DIR holding the idx files"
        )
    return idx_raw_splits(found, image_size, CLASS_NAMES, MEAN, STD)


def idx_raw_splits(
    directory: Path,
    image_size: int | None,
    class_names: tuple[str, ...],
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> RawSplits:
    """Builds :class:`RawSplits` from a directory of idx files, resized if asked."""
    splits, counts = {}, {}
    for split in ("train", "test"):
        ds, counts[split], shape = idx_split(directory, split)
        splits[split], shape = resize_split(ds, shape, image_size)
    return RawSplits(
        splits=splits,
        counts=counts,
        class_names=class_names,
        image_shape=shape,
        mean=mean,
        std=std,
        source=str(directory),
    )
