"""The Broden directory format of NetDissect (Bau et al. 2017), read as a :class:`~advtf.data.concepts.ConceptSet`.

A Broden directory (``broden1_224/``: 224x224 images, 112x112 segmentations; ``broden1_227/``:
227 / 113) holds

* ``index.csv``: ``image,split,ih,iw,sh,sw,<category>...`` (Broden: ``color,object,part,material,
  scene,texture``). Per-pixel categories hold ``;``-separated PNG paths relative to ``images/``
  (``<name>_<cat>.png``, multi-plane ``<name>_<cat>_<k>.png``); per-image categories (scene,
  texture) hold ``;``-separated global label numbers; empty means none;
* ``images/<source>/<name>.jpg`` and the segmentation PNGs: RGB with label = R + 256*G
  (B unused), 0 = unlabeled, values are global label numbers;
* ``label.csv``: ``number,name,category,frequency,coverage,syns``; ``category`` lists the label's
  categories with counts, dominant first (``material(36);object(3)``): the first is its primary
  category, the one whose images its IoU is counted over;
* ``category.csv`` (``name,first,last,count,frequency``; optional here, gives the category order)
  and ``c_<cat>.csv`` (dense per-category codes; not needed, labels are used by global number).

Every path read from ``index.csv`` is resolved and must stay inside ``images/``. Images are read
in index order, decoded in a few threads per batch; nothing but the current batch is in memory.
"""

from __future__ import annotations

import csv
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from advtf.data.concepts import ConceptSet
from advtf.errors import UserError

INDEX_COLUMNS = ("image", "split", "ih", "iw", "sh", "sw")
LABEL_COLUMNS = ("number", "name", "category")
_CATEGORY = re.compile(r"\s*([^();]+?)\s*(?:\(\d+\))?\s*$")


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            return [c.strip() for c in (reader.fieldnames or [])], rows
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"cannot read {path} ({e}); is this a Broden directory?") from None


def find_broden_dir(directory) -> Path:
    """The directory holding ``index.csv``: ``directory`` itself or its ``broden1_224`` / ``broden1_227``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"--concepts broden:{directory}: no such directory; give a Broden directory "
                        "(one holding index.csv, label.csv and images/)")
    if (directory / "index.csv").is_file():
        return directory
    for sub in ("broden1_224", "broden1_227"):
        if (directory / sub / "index.csv").is_file():
            return directory / sub
    raise UserError(f"--concepts broden:{directory}: no index.csv there (nor in broden1_224/ or broden1_227/); "
                    "give a Broden directory holding index.csv, label.csv and images/")


def _primary_category(text: str, where: str) -> str:
    first = (text or "").split(";")[0]
    match = _CATEGORY.fullmatch(first)
    if not match:
        raise UserError(f"{where}: category {text!r} is not like 'material(36);object(3)'; fix label.csv")
    return match.group(1)


def _inside(root: Path, relative: str, where: str) -> Path:
    """``root / relative`` resolved; a UserError when it leaves ``root`` (e.g. ``../..`` or an absolute path)."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise UserError(f"{where}: path {relative!r} leaves the Broden images/ directory; fix index.csv")
    return path


