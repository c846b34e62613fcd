"""Mixed precision: a model's computation in float16/bfloat16, its variables, input and logits in float32.

Keras mixed precision keeps every variable in float32 and computes layers in the policy's low
precision. advtf keeps the input normalisation and the logits head (the last layer with weights
and the weightless markers after it) in float32, as Keras recommends for the output, so an attack
sees float32 images in and float32 logits out: its loss, input gradient and projection stay float32.

float16 has 5 exponent bits: a confident example's input gradient underflows to exactly 0 in the
float16 layers, which would make PGD stand still (gradient masking by precision).
:func:`attack_view` scales each example's gradient to a safe size where it enters the float16
layers and back where it leaves them (dynamic per-example loss scaling for input gradients).
bfloat16 has float32's exponent range and needs none.
"""

from __future__ import annotations

import copy
import weakref

import keras
import tensorflow as tf

from advtf.errors import UserError

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
FLOAT32_LAYERS = ("normalize",)  # input-side layers always computed in float32


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a UserError naming them."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    return precision


def model_precision(model) -> str:
    """The precision a model computes in: the policy of its low-precision layers, else float32."""
    for layer in _flat_layers(model):
        name = getattr(layer, "dtype_policy", None) and layer.dtype_policy.name
        if name in PRECISIONS[1:]:
            return name
    return "float32"


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """The functional ``model`` rebuilt under ``precision``'s dtype policy, with the same weights.

    Every layer takes the policy except the input normalisation and the logits head, which stay
    float32; the variables are float32 in every precision, so the weights are copied unchanged.
    """
    check_precision(precision)
    if model_precision(model) == precision:
        return model
    head = _head_layers(model)
    config = copy.deepcopy(model.get_config())
    _set_policies(config, precision, keep_float32=head | set(FLOAT32_LAYERS))
    rebuilt = model.__class__.from_config(config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _head_layers(model: keras.Model) -> set[str]:
    """Names of the layers from the last one with weights to the output (the logits head)."""
    names = set()
    for output in model.outputs:
        layer = output._keras_history[0]
        while True:
            names.add(layer.name)
            if layer.weights or not layer._inbound_nodes:
                break
            parents = layer._inbound_nodes[0].input_tensors
            if len(parents) != 1:
                break
            layer = parents[0]._keras_history[0]
    return names


def _set_policies(config, precision: str, *, keep_float32: set[str]) -> None:
    """Sets the ``dtype`` of every layer config in ``config`` (nested models too), in place."""
    if isinstance(config, list):
        for item in config:
            _set_policies(item, precision, keep_float32=keep_float32)
        return
    if not isinstance(config, dict):
        return
    inner = config.get("config")
    if isinstance(inner, dict) and "class_name" in config and config["class_name"] != "InputLayer":
        if "dtype" in inner and config["class_name"] not in ("Functional", "Model", "Sequential"):
            inner["dtype"] = "float32" if inner.get("name") in keep_float32 else precision
    for value in config.values():
        _set_policies(value, precision, keep_float32=keep_float32)


def _flat_layers(model):
    for layer in getattr(model, "layers", []):
        if hasattr(layer, "layers"):
            yield from _flat_layers(layer)
        else:
            yield layer


class _ScaledInputGradient:
    """``model`` with per-example scaling of the input gradient through its float16 layers.

    Forward: the model's float32 logits. Backward: each example's upstream gradient is multiplied
    by a power of two bringing its largest entry to 1 before the float16 layers see it, and the
    input gradient divided by the same power afterwards (in float32): the value is the model's
    input gradient, without the float16 underflow (or overflow) of very small or large losses.
    Attacks use it as they use a model (``view(x, training=False)``); they differentiate images only,
    so the weights get no gradient through it (training differentiates the model itself).
    """

    def __init__(self, model):
        self._model = weakref.ref(model)  # the memo in attack_view must not keep the model alive

    @property
    def perturbation_mask(self):
        return getattr(self._model(), "perturbation_mask", None)

    def __call__(self, x, training=False):
        model = self._model()

        @tf.custom_gradient
        def forward(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                logits = tf.cast(model(x, training=training), tf.float32)

            def backward(upstream, variables=None):
                largest = tf.reduce_max(tf.abs(upstream), axis=list(range(1, len(upstream.shape))), keepdims=True)
                exponent = tf.where(largest > 0, tf.round(tf.math.log(largest) / tf.math.log(2.0)), 0.0)
                scale = tf.pow(2.0, -exponent)
                grad = tape.gradient(logits, x, output_gradients=upstream * scale)
                shape = [-1] + [1] * (len(x.shape) - 1)
                grad = grad / tf.reshape(scale, shape)
                return grad, [tf.zeros_like(v) for v in (variables or [])]

            return logits, backward

        return forward(tf.convert_to_tensor(x, tf.float32))


_VIEWS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def attack_view(model):
    """What an attack should call for ``model``: the model itself, or for a float16 model one view
    with scaled input gradients (see :class:`_ScaledInputGradient`), the same object on every call
    so compiled attacks trace it once."""
    if not isinstance(model, keras.Model) or model_precision(model) != "mixed_float16":
        return model
    view = _VIEWS.get(model)
    if view is None:
        view = _VIEWS[model] = _ScaledInputGradient(model)
    return view
