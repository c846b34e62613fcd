"""Class activation maps of natural and adversarial images and the interpretability score
(Xu et al. 2019, Section 4, Eq. 5-6, Table 2, Figures 3 and A1).

Maps are computed on a spatial layer (default: the map the model's global average pooling
reads) and upsampled bilinearly to the input resolution:

* ``cam`` (Zhou et al. 2016): ``F(x, c) = sum_k w_kc A_k(x)`` with ``w`` the Dense head after
  the global average pooling (the model must end in GAP -> Dense);
* ``gradcam``, ``gradcam++``, ``scorecam``: tf-keras-vis's implementations on the same layer.

All maps keep the positive part (tf-keras-vis's default for Grad-CAM; CAM gets the same ReLU),
so with a GAP head Grad-CAM equals CAM divided by the number of positions.

The interpretability score of a perturbation ``delta`` with respect to ``(x, c)`` is
``IS = ||B(x, c) o delta||_2 / ||delta||_2`` where ``B`` marks the pixels whose map value is at
least ``nu``, the map's own quantile (default 70%); a pixel's perturbation counts over all channels.

Eq. 5 needs ``nu > 0``. Rectified maps are often zero on most pixels, and then ``nu = 0`` and
``F >= nu`` would select every pixel (IS = 1 for a map with no region at all). So the rule is:

* ``nu > 0``: ``B = {F >= nu}`` (pixels tied at ``nu`` are all in, so B may exceed the top 30%);
* ``nu <= 0``: ``B = {F > 0}``, only the positive pixels (fewer than the top 30%);
* a map with no positive pixel (all zero) or a constant map has no region: ``B`` is empty, IS is
  undefined (NaN, left out of the means and counted), and an S2 refined attack skips the pair.
"""

from __future__ import annotations

import importlib

import keras
import numpy as np
import tensorflow as tf

from advtf.errors import UserError
from advtf.models.layers import ENDPOINT_PREFIX
from advtf.registry import Registry

# name -> the tf-keras-vis class computing it ("module:Class"); None: advtf's own CAM from the GAP -> Dense head.
CAM_METHODS: Registry[str | None] = Registry("CAM method", "choose with --method")
CAM_METHODS.register("cam", None)
CAM_METHODS.register("gradcam", "tf_keras_vis.gradcam:Gradcam")
CAM_METHODS.register("gradcam++", "tf_keras_vis.gradcam_plus_plus:GradcamPlusPlus")
CAM_METHODS.register("scorecam", "tf_keras_vis.scorecam:Scorecam")
METHODS = tuple(CAM_METHODS)
DEFAULT_QUANTILE = 0.7


def _producer(tensor) -> keras.layers.Layer:
    return tensor._keras_history[0]


def _gap_head(model: keras.Model):
    """``(GAP layer, Dense logits layer)`` when the model ends in GAP -> [markers, Dropout] -> Dense, else None."""
    layer = _producer(model.outputs[0])
    while isinstance(layer, keras.layers.Identity):
        layer = _producer(layer.input)
    if not isinstance(layer, keras.layers.Dense):
        return None
    dense = layer
    node = _producer(dense.input)
    while isinstance(node, (keras.layers.Identity, keras.layers.Dropout)):
        node = _producer(node.input)
    if isinstance(node, keras.layers.GlobalAveragePooling2D):
        return node, dense
    return None


def spatial_layers(model: keras.Model) -> list[str]:
    """Names of the layers whose output is a 4-D map (candidates for ``--layer``)."""
    return [layer.name for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer) and len(layer.output.shape) == 4]


def resolve_map_layer(model: keras.Model, layer: str | None = None) -> str:
    """The layer whose output the maps are computed on: ``layer`` (a layer or advtf endpoint name)
    or, by default, the input of the global average pooling before the head.

    Raises:
        UserError: an unknown name, a layer without a spatial (H, W, C) output, or no default.
    """
    if layer is None:
        head = _gap_head(model)
        if head is None:
            raise UserError(f"model {model.name!r} has no global average pooling before its logits; "
                            "name the convolutional layer with --layer")
        return _producer(head[0].input).name
    names = {item.name: item for item in model.layers}
    found = names.get(layer) or names.get(ENDPOINT_PREFIX + layer)
    if found is None:
        raise UserError(f"no layer or endpoint {layer!r} in model {model.name!r}; spatial layers are: "
                        f"{', '.join(spatial_layers(model)[-8:])} (last 8)")
    if len(found.output.shape) != 4:
        raise UserError(f"layer {layer!r} of {model.name!r} is not convolutional (output shape "
                        f"{tuple(found.output.shape)}); CAM needs a spatial map, e.g. one of: "
                        f"{', '.join(spatial_layers(model)[-4:])}")
    return found.name


