"""ResNet-18 and ResNet-50 (v1.5), laid out as torchvision's, with a size-dependent stem.

He et al. 2016, "Deep Residual Learning for Image Recognition". ResNet-18 is the backbone of
"Dissecting Local Properties of Adversarial Examples" (the local-properties paper); ResNet-18/50 are used by
Siddiqui & Breuel 2021 with torchvision's architecture.

Stem rule: images smaller than 128 px (CIFAR-like) get the CIFAR stem (conv 3×3 stride 1,
no max-pool, as in the local-properties paper and Siddiqui & Breuel: layer1 then runs at 32×32 on CIFAR); images of at
least 128 px get the ImageNet stem (conv 7×7 stride 2 -> BN -> ReLU -> max-pool 3×3 stride 2).
ResNet-50 is v1.5 (stride on the 3×3 conv of the bottleneck, as torchvision). Convolutions
use 'same' padding (for stride 2 on even sizes Keras pads bottom/right only, torchvision
pads symmetrically: same shapes and parameter counts).

Layer names follow torchvision's with dots as underscores (`layer2_0_conv1`,
`layer2_0_downsample_conv`, ...). Modules (Siddiqui & Breuel's six, each opened by a
down-sampling layer): m0 stem conv -> BN -> ReLU, m1..m4 = layer1..layer4 (m1 starts with
the ImageNet stem's max-pool), m5 head. Aliases (the local-properties paper, Sec. 4.3): `conv1` (first conv
output, before BN), `layer0` (the input of layer1: after the stem's ReLU, and after the
max-pool for the ImageNet stem), `layer1`..`layer4` (stage outputs).
"""

from __future__ import annotations

import keras
from keras import layers

from advtf.models.layers import Builder
from advtf.models.registry import BuildArgs, ModelSpec, register_model

IMAGENET_STEM_MIN_SIZE = 128
_PAPERS = "He et al. 2016; the local-properties paper (ICLR 2022 submission); Siddiqui & Breuel 2021"


def _basic(b: Builder, x, prefix: str, planes: int, strides: int, project: bool):
    y = b.conv(x, planes, 3, f"{prefix}_conv1", strides=strides)
    y = b.relu(b.bn(y, f"{prefix}_bn1"), f"{prefix}_relu1")
    y = b.bn(b.conv(y, planes, 3, f"{prefix}_conv2"), f"{prefix}_bn2")
    return _merge(b, x, y, prefix, planes, strides, project)


def _bottleneck(b: Builder, x, prefix: str, planes: int, strides: int, project: bool):
    y = b.conv(x, planes, 1, f"{prefix}_conv1")
    y = b.relu(b.bn(y, f"{prefix}_bn1"), f"{prefix}_relu1")
    y = b.conv(y, planes, 3, f"{prefix}_conv2", strides=strides)
    y = b.relu(b.bn(y, f"{prefix}_bn2"), f"{prefix}_relu2")
    y = b.bn(b.conv(y, 4 * planes, 1, f"{prefix}_conv3"), f"{prefix}_bn3")
    return _merge(b, x, y, prefix, 4 * planes, strides, project)


def _merge(b: Builder, x, y, prefix: str, out: int, strides: int, project: bool):
    if project:
        x = b.conv(x, out, 1, f"{prefix}_downsample_conv", strides=strides)
        x = b.bn(x, f"{prefix}_downsample_bn")
    x = layers.Add(name=f"{prefix}_add")([x, y])
    return b.relu(x, f"{prefix}_out")


def _stem(b: Builder, x):
    imagenet = min(b.args.input_shape[:2]) >= IMAGENET_STEM_MIN_SIZE
    x = b.conv(x, 64, 7 if imagenet else 3, "conv1", strides=2 if imagenet else 1)
    x = b.mark(x, "conv1")
    x = b.mark(b.relu(b.bn(x, "bn1"), "relu"), "m0")
    if imagenet:
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="maxpool")(x)
    return b.mark(x, "layer0")


def build_resnet(args: BuildArgs, name: str, block, stages: tuple[int, ...], expansion: int):
    """A torchvision-style ResNet with endpoint markers (see module docstring)."""
    b = Builder(args, torch_bn=True)
    image, x = b.inputs()
    x = _stem(b, x)
    in_planes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), stages), start=1):
        for index in range(blocks):
            strides = 2 if stage > 1 and index == 0 else 1
            project = index == 0 and (strides != 1 or in_planes != planes * expansion)
            x = block(b, x, f"layer{stage}_{index}", planes, strides, project)
            in_planes = planes * expansion
        x = b.mark(b.mark(x, f"m{stage}"), f"layer{stage}")
    return b.model(image, b.head(x, 5), name)


@register_model(
    "resnet18",
    family="resnet",
    description="ResNet-18 (basic blocks [2,2,2,2]); CIFAR stem below 128 px, ImageNet stem above",
    default_input_shape=(32, 32, 3),
    paper=_PAPERS,
)
def resnet18(args: BuildArgs, spec: ModelSpec) -> keras.Model:
    """ResNet-18: ~11.17M parameters for 10 classes at width 1 (CIFAR stem)."""
    return build_resnet(args, spec.name, _basic, (2, 2, 2, 2), 1)


@register_model(
    "resnet50",
    family="resnet",
    description="ResNet-50 v1.5 (bottlenecks [3,4,6,3], torchvision); CIFAR/ImageNet stem by size",
    default_input_shape=(32, 32, 3),
    paper=_PAPERS,
)
def resnet50(args: BuildArgs, spec: ModelSpec) -> keras.Model:
    """ResNet-50 v1.5 as in torchvision (Siddiqui & Breuel's ImageNet / CIFAR model)."""
    return build_resnet(args, spec.name, _bottleneck, (3, 4, 6, 3), 4)
