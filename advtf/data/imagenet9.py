"""ImageNet-9: nine ImageNet super-classes (Ilyas et al. 2019; Springer et al. 2021).

Built from tensorflow-datasets' ``imagenet_resized/64x64``: records whose ImageNet label falls
in one of the nine inclusive WordNet-id ranges below are kept and relabelled 0-8 in that order;
the test split is ImageNet's validation split. Images are decoded only after filtering.

The filtered split sizes are not known in advance, so every load makes one counting pass over
the labels only (image bytes are not decoded). That is quick for the 50k validation records and
I/O-bound for the 1.28M train records (about a minute from a local SSD); it keeps subsets and
validation carving exact and seeded, like every other dataset.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from advtf.data.images import check_size, resize_split
from advtf.data.registry import RawSplits, register_dataset
from advtf.data.tfds_sets import IMAGENET_MEAN, IMAGENET_STD, tfds_builder, tfds_locate, tfds_split

TFDS_NAME = "imagenet_resized/64x64"
SUPERCLASSES = (  # name, first and last ImageNet class index (inclusive)
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


def relabel_table() -> np.ndarray:
    """ImageNet class index (0-999) -> ImageNet-9 label, or -1 for the classes left out."""
    table = np.full(1000, -1, dtype=np.int32)
    for label, (_, first, last) in enumerate(SUPERCLASSES):
        table[first : last + 1] = label
    return table


def _filtered(builder, split: str) -> tuple[tf.data.Dataset, int]:
    """Encoded records of the nine super-classes, relabelled, and how many there are."""
    table = tf.constant(relabel_table())
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
