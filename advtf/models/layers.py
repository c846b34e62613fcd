"""Shared building blocks: the graph builder used by advtf's own families, custom layers.

Every advtf model starts with `image` (Input, pixels in [0, 1]) -> `normalize`
((x - mean) / std), and marks its endpoints with `keras.layers.Identity(name="ep_<name>")`
layers, which survive `.keras` round trips so `endpoints()` works on loaded models.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from advtf.errors import UserError
from advtf.models.registry import BuildArgs

ENDPOINT_PREFIX = "ep_"


@keras.saving.register_keras_serializable(package="advtf")
class ReverseChannels(layers.Layer):
    """Reverses the channel axis (RGB <-> BGR), for 'caffe'-style preprocessing.

    Has no weights; used by the VGG16 victim whose ImageNet weights expect BGR input.
    """

    def call(self, inputs):
        return ops.flip(inputs, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape


class Builder:
    """Hands out consistently named, width-scaled, optionally seeded layers.

    Args:
        args: validated `create_model` arguments (width, seed, ...).
        torch_bn: use PyTorch's BatchNorm epsilon 1e-5 for families ported from torchvision
            (Keras' 1e-3 otherwise). Every family uses moving-statistics momentum 0.9
            (PyTorch's 0.1): Keras' 0.99 leaves the statistics far behind the weights in
            short CPU runs, so a model that trains well evaluates near chance.
        conv_bias: give convolutions a bias (the Keras CIFAR ResNet example does).
    """

    def __init__(self, args: BuildArgs, *, torch_bn: bool = False, conv_bias: bool = False):
        if args.weights is not None:
            raise UserError(
                f"weights={args.weights!r} is only available for keras.applications models "
                "(family 'victim', and resnet50v2); pass weights=None"
            )
        self.args = args
        self.torch_bn = torch_bn
        self.conv_bias = conv_bias
        self._next_seed = None if args.seed is None else args.seed * 10_007

    def ch(self, channels: int) -> int:
        """`channels` scaled by the width multiplier (at least 1)."""
        return max(1, int(round(channels * self.args.width)))

    def init(self) -> keras.initializers.Initializer:
        """He-normal initializer; seeded deterministically per layer when a seed was given."""
        if self._next_seed is None:
            return keras.initializers.HeNormal()
        self._next_seed += 1
        return keras.initializers.HeNormal(seed=self._next_seed)

    def inputs(self) -> tuple[keras.KerasTensor, keras.KerasTensor]:
        """The `image` input and its normalised version ((x - mean) / std)."""
        image = keras.Input(shape=self.args.input_shape, name="image")
        variance = [s * s for s in self.args.std]
        x = layers.Normalization(mean=list(self.args.mean), variance=variance, name="normalize")(
            image
        )
        return image, x

    def conv(self, x, filters: int, kernel: int, name: str, *, strides: int = 1):
        """Conv2D with 'same' padding and `filters` scaled by the width multiplier."""
        return layers.Conv2D(
            self.ch(filters),
            kernel,
            strides=strides,
            padding="same",
            use_bias=self.conv_bias,
            kernel_initializer=self.init(),
            name=name,
        )(x)

    def bn(self, x, name: str):
        """BatchNormalization with the family's defaults."""
        epsilon = 1e-5 if self.torch_bn else 1e-3
        return layers.BatchNormalization(momentum=0.9, epsilon=epsilon, name=name)(x)

    @staticmethod
    def relu(x, name: str):
        return layers.ReLU(name=name)(x)

    @staticmethod
    def mark(x, endpoint: str):
        """Marks `x` as the endpoint `endpoint` (an Identity layer named ep_<endpoint>)."""
        return layers.Identity(name=ENDPOINT_PREFIX + endpoint)(x)

    def head(self, x, module: int):
        """GAP -> `representation` -> Dense logits, marked as module `m<module>`."""
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = self.mark(x, "representation")
        x = layers.Dense(self.args.num_classes, kernel_initializer=self.init(), name="logits")(x)
        return self.mark(x, f"m{module}")

    @staticmethod
    def model(image, logits, name: str) -> keras.Model:
        return keras.Model(image, logits, name=name)
