"""Kernel smoothness of convolutional layers (the local-properties paper, Sec. 4.4, Figure 5a;
Wang et al. 2020a).

For a Conv2D kernel ``W`` of shape ``[kh, kw, in, out]``, each of its ``in × out`` 2-D slices
``m = W[:, :, i, o]`` is one of the paper's kernels ``m ∈ R^{H×W}``. Per layer:

* ``mean_abs``: mean of ``|w|`` over all weights (the magnitude weight decay shrinks);
* ``l2``: Frobenius norm of the whole kernel tensor;
* ``variance``: variance of the ``kh·kw`` values of each slice (population variance), averaged
  over slices — the paper's "variance" of a kernel (Figure 4: same mean, different variance);
* ``tv``: anisotropic spatial total variation of each slice,
  ``sum |m[a+1, b] - m[a, b]| + sum |m[a, b+1] - m[a, b]|``, averaged over slices.

``variance`` and ``tv`` describe spatial structure and are ``None`` for 1×1 kernels. Model-wide
figures pool every weight (``mean_abs``, ``l2``) or every slice of kernels larger than 1×1
(``variance``, ``tv``). Only ``keras.layers.Conv2D`` layers count (Dense layers have no spatial kernel).
"""

from __future__ import annotations

import keras
import numpy as np

from advtf.errors import UserError

STATS = ("mean_abs", "l2", "variance", "tv")


def kernel_slices(kernel: np.ndarray) -> np.ndarray:
    """``[kh, kw, in, out]`` → ``[in·out, kh, kw]``: one 2-D kernel per (input, output) channel pair."""
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim != 4:
        raise UserError(f"a Conv2D kernel has 4 dimensions [kh, kw, in, out]; got shape {kernel.shape}")
    kh, kw = kernel.shape[:2]
    return np.moveaxis(kernel.reshape(kh, kw, -1), -1, 0)


def slice_variance(slices: np.ndarray) -> np.ndarray:
    """Population variance of each slice's ``kh·kw`` values, ``[S]``."""
    return slices.reshape(len(slices), -1).var(axis=1)


def slice_tv(slices: np.ndarray) -> np.ndarray:
    """Anisotropic total variation of each slice, ``[S]``."""
    return (np.abs(np.diff(slices, axis=1)).sum(axis=(1, 2)) + np.abs(np.diff(slices, axis=2)).sum(axis=(1, 2)))


def kernel_stats(kernel: np.ndarray) -> dict:
    """:data:`STATS` of one Conv2D kernel (module docstring)."""
    kernel = np.asarray(kernel, np.float64)
    slices = kernel_slices(kernel)
    spatial = slices.shape[1] * slices.shape[2] > 1
    return {"kernel": "x".join(map(str, kernel.shape[:2])), "weights": int(kernel.size),
            "mean_abs": float(np.abs(kernel).mean()), "l2": float(np.sqrt((kernel ** 2).sum())),
            "variance": float(slice_variance(slices).mean()) if spatial else None,
            "tv": float(slice_tv(slices).mean()) if spatial else None}


def conv_kernels(model) -> list[tuple[str, np.ndarray]]:
    """``(layer name, kernel)`` of every Conv2D layer in graph order (nested models included)."""
    found = []

    def visit(layer):
        if isinstance(layer, keras.Model):
            for inner in layer.layers:
                visit(inner)
        elif isinstance(layer, keras.layers.Conv2D) and len(layer.kernel.shape) == 4:
            found.append((layer.name, np.asarray(layer.kernel.numpy())))

    for layer in model.layers:
        visit(layer)
    if not found:
        raise UserError(f"model {model.name!r} has no Conv2D layers; kernel smoothness needs a convolutional model")
    return found


def model_kernel_stats(model) -> tuple[list[dict], dict]:
    """Per-layer rows and the model-wide summary (module docstring)."""
    kernels = conv_kernels(model)
    rows = [{"layer": name, **kernel_stats(k)} for name, k in kernels]
    flat = np.concatenate([k.ravel() for _, k in kernels]).astype(np.float64)
    slices = [kernel_slices(k) for _, k in kernels if k.shape[0] * k.shape[1] > 1]
    summary = {"layers": len(rows), "weights": int(flat.size), "mean_abs": float(np.abs(flat).mean()),
               "l2": float(np.sqrt((flat ** 2).sum())),
               "variance": float(np.concatenate([slice_variance(s) for s in slices]).mean()) if slices else None,
               "tv": float(np.concatenate([slice_tv(s) for s in slices]).mean()) if slices else None}
    return rows, summary
