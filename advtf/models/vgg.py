"""VGG-11 / VGG-16 with batch norm and a global-average-pooling head.

Simonyan & Zisserman 2015, torchvision configurations A (VGG-11) and D (VGG-16) with
BatchNorm after every conv. As Siddiqui & Breuel 2021 (Sec. 3) do for CIFAR, the
average pool + three-layer classifier is replaced by global average pooling and one linear
layer (GAP -> Dense logits).

Layer names: `block<b>_conv<i>`, `block<b>_bn<i>`, `block<b>_relu<i>`, `block<b>_pool`.
Modules split at the max-pools (each pool opens a module, Siddiqui & Breuel's six):
m0 = block 1 convs, m1..m4 = pool + blocks 2..5, m5 = head (pool 5 -> GAP -> Dense).
Five 2×2 max-pools: inputs must be at least 32×32.
"""

from __future__ import annotations

import keras
from keras import layers

from advtf.models.layers import Builder
from advtf.models.registry import BuildArgs, ModelSpec, register_model

# Conv widths per block (torchvision cfgs "A" and "D"); a max-pool ends every block.
VGG_BLOCKS = {
    "vgg11_bn": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg16_bn": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
}
_PAPER = "Simonyan & Zisserman 2015; Siddiqui & Breuel 2021 (GAP head)"


def build_vgg(args: BuildArgs, name: str, blocks) -> keras.Model:
    """VGG-BN with a GAP head and endpoint markers."""
    b = Builder(args, torch_bn=True, conv_bias=True)
    image, x = b.inputs()
    for index, widths in enumerate(blocks):
        prefix = f"block{index + 1}"
        if index > 0:
            x = layers.MaxPooling2D(2, name=f"block{index}_pool")(x)
        for i, filters in enumerate(widths, start=1):
            x = b.conv(x, filters, 3, f"{prefix}_conv{i}")
            x = b.relu(b.bn(x, f"{prefix}_bn{i}"), f"{prefix}_relu{i}")
        x = b.mark(x, f"m{index}")
    x = layers.MaxPooling2D(2, name=f"block{len(blocks)}_pool")(x)
    return b.model(image, b.head(x, len(blocks)), name)


def _register(name: str, label: str) -> None:
    @register_model(
        name,
        family="vgg",
        description=f"{label} with batch norm (torchvision) and a GAP -> linear head",
        default_input_shape=(32, 32, 3),
        min_input_size=32,
        paper=_PAPER,
    )
    def factory(args: BuildArgs, spec: ModelSpec) -> keras.Model:
        return build_vgg(args, spec.name, VGG_BLOCKS[spec.name])


_register("vgg11_bn", "VGG-11 (config A)")
_register("vgg16_bn", "VGG-16 (config D)")
