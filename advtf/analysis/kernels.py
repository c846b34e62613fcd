"""Kernel smoothness of convolutional layers (papers/000, Sec. 4.4, Figure 5a; Wang et al. 2020a).

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
    import keras

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


def run_kernels_job(model_paths, run, *, checkpoints=()) -> dict:
    """``advtf kernels``: per-layer statistics of every model, and per-epoch curves of checkpoint runs.

    Writes ``results.json`` (``models``: per model ``model``, ``summary``, ``layers``; ``checkpoints``:
    rows ``run, epoch, mean_abs, l2, variance, tv``), ``kernels.csv/.md`` (one row per model and
    layer), ``summary.csv/.md`` (one row per model), ``kernels.png``, and with checkpoints
    ``checkpoints.csv/.md`` and ``checkpoints.png`` (Figure 5a: one line per run, e.g. per weight decay).
    """
    from advtf.analysis.pairs import by_run
    from advtf.inputs import checkpoint_fingerprints, checkpoint_series, fingerprints
    from advtf.inputs import load_trained_model
    from advtf.plots.local import epoch_curves, kernel_figure
    from advtf.runs import write_json, write_table

    if not model_paths and not checkpoints:
        raise UserError("nothing to analyse: give MODEL(s) or --checkpoints DIR")
    series = [checkpoint_series(d) for d in checkpoints]
    models = [load_trained_model(p) for p in model_paths]
    run.inputs.update(models=fingerprints(model_paths), checkpoints=checkpoint_fingerprints(series))
    per_model, layer_rows, summary_rows = [], [], []
    for path, model in zip(model_paths, models):
        rows, summary = model_kernel_stats(model)
        per_model.append({"model": str(path), "summary": summary, "layers": rows})
        layer_rows += [{"model": str(path), **r} for r in rows]
        summary_rows.append({"model": str(path), **summary})
    if per_model:
        write_table(run.path, "kernels", layer_rows, ["model", "layer", "kernel", "weights", *STATS])
        write_table(run.path, "summary", summary_rows, ["model", "layers", "weights", *STATS])
        kernel_figure(layer_rows, run.path / "kernels.png", stats=STATS)
    curves = []
    for label, found in series:
        for epoch, path in found:
            _, summary = model_kernel_stats(load_trained_model(path))
            curves.append({"run": label, "epoch": epoch, **{s: summary[s] for s in STATS}})
    if curves:
        write_table(run.path, "checkpoints", curves, ["run", "epoch", *STATS])
        epoch_curves(by_run(curves), list(STATS), run.path / "checkpoints.png", ylabel="model-wide value",
                     title="Kernel smoothness over epochs (Figure 5a)")
    results = {"models": per_model, "checkpoints": curves, "stats": list(STATS)}
    write_json(run.path / "results.json", results)
    return results
