"""Feature maps and unit masks shared by every dissection pass (Xu et al. 2019, Sec. 5; Bau et al. 2017).

Concept images are resized (bilinear, antialiased) to the model's input size and turned into
luminance for a greyscale model; a layer is a named endpoint with a ``[B, h, w, U]`` map, and a
unit's mask ``M_k(x) = S_k(x) > T_k`` is its map upsampled bilinearly to the segmentation size
(``>`` as NetDissect, so a unit that is zero on 99.5% of positions does not fire everywhere).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from advtf.errors import UserError
from advtf.models import endpoints, feature_extractor

RESNET_LAYERS = ("layer1", "layer2", "layer3", "layer4")


def prepare_images(images, input_shape) -> tf.Tensor:
    """Concept images ``[B, H, W, 3]`` -> the model's input size (bilinear, antialiased) and channels
    (luminance for a greyscale model), in [0, 1]."""
    height, width, channels = input_shape
    x = tf.convert_to_tensor(images, tf.float32)
    if tuple(x.shape[1:3]) != (height, width):
        x = tf.clip_by_value(tf.image.resize(x, (height, width), antialias=True), 0.0, 1.0)
    if channels == 1:
        x = tf.image.rgb_to_grayscale(x)
    elif channels != 3:
        raise UserError(f"the model takes {channels}-channel images; dissection needs 1 (greyscale) or 3 (RGB)")
    return x


def default_layers(model: keras.Model) -> list[str]:
    """ResNet-18's ``layer1..layer4`` when present, else every spatial module endpoint ``m0..``."""
    available = endpoints(model)
    if all(n in available for n in RESNET_LAYERS):
        return list(RESNET_LAYERS)
    return [n for n, t in available.items() if n[0] == "m" and n[1:].isdigit() and len(t.shape) == 4]


def dissection_extractor(model: keras.Model, layers) -> keras.Model:
    """``{layer: [B, h, w, U]}`` of the named endpoints.

    Raises:
        UserError: an unknown endpoint (listing the available ones) or a non-spatial one.
    """
    extractor = feature_extractor(model, list(layers))
    flat = [n for n, t in endpoints(model).items() if len(t.shape) != 4]
    spatial = [n for n, t in endpoints(model).items() if len(t.shape) == 4]
    for name, tensor in extractor.output.items():
        if len(tensor.shape) != 4:
            raise UserError(f"endpoint {name!r} has shape {tuple(tensor.shape)[1:]}, not a spatial feature map; "
                            f"dissection needs [h, w, units] endpoints: {', '.join(spatial)}"
                            + (f" (not {', '.join(flat)})" if flat else ""))
    return extractor


@tf.function(reduce_retracing=True)
def layer_maps(extractor, x):
    """``{layer: [B, h, w, U]}`` of model inputs ``x`` (inference mode)."""
    return extractor(x, training=False)


@tf.function(reduce_retracing=True)
def unit_masks(maps, thresholds, seg_shape):
    """``M_k``: maps ``[B, h, w, U]`` upsampled bilinearly to ``seg_shape``, ``> T_k``, as float32."""
    upsampled = tf.image.resize(maps, seg_shape, method="bilinear")
    return tf.cast(upsampled > tf.cast(thresholds, tf.float32), tf.float32)


def unit_chunks(map_shape, seg_shape, limit: int = 1 << 25) -> list[slice]:
    """Slices of units whose upsampled masks (``B x sh x sw x units`` floats) stay within ``limit`` values."""
    batch, units = int(map_shape[0]), int(map_shape[-1])
    size = max(1, limit // max(1, batch * int(seg_shape[0]) * int(seg_shape[1])))
    return [slice(start, min(start + size, units)) for start in range(0, units, size)]


def segmentation_masks(extractor, layer: str, thresholds, images, units, seg_shape) -> tuple[np.ndarray, np.ndarray]:
    """Figure 8's panels: model inputs ``images`` resized to ``seg_shape`` (for display, in [0, 1]) and the
    masks ``[B, sh, sw, len(units)]`` of the chosen ``units`` of ``layer``."""
    x = tf.convert_to_tensor(images, tf.float32)
    chosen = tf.constant(np.asarray(units), tf.int32)
    masks = unit_masks(tf.gather(layer_maps(extractor, x)[layer], chosen, axis=3),
                       tf.gather(tf.constant(thresholds, tf.float32), chosen), tf.constant(seg_shape, tf.int32))
    return tf.image.resize(x, seg_shape).numpy().clip(0, 1), masks.numpy()


def concept_batches(concepts, batch_size: int, progress=None, desc: str = "", limit: int | None = None,
                    start: int = 0):
    """Concept batches from image ``start`` up to ``limit`` images, with a progress bar over all of them."""
    total = min(concepts.size, limit or concepts.size)
    bar = progress(total=total, desc=desc, unit="img") if progress else None
    seen = start
    if bar is not None and start:
        bar.update(min(start, total))
    try:
        for batch in concepts.batches(batch_size, start):
            if seen >= total:
                break
            batch = {k: v[:total - seen] for k, v in batch.items()}
            seen += len(batch["image"])
            if bar is not None:
                bar.update(len(batch["image"]))
            yield batch
    finally:
        if bar is not None:
            bar.close()
