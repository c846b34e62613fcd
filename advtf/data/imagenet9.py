"""ImageNet-9: nine ImageNet super-classes (Ilyas et al. 2019; Springer et al. 2021).

Built from tensorflow-datasets' ``imagenet_resized/64x64``: records whose class falls in one of
the nine inclusive ranges of Springer et al. 2021 (App. A.1, taken from Ilyas et al. 2019) are
kept and relabelled 0-8 in that order; the test split is ImageNet's validation split. Images are
decoded only after filtering.

The ranges are standard ImageNet class indices, i.e. positions in the *sorted* list of WordNet ids
(151 = n02085620 Chihuahua, 30 = n01641577 bullfrog). ``imagenet_resized`` numbers its labels in
another order (its label file starts with n02119789, kit fox), so the ranges are never applied to
its labels directly: each tensorflow-datasets label is mapped to its WordNet id (the builder's
``label`` feature names, read from the label file tensorflow-datasets ships), the WordNet id to its
position in the sorted list, and that position through the ranges (``relabel_table``).

The filtered split sizes are not known in advance, so every load makes one counting pass over
the labels only (image bytes are not decoded). That is quick for the 50k validation records and
I/O-bound for the 1.28M train records (about a minute from a local SSD); it keeps subsets and
validation carving exact and seeded, like every other dataset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from advtf.data.images import check_size, resize_split
from advtf.data.registry import RawSplits, register_dataset
from advtf.data.tfds_sets import IMAGENET_MEAN, IMAGENET_STD, tfds_builder, tfds_locate, tfds_split

TFDS_NAME = "imagenet_resized/64x64"
SUPERCLASSES = (  # name, first and last standard ImageNet class index (inclusive)
    ("dog", 151, 268),
    ("cat", 281, 285),
    ("frog", 30, 32),
    ("turtle", 33, 37),
    ("bird", 80, 100),
    ("primate", 365, 382),
    ("fish", 389, 397),
    ("crab", 118, 121),
    ("insect", 300, 319),
)


def relabel_table(wnids: Sequence[str]) -> np.ndarray:
    """Dataset label -> ImageNet-9 label (-1 = left out), given the dataset's label WordNet ids.

    ``wnids[i]`` is the WordNet id of dataset label ``i``; its standard ImageNet class index is
    its position in the sorted list, which is what ``SUPERCLASSES`` ranges over.
    """
    if len(wnids) != 1000 or len(set(wnids)) != 1000:
        raise ValueError(f"expected the 1000 distinct ImageNet WordNet ids, got {len(set(wnids))}")
    by_index = np.full(1000, -1, dtype=np.int32)
    for label, (_, first, last) in enumerate(SUPERCLASSES):
        by_index[first : last + 1] = label
    standard_index = {wnid: i for i, wnid in enumerate(sorted(wnids))}
    return np.array([by_index[standard_index[wnid]] for wnid in wnids], dtype=np.int32)


def tfds_wnids(builder=None) -> list[str]:
    """WordNet ids of ``imagenet_resized`` labels in tensorflow-datasets' label order."""
    if builder is None:
        builder = tfds.builder(TFDS_NAME)
    return list(builder.info.features["label"].names)


def _filtered(builder, split: str) -> tuple[tf.data.Dataset, int]:
    """Encoded records of the nine super-classes, relabelled, and how many there are."""
    table = tf.constant(relabel_table(tfds_wnids(builder)))
    ds, _ = tfds_split(builder, split, decoders={"image": tfds.decode.SkipDecoding()})
    ds = ds.map(lambda ex: (ex["image"], tf.gather(table, ex["label"])))
    ds = ds.filter(lambda image, label: label >= 0)
    count = ds.map(lambda image, label: label).batch(4096).reduce(
        tf.constant(0, tf.int64), lambda n, labels: n + tf.size(labels, out_type=tf.int64)
    )
    return ds, int(count)


@register_dataset(
    "imagenet9",
    description="ImageNet-9: 9 ImageNet super-classes at 64x64 (tensorflow-datasets imagenet_resized)",
    natural_images=True,
    locate=lambda data_dir: tfds_locate(TFDS_NAME, data_dir),
)
def load_imagenet9(*, data_dir: str | None, image_size: int | None, download: bool) -> RawSplits:
    """ImageNet-9 at 64x64 (or resized to ``image_size``)."""
    check_size(image_size)
    builder = tfds_builder("imagenet9", TFDS_NAME, data_dir, download)
    image_feature = builder.info.features["image"]
    splits, counts, shape = {}, {}, (64, 64, 3)
    for split, tfds_split_name in (("train", "train"), ("test", "validation")):
        ds, counts[split] = _filtered(builder, tfds_split_name)
        ds = ds.map(
            lambda image, label: (
                tf.cast(image_feature.decode_example(image), tf.float32) / 255.0,
                label,
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        ds = ds.apply(tf.data.experimental.assert_cardinality(counts[split]))
        splits[split], shape = resize_split(ds, (64, 64, 3), image_size)
    return RawSplits(
        splits=splits,
        counts=counts,
        class_names=tuple(name for name, _, _ in SUPERCLASSES),
        image_shape=shape,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        source=f"tfds:{builder.info.full_name}",
    )