class MapMaker:
    """Class activation maps of one model on one layer, for batches of images and classes."""

    def __init__(self, model: keras.Model, method: str = "cam", layer: str | None = None):
        implementation = CAM_METHODS.get(method)  # UserError with the closest names
        self.model, self.method = model, method
        self.layer = resolve_map_layer(model, layer)
        output = model.get_layer(self.layer).output
        self._maps_and_logits = keras.Model(model.inputs, [output, model.outputs[0]])
        if method == "cam":
            head = _gap_head(model)
            if head is None or _producer(head[0].input).name != self.layer:
                raise UserError("--method cam needs the map read by the global average pooling before a Dense "
                                "head (the default --layer); use --method gradcam for other layers")
            self._weights = head[1].kernel  # [C, classes]
        else:
            module, _, name = implementation.partition(":")
            self._vis = getattr(importlib.import_module(module), name)(model, clone=False)

    def __call__(self, x, classes) -> np.ndarray:
        """Maps ``F(x_b, classes_b)`` at input resolution, ``[B, H, W]`` float32 (not normalised)."""
        x = tf.convert_to_tensor(x, tf.float32)
        classes = np.asarray(classes, np.int64)
        if self.method == "cam":
            small = _cam(self._maps_and_logits, self._weights, x, tf.constant(classes))
        else:
            from tf_keras_vis.utils.scores import CategoricalScore

            kwargs = dict(penultimate_layer=self.layer, seek_penultimate_conv_layer=False, expand_cam=False,
                          normalize_cam=False)
            if self.method == "scorecam":
                kwargs["batch_size"] = 64
            small = _quietly(self._vis, CategoricalScore(list(classes)), x, **kwargs)
            small = tf.reshape(tf.convert_to_tensor(np.asarray(small), tf.float32), [len(classes), *np.shape(small)[-2:]])
        return upsample(small, x.shape[1:3])


def _quietly(fn, *args, **kwargs):
    """Calls tf-keras-vis without Keras's per-call progress bars and input-name warnings (Score-CAM)."""
    import warnings

    interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return fn(*args, **kwargs)
    finally:
        if interactive:
            keras.config.enable_interactive_logging()


@tf.function(reduce_retracing=True)
def _cam(maps_and_logits, weights, x, classes):
    features, _ = maps_and_logits(x, training=False)
    w = tf.transpose(tf.gather(tf.transpose(weights), classes))  # [C, B]
    cam = tf.einsum("bhwc,cb->bhw", features, tf.cast(w, features.dtype))
    return tf.nn.relu(cam)


def upsample(maps, size) -> np.ndarray:
    """``[B, h, w]`` maps resized bilinearly to ``size`` (the input resolution)."""
    maps = tf.convert_to_tensor(maps, tf.float32)
    return tf.image.resize(maps[..., None], tuple(int(s) for s in size), method="bilinear")[..., 0].numpy()


def discriminative_region(maps: np.ndarray, quantile: float = DEFAULT_QUANTILE) -> np.ndarray:
    """``B(x, c)`` of Eq. 5, ``[B, H, W]`` bool: pixels at or above the map's own ``quantile`` ``nu``.

    Only positive pixels qualify (Eq. 5 has ``nu > 0``): when ``nu <= 0`` B is ``{F > 0}``. A map
    with no positive pixel or a constant map gets an empty B (see the module docstring).
    """
    maps = np.asarray(maps)
    flat = maps.reshape(len(maps), -1)
    nu = np.quantile(flat, quantile, axis=1)[:, None, None]
    region = np.where(nu > 0, maps >= nu, maps > 0)
    constant = (flat.max(1) <= flat.min(1))[:, None, None]
    return region & ~constant


def interpretability_score(maps: np.ndarray, delta: np.ndarray, quantile: float = DEFAULT_QUANTILE) -> np.ndarray:
    """IS(delta) of Eq. 6 per example.

    NaN where ``delta`` is zero or the map has no region (:func:`discriminative_region` is empty:
    all zero, or constant), rather than a meaningless 0 or 1.
    """
    region = discriminative_region(maps, quantile)
    inside = np.sqrt(np.sum(np.square(delta * region[..., None]), axis=(1, 2, 3)))
    total = np.sqrt(np.sum(np.square(delta), axis=(1, 2, 3)))
    defined = (total > 0) & region.reshape(len(region), -1).any(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined, inside / np.where(total > 0, total, 1.0), np.nan)


def four_maps(maker: MapMaker, natural, adversarial, label, target) -> dict[str, np.ndarray]:
    """The four maps of Section 4, ``F(x0,t0), F(x',t0), F(x0,t), F(x',t)``, unnormalised."""
    return {"x0_t0": maker(natural, label), "xadv_t0": maker(adversarial, label),
            "x0_t": maker(natural, target), "xadv_t": maker(adversarial, target)}


def shared_normalisation(maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The maps of each example divided by their joint maximum, so that they are comparable (Figure 3)."""
    peak = np.max(np.stack([m.reshape(len(m), -1).max(1) for m in maps.values()]), axis=0)
    peak = np.where(peak > 0, peak, 1.0)
    return {k: m / peak[:, None, None] for k, m in maps.items()}
