"""scikit-learn's bundled 8x8 handwritten digits: a tiny, zero-download dataset for tests."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits as sklearn_digits
from sklearn.model_selection import train_test_split

from advtf.data.images import check_size, resize_square
from advtf.data.registry import RawSplits, register_dataset


@register_dataset(
    "digits",
    description="scikit-learn digits: 1797 8x8 grayscale digits upsampled to 16x16 (bundled, tiny)",
    natural_images=False,
)
def load_digits(*, data_dir: str | None, image_size: int | None, download: bool) -> RawSplits:
    """Digits scaled to [0, 1], upsampled to ``image_size`` (default 16), split 80/20.

    The split is stratified with a fixed seed (0), so it never depends on ``--seed``.
    """
    del data_dir, download  # bundled with scikit-learn
    check_size(image_size)
    size = image_size or 16
    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)[..., None]
    images = resize_square(tf.constant(images), size).numpy()
    labels = bunch.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.2, stratify=labels, random_state=0
    )
    return RawSplits(
        splits={
            "train": tf.data.Dataset.from_tensor_slices((x_train, y_train)),
            "test": tf.data.Dataset.from_tensor_slices((x_test, y_test)),
        },
        counts={"train": len(y_train), "test": len(y_test)},
        class_names=tuple(str(d) for d in range(10)),
        image_shape=(size, size, 1),
        mean=(float(x_train.mean()),),
        std=(float(x_train.std()),),
        source="sklearn.datasets.load_digits",
    )
