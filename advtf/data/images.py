"""Small per-element image transforms shared by the loaders (dtype conversion, resizing)."""

from __future__ import annotations

import tensorflow as tf

from advtf.errors import UserError


def to_float(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """uint8 image -> float32 in [0, 1]; any integer label -> int32."""
    return tf.cast(image, tf.float32) / 255.0, tf.cast(label, tf.int32)


def check_size(image_size: int | None) -> None:
    """Raises UserError unless ``image_size`` is None or a positive integer."""
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise UserError(f"image size must be a positive integer, got {image_size!r}; fix --image-size")


def resize_square(image: tf.Tensor, size: int) -> tf.Tensor:
    """Resizes to ``size x size`` (bilinear, antialiased) and clips back into [0, 1]."""
    return tf.clip_by_value(tf.image.resize(image, (size, size), antialias=True), 0.0, 1.0)


def resize_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    """Scales the shorter side to ``size`` and crops the centre square, keeping aspect ratio."""
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    scaled = tf.cast(tf.math.ceil(hw * (size / tf.reduce_min(hw))), tf.int32)
    resized = tf.image.resize(image, scaled, antialias=True)
    cropped = tf.image.resize_with_crop_or_pad(resized, size, size)
    cropped.set_shape((size, size, image.shape[-1]))
    return tf.clip_by_value(cropped, 0.0, 1.0)


def resize_split(
    ds: tf.data.Dataset, shape: tuple[int, int, int], image_size: int | None
) -> tuple[tf.data.Dataset, tuple[int, int, int]]:
    """Resizes a split of fixed-shape float images to ``image_size`` when it differs.

    Returns:
        The (possibly mapped) dataset and the resulting image shape.
    """
    check_size(image_size)
    if image_size is None or (image_size, image_size) == tuple(shape[:2]):
        return ds, shape
    ds = ds.map(lambda x, y: (resize_square(x, image_size), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds, (image_size, image_size, shape[2])
