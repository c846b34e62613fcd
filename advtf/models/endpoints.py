"""Named endpoints, feature extractors and module membership of advtf models.

Endpoints are marked in the graph by `keras.layers.Identity` layers named `ep_<name>`:
`m0`..`mK` (modules split at down-sampling, Siddiqui & Breuel 2021, Sec. 3; the
last module is the head, its output the logits), `representation` (the global-average-pooled
penultimate vector) and family aliases (ResNet-18's `conv1`, `layer0`..`layer4`, the local-properties paper).
The markers are ordinary layers, so all of this works on models loaded from `.keras` files.
"""

from __future__ import annotations

import re

import keras
import numpy as np

from advtf.errors import UserError
from advtf.models.layers import ENDPOINT_PREFIX

_MODULE = re.compile(r"m(\d+)")


def _markers(model: keras.Model) -> list[tuple[str, keras.layers.Layer]]:
    found = [
        (layer.name[len(ENDPOINT_PREFIX) :], layer)
        for layer in model.layers
        if layer.name.startswith(ENDPOINT_PREFIX) and isinstance(layer, keras.layers.Identity)
    ]
    if not found:
        raise UserError(
            f"model {model.name!r} has no advtf endpoints; build it with "
            "advtf.models.create_model or load a .keras file written by advtf"
        )
    return found


def _module_index(name: str) -> int | None:
    match = _MODULE.fullmatch(name)
    return int(match.group(1)) if match else None


def endpoints(model: keras.Model) -> dict[str, keras.KerasTensor]:
    """All named endpoints of an advtf model, as symbolic tensors of its graph.

    Returns:
        Ordered dict: "m0".."mK", "representation", then aliases in graph order.
    """
    markers = _markers(model)
    modules = sorted((i, n, layer) for n, layer in markers if (i := _module_index(n)) is not None)
    if [i for i, _, _ in modules] != list(range(len(modules))):
        raise UserError(f"model {model.name!r} has inconsistent module markers; rebuild it")
    out = {name: layer.output for _, name, layer in modules}
    out.update((name, layer.output) for name, layer in markers if name == "representation")
    out.update(
        (name, layer.output)
        for name, layer in markers
        if name != "representation" and _module_index(name) is None
    )
    return out


def feature_extractor(model: keras.Model, names: list[str] | str) -> keras.Model:
    """A model mapping the same images to a dict {endpoint name: activation}.

    Args:
        model: an advtf model.
        names: endpoint names (see `endpoints(model)`).

    Returns:
        `keras.Model(model.inputs, {name: tensor})`, sharing the model's layers and weights
        (a single input is passed unwrapped, so the extractor takes a plain tensor).
    """
    names = [names] if isinstance(names, str) else list(names)
    available = endpoints(model)
    unknown = [n for n in names if n not in available]
    if unknown or not names:
        raise UserError(
            f"unknown endpoint(s) {', '.join(map(repr, unknown)) or '(none given)'} for model "
            f"{model.name!r}; available endpoints: {', '.join(available)}"
        )
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, {n: available[n] for n in names}, name=f"{model.name}_features")


def module_layers(model: keras.Model) -> list[list[keras.layers.Layer]]:
    """Layers of each module m0..mK, in graph order, for block-wise retraining.

    Module k holds the layers after marker `ep_m{k-1}` up to marker `ep_m{k}` in the model's
    topological layer order; markers sit on graph cuts, so this is exactly the set of layers
    between the two endpoints. Input and endpoint-marker layers belong to no module.
    """
    count = len([n for n, _ in _markers(model) if _module_index(n) is not None])
    modules: list[list[keras.layers.Layer]] = [[] for _ in range(count)]
    current = 0
    for layer in model.layers:
        name = layer.name
        if name.startswith(ENDPOINT_PREFIX) and isinstance(layer, keras.layers.Identity):
            index = _module_index(name[len(ENDPOINT_PREFIX) :])
            if index is not None:
                current = index + 1
            continue
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if current >= count:
            raise RuntimeError(f"layer {name!r} comes after the head marker of {model.name!r}")
        modules[current].append(layer)
    return modules


def count_params(model: keras.Model) -> int:
    """Number of learnable parameters (kernels, biases, BatchNorm scales and offsets).

    Counted whether or not a layer is currently frozen. BatchNorm moving statistics are
    buffers, not parameters, and are left out (as in papers' and PyTorch's figures);
    Keras' `model.count_params()` includes them.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            weights = [w for w in (layer.gamma, layer.beta) if w is not None]
        else:
            weights = layer.weights
        total += sum(int(np.prod(w.shape)) for w in weights)
    return total


def graph_cuts(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers whose output is the only tensor alive at that point of the graph.

    Every path from the input to the output passes through such a layer, so all layers
    before it (in topological order) are its ancestors and all after it its descendants.
    """
    layers = model.layers
    position = {id(layer): i for i, layer in enumerate(layers)}
    last_use = list(range(len(layers)))
    for i, layer in enumerate(layers):
        for node in layer._inbound_nodes:  # Keras 3 keeps no public consumer list
            for parent in node.parent_nodes:
                p = position.get(id(parent.operation))
                if p is not None:
                    if p > i:
                        raise RuntimeError(f"{model.name!r}: layers not in topological order")
                    last_use[p] = max(last_use[p], i)
    cuts, alive_until = [], -1
    for i, layer in enumerate(layers):
        if alive_until <= i:
            cuts.append(layer)
        alive_until = max(alive_until, last_use[i])
    return cuts