def _int(value: str, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: {value!r} is not an integer; fix index.csv") from None


def load_broden(directory, *, split: str | None = None, limit: int | None = None) -> ConceptSet:
    """The Broden set at ``directory`` (module docstring), optionally one ``split`` and its first ``limit`` images.

    Raises:
        UserError: a missing or malformed ``index.csv`` / ``label.csv``, a path escaping
            ``images/``, an empty selection.
    """
    root = find_broden_dir(directory)
    images_dir = (root / "images").resolve()
    if not images_dir.is_dir():
        raise UserError(f"{root}: no images/ directory; a Broden directory holds index.csv, label.csv and images/")
    header, rows = _read_csv(root / "index.csv")
    if tuple(header[:len(INDEX_COLUMNS)]) != INDEX_COLUMNS or len(header) == len(INDEX_COLUMNS):
        raise UserError(f"{root / 'index.csv'}: header {','.join(header)!r} is not Broden's "
                        f"'{','.join(INDEX_COLUMNS)},<category>,...'")
    if not (root / "label.csv").is_file():
        raise UserError(f"{root}: no label.csv; a Broden directory holds index.csv, label.csv and images/")
    label_header, label_rows = _read_csv(root / "label.csv")
    if tuple(label_header[:3]) != LABEL_COLUMNS:
        raise UserError(f"{root / 'label.csv'}: header {','.join(label_header)!r} does not start with "
                        f"'{','.join(LABEL_COLUMNS)}'")
    categories = list(header[len(INDEX_COLUMNS):])
    if (root / "category.csv").is_file():
        cat_header, cat_rows = _read_csv(root / "category.csv")
        named = [r["name"].strip() for r in cat_rows if r.get("name")]
        categories = [c for c in named if c in categories] + [c for c in categories if c not in named]

    numbers, names, label_categories = [], [], []
    for i, row in enumerate(label_rows):
        where = f"{root / 'label.csv'} line {i + 2}"
        number = _int(row["number"], where)
        if number == 0:
            continue  # the "-" (unlabeled) entry
        category = _primary_category(row["category"], where)
        if category not in categories:
            raise UserError(f"{where}: category {category!r} is not a column of index.csv ({', '.join(categories)})")
        numbers.append(number)
        names.append(row["name"].strip())
        label_categories.append(category)

    if split not in (None, "all"):
        rows = [r for r in rows if (r.get("split") or "").strip() == split]
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise UserError(f"{root / 'index.csv'}: no images{' in split ' + repr(split) if split else ''}; "
                        "choose another --split")

    entries = []  # per image: (image path, [(category index, png path)], [(category index, label)])
    for i, row in enumerate(rows):
        where = f"{root / 'index.csv'} line {i + 2}"
        image = _inside(images_dir, (row.get("image") or "").strip(), where)
        planes, labels = [], []
        for k, cat in enumerate(categories):
            for item in (row.get(cat) or "").split(";"):
                item = item.strip()
                if not item:
                    continue
                if item.isdigit():
                    labels.append((k, int(item)))
                else:
                    planes.append((k, _inside(images_dir, item, where)))
        entries.append((image, planes, labels))
    first = rows[0]
    image_shape = (_int(first["ih"], "index.csv"), _int(first["iw"], "index.csv"), 3)
    seg_shape = (_int(first["sh"], "index.csv"), _int(first["sw"], "index.csv"))
    return ConceptSet(
        name=f"broden:{root}", size=len(entries), image_shape=image_shape, seg_shape=seg_shape,
        categories=tuple(categories), label_numbers=np.asarray(numbers, np.int64), label_names=tuple(names),
        label_categories=tuple(label_categories),
        batches=lambda batch_size, start=0: _batches(entries[start:], len(categories), image_shape, seg_shape,
                                                     batch_size),
        description=f"Broden {root} ({split or 'all splits'}): {len(entries)} images {image_shape[0]}x"
                    f"{image_shape[1]}, segmentations {seg_shape[0]}x{seg_shape[1]}, {len(numbers)} labels")


def _read_rgb(path: Path, shape: tuple[int, int], resample: int, what: str) -> np.ndarray:
    """An image file as an RGB uint8 array of ``shape``, resized with ``resample`` if it differs."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (shape[1], shape[0]):
                im = im.resize((shape[1], shape[0]), resample)
            return np.asarray(im)
    except OSError as e:
        raise UserError(f"cannot read {what} {path} ({e}); is the Broden directory complete?") from None


def decode_segmentation(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Global label numbers ``R + 256 G`` of a segmentation PNG, resized (nearest) to ``shape`` if needed."""
    from PIL import Image

    rgb = _read_rgb(path, shape, Image.NEAREST, "segmentation").astype(np.int32)
    return rgb[..., 0] + 256 * rgb[..., 1]


def decode_image(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """An RGB image as float32 in [0, 1], resized (bilinear) to ``shape`` if it differs."""
    from PIL import Image

    return _read_rgb(path, shape, Image.BILINEAR, "image").astype(np.float32) / 255.0


def _decode_entry(entry, num_categories, image_shape, seg_shape):
    image_path, planes, labels = entry
    image = decode_image(image_path, image_shape[:2])
    segs = [decode_segmentation(p, seg_shape) for _, p in planes]
    present = np.zeros(num_categories, bool)
    for (k, _), seg in zip(planes, segs):
        present[k] |= bool(seg.any())
    for k, _ in labels:
        present[k] = True
    return image, segs, [n for _, n in labels], present


def _batches(entries, num_categories, image_shape, seg_shape, batch_size):
    with ThreadPoolExecutor(max_workers=4) as pool:
        for start in range(0, len(entries), batch_size):
            decoded = list(pool.map(lambda e: _decode_entry(e, num_categories, image_shape, seg_shape),
                                    entries[start:start + batch_size]))
            b = len(decoded)
            planes = max(1, max(len(d[1]) for d in decoded))
            width = max(1, max(len(d[2]) for d in decoded))
            pixel_labels = np.zeros((b, planes, *seg_shape), np.int32)
            image_labels = np.zeros((b, width), np.int32)
            for i, (_, segs, labels, _) in enumerate(decoded):
                if segs:
                    pixel_labels[i, :len(segs)] = np.stack(segs)
                image_labels[i, :len(labels)] = labels
            yield {"image": np.stack([d[0] for d in decoded]), "pixel_labels": pixel_labels,
                   "image_labels": image_labels, "present": np.stack([d[3] for d in decoded])}
