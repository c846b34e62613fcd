"""Model registry, architectures and endpoints.

Every advtf model takes images in [0, 1] (channels last), normalises them inside its first
layer and returns logits; endpoints (`m0`..`mK`, `representation`, aliases) are marked in
the graph by `ep_<name>` Identity layers. Importing this package registers all families.
"""

from advtf.models import resnet, resnet_v2, tiny, vgg, victims  # noqa: F401  (register families)
from advtf.models.endpoints import count_params, endpoints, feature_extractor, module_layers
from advtf.models.layers import ReverseChannels
from advtf.models.registry import ModelSpec, create_model, list_models, register_model
from advtf.models.saving import input_fits, load_model, save_model

__all__ = [
    "ModelSpec",
    "ReverseChannels",
    "count_params",
    "create_model",
    "endpoints",
    "feature_extractor",
    "input_fits",
    "list_models",
    "load_model",
    "module_layers",
    "register_model",
    "save_model",
]
