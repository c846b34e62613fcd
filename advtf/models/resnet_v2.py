"""Pre-activation bottleneck ResNets v2 for small images (ResNet20v2, ResNet56v2).

He et al. 2016, "Identity Mappings in Deep Residual Networks", in the CIFAR form of the
Keras example `cifar10_resnet.py` (`resnet_v2`), which Springer et al. 2021 (
Table 3) trained: ResNet56v2 on CIFAR-10, ResNet20v2 on ImageNet-9.

Structure (depth 9n + 2; n bottleneck blocks per stage):
    stem: conv 3×3 16 -> BN -> ReLU
    stage 1: 16 -> 64, stage 2: 64 -> 128 (stride 2), stage 3: 128 -> 256 (stride 2)
    block: [BN -> ReLU ->] conv 1×1 (stride) -> BN -> ReLU -> conv 3×3 -> BN -> ReLU
           -> conv 1×1 (out); + shortcut (1×1 conv projection in each stage's first block)
    head: BN -> ReLU -> global average pooling -> Dense logits
The very first block skips its BN -> ReLU (the stem just applied them), as in the example.
Convolutions have biases and He-normal initialisation, as in the example; its
`l2(1e-4)` kernel regulariser is left to the training loop's weight decay.

Modules: m0 stem, m1..m3 stages (m3 ends with the final BN -> ReLU), m4 head.
"""

from __future__ import annotations

import keras
from keras import layers

from advtf.models.layers import Builder
from advtf.models.registry import BuildArgs, ModelSpec, register_model

_PAPER = "He et al. 2016 (Identity Mappings); Springer et al. 2021 (Table 3)"


def _preact(b: Builder, x, prefix: str, index: int):
    x = b.bn(x, f"{prefix}_bn{index}")
    return b.relu(x, f"{prefix}_relu{index}")


def _bottleneck(b: Builder, x, prefix: str, mid: int, out: int, *, strides: int, first: bool):
    """One bottleneck unit; `first` = first unit of its stage (projection shortcut)."""
    y = x if prefix == "stage1_block1" else _preact(b, x, prefix, 1)
    y = b.conv(y, mid, 1, f"{prefix}_conv1", strides=strides)
    y = _preact(b, y, prefix, 2)
    y = b.conv(y, mid, 3, f"{prefix}_conv2")
    y = _preact(b, y, prefix, 3)
    y = b.conv(y, out, 1, f"{prefix}_conv3")
    if first:
        x = b.conv(x, out, 1, f"{prefix}_shortcut", strides=strides)
    return layers.Add(name=f"{prefix}_add")([x, y])


def build_resnet_v2(args: BuildArgs, name: str, blocks_per_stage: int) -> keras.Model:
    """ResNet (9 * blocks_per_stage + 2)-layer v2 with endpoint markers."""
    b = Builder(args, conv_bias=True)
    image, x = b.inputs()
    x = b.conv(x, 16, 3, "stem_conv")
    x = b.bn(x, "stem_bn")
    x = b.relu(x, "stem_relu")
    x = b.mark(x, "m0")
    mid = 16
    for stage, out in enumerate((64, 128, 256), start=1):
        for block in range(1, blocks_per_stage + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            prefix = f"stage{stage}_block{block}"
            x = _bottleneck(b, x, prefix, mid, out, strides=strides, first=block == 1)
        if stage == 3:
            x = b.relu(b.bn(x, "post_bn"), "post_relu")
        x = b.mark(x, f"m{stage}")
        mid = out
    return b.model(image, b.head(x, 4), name)


@register_model(
    "resnet20v2",
    family="resnet_v2",
    description="ResNet20 v2 (pre-activation bottleneck, 3 stages, n=2), Keras CIFAR example",
    default_input_shape=(32, 32, 3),
    paper=_PAPER,
)
def resnet20v2(args: BuildArgs, spec: ModelSpec) -> keras.Model:
    """ResNet20v2 (n = 2): Springer et al.'s ImageNet-9 source model."""
    return build_resnet_v2(args, spec.name, 2)


@register_model(
    "resnet56v2",
    family="resnet_v2",
    description="ResNet56 v2 (pre-activation bottleneck, 3 stages, n=6), Keras CIFAR example",
    default_input_shape=(32, 32, 3),
    paper=_PAPER,
)
def resnet56v2(args: BuildArgs, spec: ModelSpec) -> keras.Model:
    """ResNet56v2 (n = 6): Springer et al.'s CIFAR-10 source model."""
    return build_resnet_v2(args, spec.name, 6)
