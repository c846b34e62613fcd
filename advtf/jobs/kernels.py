"""``advtf kernels``: kernel smoothness per convolutional layer (the local-properties paper, Sec. 4.4,
Figure 5a): magnitude, within-kernel variance and total variation, per model and over epochs.

The statistics are :mod:`advtf.analysis.kernels`; this job loads the models and checkpoints and
writes results, tables and figures.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from advtf.analysis.kernels import STATS, model_kernel_stats
from advtf.analysis.pairs import by_run
from advtf.errors import UserError
from advtf.inputs import checkpoint_fingerprints, checkpoint_series, fingerprints, load_trained_model, model_name
from advtf.jobs import Request
from advtf.plots.local import epoch_curves, kernel_figure
from advtf.runs import write_json, write_table


@dataclasses.dataclass(frozen=True)
class KernelsRequest(Request):
    """Options of ``advtf kernels``: models, and runs of ``advtf train --save-every-epoch``."""

    models: tuple[str, ...] = ()
    checkpoints: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.models and not self.checkpoints:
            raise UserError("nothing to analyse: give MODEL(s) or --checkpoints DIR")

    def inputs(self) -> list[str]:
        return [*self.models, *self.checkpoints]


def run(request: KernelsRequest, run, *, progress=None, report=None) -> dict[str, Any]:
    """Per-layer statistics of every model, and per-epoch curves of the checkpoint runs.

    Writes ``results.json`` (``models``: per model ``model``, ``summary``, ``layers``; ``checkpoints``:
    rows ``run, epoch, mean_abs, l2, variance, tv``; ``stats``), ``kernels.csv/.md`` (one row per
    model and layer), ``summary.csv/.md`` (one row per model), ``kernels.png``, and with checkpoints
    ``checkpoints.csv/.md`` and ``checkpoints.png`` (Figure 5a: one line per run, e.g. per weight decay).
    """
    paths = list(request.models)
    series = [checkpoint_series(d) for d in request.checkpoints]  # all checked before any work
    models = [load_trained_model(p) for p in paths]
    run.record_inputs(models=fingerprints(paths), checkpoints=checkpoint_fingerprints(series))
    per_model, layer_rows, summary_rows = [], [], []
    for path, model in zip(paths, models):
        rows, summary = model_kernel_stats(model)
        per_model.append({"model": str(path), "summary": summary, "layers": rows})
        layer_rows += [{"model": str(path), **r} for r in rows]
        summary_rows.append({"model": str(path), **summary})
    if per_model:
        write_table(run.path, "kernels", layer_rows, ["model", "layer", "kernel", "weights", *STATS])
        write_table(run.path, "summary", summary_rows, ["model", "layers", "weights", *STATS])
        kernel_figure([{**r, "model": model_name(r["model"])} for r in layer_rows], run.path / "kernels.png",
                      stats=STATS)
    curves = []
    for label, found in series:
        for epoch, path in found:
            _, summary = model_kernel_stats(load_trained_model(path))
            curves.append({"run": label, "epoch": epoch, **{s: summary[s] for s in STATS}})
    if curves:
        write_table(run.path, "checkpoints", curves, ["run", "epoch", *STATS])
        epoch_curves(by_run(curves), list(STATS), run.path / "checkpoints.png", ylabel="model-wide value",
                     title="Kernel smoothness over epochs (the local-properties paper, Figure 5a)")
    results = {"models": per_model, "checkpoints": curves, "stats": list(STATS)}
    write_json(run.path / "results.json", results)
    return results
