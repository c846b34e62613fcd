"""Concept sets for network dissection: a common batch format and a synthetic set made on the fly.

A concept set (Broden, :mod:`advtf.data.broden`, or the synthetic one here) is a
:class:`ConceptSet`: a label table (global label number -> name, primary category) and a
``batches(batch_size, start=0)`` generator of dicts

* ``image``: float32 ``[B, H, W, 3]`` in [0, 1] (the set's own size, not the model's);
* ``pixel_labels``: int32 ``[B, P, sh, sw]`` global label numbers at segmentation resolution,
  one plane per per-pixel category file (Broden's multi-plane PNGs give several), 0 = unlabeled;
* ``image_labels``: int32 ``[B, L]`` image-level label numbers (scene, texture), 0-padded;
  NetDissect counts an image-level label as covering the whole image;
* ``present``: bool ``[B, K]``: the image has some label in category ``categories[k]``
  (IoU counts a unit's mask only over such images of the concept's category).

The synthetic set (``--concepts synthetic``) paints a textured two-colour background and one
solid shape per image, with pixel masks for colours (color), the shape (object), its top/bottom
half and border (part, two planes) and an image-level texture label (none on plain images).
Everything is drawn from per-image parameters fixed by the seed, so the content does not depend
on the batch size.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import numpy as np

COLOURS = {  # name -> RGB in [0, 1]
    "red": (0.90, 0.10, 0.10), "green": (0.10, 0.65, 0.15), "blue": (0.10, 0.20, 0.90),
    "yellow": (0.95, 0.90, 0.10), "cyan": (0.10, 0.85, 0.90), "magenta": (0.85, 0.10, 0.85),
    "orange": (1.00, 0.55, 0.00), "white": (0.97, 0.97, 0.97), "black": (0.05, 0.05, 0.05),
    "grey": (0.50, 0.50, 0.50),
}
SHAPES = ("disc", "square", "triangle", "diamond")
PARTS = ("shape-top", "shape-bottom", "shape-border")
TEXTURES = ("plain", "stripes-horizontal", "stripes-vertical", "stripes-diagonal", "checkers", "dots")
SYNTHETIC_CATEGORIES = ("color", "object", "part", "texture")


@dataclasses.dataclass(frozen=True)
class ConceptSet:
    """Images with concept labels, streamed in batches (module docstring for the batch format).

    Attributes:
        name: ``synthetic`` or ``broden:<dir>``.
        size: number of images.
        image_shape: ``(H, W, 3)`` of ``batch["image"]``.
        seg_shape: ``(sh, sw)`` of the label planes.
        categories: category names; ``present[:, k]`` refers to ``categories[k]``.
        label_numbers: global label numbers (> 0) of the label table.
        label_names: their names.
        label_categories: their primary (dominant) category, one of ``categories``.
        batches: ``batches(batch_size, start=0)`` yields the batch dicts in a fixed order, from image ``start``.
        description: one line for results.json and the summary.
    """

    name: str
    size: int
    image_shape: tuple
    seg_shape: tuple
    categories: tuple
    label_numbers: np.ndarray
    label_names: tuple
    label_categories: tuple
    batches: Callable[[int], Iterator[dict]]
    description: str = ""

    def category_of_number(self) -> np.ndarray:
        """``[max number + 1]`` category index of every label number (-1 for numbers not in the table)."""
        table = np.full(int(self.label_numbers.max(initial=0)) + 1, -1, np.int64)
        index = {c: k for k, c in enumerate(self.categories)}
        table[self.label_numbers] = [index[c] for c in self.label_categories]
        return table


def synthetic_labels() -> tuple[np.ndarray, tuple, tuple]:
    """Label numbers 1.., names and categories of the synthetic set (colours, shapes, parts, textures)."""
    names = [*COLOURS, *SHAPES, *PARTS, *TEXTURES[1:]]
    categories = ["color"] * len(COLOURS) + ["object"] * len(SHAPES) + ["part"] * len(PARTS) + \
        ["texture"] * (len(TEXTURES) - 1)
    return np.arange(1, len(names) + 1), tuple(names), tuple(categories)


def _parameters(n: int, seed: int) -> dict[str, np.ndarray]:
    """Per-image drawing parameters (colours, texture, period, shape, centre, radius, noise seed)."""
    rng = np.random.default_rng([seed, 0xD155EC7])
    k = len(COLOURS)
    a = rng.integers(0, k, n)
    b = (a + rng.integers(1, k, n)) % k  # != a
    # shape colour: neither background colour
    c = rng.integers(0, k, n)
    clash = (c == a) | (c == b)
    while clash.any():
        c[clash] = rng.integers(0, k, int(clash.sum()))
        clash = (c == a) | (c == b)
    return {
        "a": a, "b": b, "c": c, "texture": rng.integers(0, len(TEXTURES), n),
        "period": rng.uniform(0.12, 0.25, n), "shape": rng.integers(0, len(SHAPES), n),
        "cx": rng.uniform(0.3, 0.7, n), "cy": rng.uniform(0.3, 0.7, n), "radius": rng.uniform(0.18, 0.32, n),
        "noise": rng.integers(0, 2**31, n),
    }


def _erode(mask: np.ndarray, width: int) -> np.ndarray:
    """Binary erosion of ``[B, H, W]`` masks by a (2*width+1)-square (outside counts as empty)."""
    padded = np.pad(mask, ((0, 0), (width, width), (width, width)))
    h, w = mask.shape[1:]
    out = np.ones_like(mask)
    for dy in range(2 * width + 1):
        for dx in range(2 * width + 1):
            out &= padded[:, dy:dy + h, dx:dx + w]
    return out


def render_synthetic(params: dict[str, np.ndarray], shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Images and label maps of the given parameters, vectorised over images and pixels."""
    h, w = shape
    side = float(min(h, w))
    n = len(params["a"])
    col = lambda key: params[key].reshape(n, 1, 1)  # noqa: E731
    y, x = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    y, x = y[None], x[None]
    period = np.maximum(3.0, col("period") * side)
    texture = col("texture")
    stripes_h = (y / period) % 1 < 0.5
    stripes_v = (x / period) % 1 < 0.5
    stripes_d = ((x + y) / period) % 1 < 0.5
    checkers = stripes_h ^ stripes_v
    dy, dx = (y / period) % 1 - 0.5, (x / period) % 1 - 0.5
    dots = dy ** 2 + dx ** 2 < 0.3 ** 2
    pattern = np.select([texture == 1, texture == 2, texture == 3, texture == 4, texture == 5],
                        [stripes_h, stripes_v, stripes_d, checkers, dots], False)

    cx, cy, r = col("cx") * w, col("cy") * h, col("radius") * side
    u, v = x - cx, y - cy
    kind = col("shape")
    shape_mask = np.select(
        [kind == 0, kind == 1, kind == 2, kind == 3],
        [u ** 2 + v ** 2 <= r ** 2, (np.abs(u) <= 0.85 * r) & (np.abs(v) <= 0.85 * r),
         (v >= -r) & (v <= 0.5 * r) & (np.abs(u) <= 0.63 * (v + r)), np.abs(u) + np.abs(v) <= r], False)
    border = shape_mask & ~_erode(shape_mask, max(1, int(round(side / 14))))

    colour_index = np.where(shape_mask, col("c"), np.where(pattern, col("b"), col("a")))
    palette = np.asarray(list(COLOURS.values()), np.float32)
    noise = np.stack([np.random.default_rng(s).uniform(-0.03, 0.03, (h, w, 1)) for s in params["noise"]])
    image = np.clip(palette[colour_index] + noise.astype(np.float32), 0.0, 1.0)

    first_shape, first_part, first_texture = 1 + len(COLOURS), 1 + len(COLOURS) + len(SHAPES), \
        1 + len(COLOURS) + len(SHAPES) + len(PARTS)
    colour_labels = colour_index + 1
    object_labels = np.where(shape_mask, first_shape + kind, 0)
    halves = np.where(shape_mask, np.where(v < 0, first_part, first_part + 1), 0)
    borders = np.where(border, first_part + 2, 0)
    pixel_labels = np.stack([colour_labels, object_labels, halves, borders], 1).astype(np.int32)
    tex = params["texture"]
    image_labels = np.where(tex > 0, first_texture + tex - 1, 0).astype(np.int32)[:, None]
    present = np.stack([np.ones(n, bool), shape_mask.any((1, 2)), shape_mask.any((1, 2)), tex > 0], 1)
    return {"image": image.astype(np.float32), "pixel_labels": pixel_labels, "image_labels": image_labels,
            "present": present}


def synthetic_concepts(count: int, shape: tuple[int, int], *, seed: int = 0) -> ConceptSet:
    """The synthetic concept set: ``count`` images of ``shape`` (the model's input size), seeded.

    Segmentations have the image's own resolution. Categories: color (pixel), object (pixel:
    disc, square, triangle, diamond), part (pixel, two planes: top/bottom half of the shape and
    its border), texture (image-level: stripes, checkers, dots; plain images have none).
    """
    params = _parameters(int(count), seed)
    numbers, names, categories = synthetic_labels()

    def batches(batch_size: int, start: int = 0):
        for first in range(start, count, batch_size):
            yield render_synthetic({k: v[first:first + batch_size] for k, v in params.items()}, shape)

    return ConceptSet(
        name="synthetic", size=int(count), image_shape=(*shape, 3), seg_shape=tuple(shape),
        categories=SYNTHETIC_CATEGORIES, label_numbers=numbers, label_names=names, label_categories=categories,
        batches=batches,
        description=f"synthetic concepts: {count} images {shape[0]}x{shape[1]}, seed {seed} "
                    f"({len(numbers)} concepts: colours, shapes, shape parts, textures)")
