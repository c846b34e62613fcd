"""keras.applications networks wrapped to the advtf contract ([0, 1] pixels in, logits out).

Springer et al. 2021 ( Sec. 5 and Appendix) attack these standard "victim"
classifiers, initialised from ImageNet weights, with transfer attacks: DenseNet121,
InceptionV3, MobileNetV2, VGG16, ResNet50V2, Xception.

Graph: `image` ([0, 1]) -> `to_rgb` (grayscale repeated to 3 channels) -> `resize` (bilinear,
only up to the network's minimum size: 75 px for InceptionV3 / Xception, 32 px otherwise)
-> `preprocess` (the application's own `preprocess_input` as layers: 'tf' mode 2x - 1,
'torch' mode ImageNet mean / std, 'caffe' mode RGB->BGR then 255x - BGR mean) ->
the application (include_top=False, pooling="avg", its layers inlined in our graph under
their usual names) -> `ep_representation` -> Dense `logits`.

`resnet50v2` is the same ResNet50V2 body as an advtf *source* model: the advtf
normalisation `(x - mean) / std` replaces the application preprocessing (with the default
mean = std = 0.5 this is exactly its 'tf' mode, so ImageNet weights still fit).

Width: only MobileNetV2 has one (its `alpha`); the others ignore `width` with a warning.
Seed: keras.applications takes no initializers, so a seed is applied with
`keras.utils.set_random_seed` (this reseeds Python, NumPy and TensorFlow globally).

Modules (no natural stage names across these families): the graph cuts (single live
tensor) after preprocessing are grouped by octave of spatial resolution,
round(log2(input area / area) / 2) (area: the smallest seen so far along the graph), and
module k ends at the last cut (padding layers excluded) of the k-th octave present, so each
down-sampling layer opens a module; a module without weights joins the next one.
Preprocessing joins m0; the head (GAP + Dense) is the last module. Endpoint sizes
therefore depend on the input size.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import keras
from keras import layers

from advtf.errors import UserError
from advtf.models.endpoints import graph_cuts
from advtf.models.layers import ENDPOINT_PREFIX, Builder, ReverseChannels
from advtf.models.registry import BuildArgs, ModelSpec, register_model

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class Application:
    """How to wrap one keras.applications constructor."""

    constructor: str
    mode: str
    min_size: int
    paper: str
    has_alpha: bool = False


APPLICATIONS = {
    "densenet121": Application("DenseNet121", "torch", 32, "Huang et al. 2017"),
    "inception_v3": Application("InceptionV3", "tf", 75, "Szegedy et al. 2016"),
    "mobilenet_v2": Application("MobileNetV2", "tf", 32, "Sandler et al. 2018", True),
    "vgg16": Application("VGG16", "caffe", 32, "Simonyan & Zisserman 2015"),
    "resnet50_v2": Application("ResNet50V2", "tf", 32, "He et al. 2016 (Identity Mappings)"),
    "xception": Application("Xception", "tf", 75, "Chollet 2017"),
}


def _preprocess(x, mode: str):
    """The application's `preprocess_input`, for inputs in [0, 1], as layers."""
    if mode == "tf":
        return layers.Rescaling(2.0, offset=-1.0, name="preprocess")(x)
    if mode == "torch":
        variance = [s * s for s in _IMAGENET_STD]
        return layers.Normalization(
            mean=list(_IMAGENET_MEAN), variance=variance, name="preprocess"
        )(x)
    x = ReverseChannels(name="to_bgr")(x)
    mean = [m / 255.0 for m in _CAFFE_BGR_MEAN]
    return layers.Normalization(mean=mean, variance=[1 / 255.0**2] * 3, name="preprocess")(x)


def _fit_input(x, channels: int, min_size: int):
    """Grayscale -> RGB, then resize up to `min_size` where the image is smaller."""
    if channels == 1:
        x = layers.Concatenate(name="to_rgb")([x, x, x])
    elif channels != 3:
        raise UserError(
            f"keras.applications models need 1- or 3-channel images, got {channels} channels; "
            "convert the dataset to RGB or grayscale"
        )
    height, width = x.shape[1], x.shape[2]
    size = (max(height, min_size), max(width, min_size))
    if size != (height, width):
        x = layers.Resizing(*size, interpolation="bilinear", name="resize")(x)
    return x


