"""``test_cnn``: a tiny CNN with every advtf model contract, for tests and smoke runs.

Like timm's ``test_*`` models, it lives in the registry so the CLI can name it; it trains
in seconds on a CPU and has the same endpoints (``m0``..``m3``, ``representation``).
"""

from __future__ import annotations

import keras

from advtf.models.layers import Builder
from advtf.models.registry import BuildArgs, ModelSpec, register_model


@register_model(
    "test_cnn",
    family="test",
    description="Tiny 3-conv CNN with BatchNorm and a GAP head, for tests and smoke runs",
    default_input_shape=(16, 16, 1),
    min_input_size=4,
)
def test_cnn(args: BuildArgs, spec: ModelSpec) -> keras.Model:
    """conv 3×3 (m0) -> conv 3×3 stride 2 (m1) -> conv 3×3 stride 2 (m2) -> GAP head (m3)."""
    b = Builder(args)
    image, x = b.inputs()
    for module, (filters, strides) in enumerate([(16, 1), (32, 2), (64, 2)]):
        x = b.conv(x, filters, 3, f"conv{module + 1}", strides=strides)
        x = b.relu(b.bn(x, f"bn{module + 1}"), f"relu{module + 1}")
        x = b.mark(x, f"m{module}")
    return b.model(image, b.head(x, 3), spec.name)