def _body(args: BuildArgs, spec: ModelSpec, app: Application, x) -> keras.KerasTensor:
    kwargs = dict(
        include_top=False,
        weights=args.weights,
        input_tensor=x,
        input_shape=tuple(x.shape[1:]),
        pooling="avg",
    )
    if app.has_alpha:
        kwargs["alpha"] = args.width
    try:
        return getattr(keras.applications, app.constructor)(**kwargs).output
    except ValueError as err:
        raise UserError(f"cannot build {spec.name!r}: {err}") from err
    except Exception as err:  # keras.utils.get_file raises a bare Exception
        if args.weights and "URL fetch failure" in str(err):
            raise UserError(
                f"cannot download ImageNet weights for {spec.name!r} ({err}); "
                "connect to the internet or pass weights=None"
            ) from err
        raise


def build_application(
    args: BuildArgs, spec: ModelSpec, app: Application, *, advtf_norm: bool
) -> keras.Model:
    """keras.applications body wrapped as described in the module docstring."""
    if not app.has_alpha and args.width != 1.0:
        warnings.warn(
            f"{spec.name}: width={args.width} ignored (no width multiplier)", stacklevel=3
        )
    if not advtf_norm and args.mean_std_given:
        warnings.warn(
            f"{spec.name}: mean/std ignored (uses the application's preprocessing)", stacklevel=3
        )
    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)
    image = keras.Input(shape=args.input_shape, name="image")
    x = image
    if advtf_norm:
        variance = [s * s for s in args.std]
        x = layers.Normalization(mean=list(args.mean), variance=variance, name="normalize")(x)
    x = _fit_input(x, args.input_shape[2], app.min_size)
    if not advtf_norm:
        x = _preprocess(x, app.mode)
    features = Builder.mark(_body(args, spec, app, x), "representation")
    logits = layers.Dense(args.num_classes, name="logits")(features)
    draft = keras.Model(image, logits, name=spec.name)
    return _with_module_markers(draft, start=x)


def _module_ends(draft: keras.Model, start) -> dict[str, str]:
    """{layer name: module name} for the last graph cut of each resolution octave.

    Padding layers are never module ends, and the resolution of a cut is the smallest
    seen so far along the graph (a padded map belongs to the octave it was padded from).
    """
    order = {id(layer): i for i, layer in enumerate(draft.layers)}
    first = order[id(start._keras_history[0])]
    area = area0 = start.shape[1] * start.shape[2]
    ends: dict[int, int] = {}
    for layer in graph_cuts(draft):
        shape = layer.output.shape
        if order[id(layer)] <= first or len(shape) != 4:
            continue
        if isinstance(layer, layers.ZeroPadding2D):
            continue
        area = min(area, shape[1] * shape[2])
        ends[round(math.log2(area0 / area) / 2)] = order[id(layer)]
    positions = [ends[level] for level in sorted(ends)] + [order[id(draft.get_layer("logits"))]]
    names, previous = {}, -1
    for position in positions:  # a module without weights (a lone pool) joins the next one
        if any(layer.weights for layer in draft.layers[previous + 1 : position + 1]):
            names[draft.layers[position].name] = f"m{len(names)}"
            previous = position
    return names


def _with_module_markers(draft: keras.Model, start) -> keras.Model:
    """Clone of `draft` (same weights) with `ep_m<k>` markers inserted after module ends."""
    marks = _module_ends(draft, start)

    def call(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        if layer.name in marks:
            out = layers.Identity(name=ENDPOINT_PREFIX + marks[layer.name])(out)
        return out

    model = keras.models.clone_model(
        draft,
        clone_function=lambda layer: layer.__class__.from_config(layer.get_config()),
        call_function=call,
    )
    clones = {layer.name: layer for layer in model.layers}
    for layer in draft.layers:
        if layer.weights:
            clones[layer.name].set_weights(layer.get_weights())
    return model


def _register(name: str, app: Application) -> None:
    @register_model(
        name,
        family="victim",
        description=f"keras.applications.{app.constructor} (ImageNet weights optional), "
        "own preprocessing, linear head",
        default_input_shape=(224, 224, 3),
        min_input_size=app.min_size,
        paper=app.paper + "; Springer et al. 2021 (victims)",
        resizes_input=True,
    )
    def factory(args: BuildArgs, spec: ModelSpec) -> keras.Model:
        return build_application(args, spec, APPLICATIONS[spec.name], advtf_norm=False)


for _name, _app in APPLICATIONS.items():
    _register(_name, _app)


@register_model(
    "resnet50v2",
    family="resnet_v2",
    description="keras.applications.ResNet50V2 body with advtf (x - mean) / std normalisation",
    default_input_shape=(32, 32, 3),
    min_input_size=32,
    paper="He et al. 2016 (Identity Mappings); Springer et al. 2021",
    resizes_input=True,
)
def resnet50v2(args: BuildArgs, spec: ModelSpec) -> keras.Model:
    """ResNet50V2 as a trainable source model (see module docstring)."""
    return build_application(args, spec, APPLICATIONS["resnet50_v2"], advtf_norm=True)
