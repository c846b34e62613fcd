"""``advtf response``: local response differences per layer, natural vs adversarial (the local-properties
paper, Sec. 4.3, Tables 1-5, Figures 5 and 9; the activation bias of Xu et al. 2019, Figure A8).

The differences, tables and activation maps are :mod:`advtf.analysis.response`; this job loads the
models and every checkpoint of the series, runs all their attacks first as resumable passes
(:class:`advtf.jobs.attack_passes.AttackPasses`: ``--resume``; shared by the workers of a cluster),
then measures from the stored pairs and writes results, tables and figures.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from advtf import validation as check
from advtf.adversarial import AttackRequest
from advtf.analysis.pairs import adversarial_pairs, by_run
from advtf.analysis.response import (STATS, activation_map_pair, default_layers, epoch_row, response_extractor,
                                     response_sources, response_tables)
from advtf.errors import UserError
from advtf.inputs import checkpoint_fingerprints, checkpoint_series, fingerprints, load_models, model_name
from advtf.jobs.attack import check_attack_request
from advtf.jobs.attack_passes import AttackPasses
from advtf.jobs.frequency import AttackedModelsRequest
from advtf.plots.local import activation_maps_figure, epoch_curves, response_figure
from advtf.runs import write_json, write_table

DEFINITION = {"max": "mean over images of max_{c,i,j} |f(x_adv) - f(x)|",
              "total": "mean over images of sum_{c,i,j} |f(x_adv) - f(x)|",
              "l2": "mean over images of ||f(x_adv) - f(x)||_2 (activation bias, Xu et al. 2019, Figure A8)"}


@dataclasses.dataclass(frozen=True)
class ResponseRequest(AttackedModelsRequest):
    """Options of ``advtf response``.

    ``models`` are MODEL and every --compare (may be empty with ``checkpoints``); ``also`` the
    further attacks of --also-attack; ``layers`` None: the paper's ResNet-18 layers or ``m0..mK``.
    """

    also: tuple[AttackRequest, ...] = ()
    layers: tuple[str, ...] | None = None
    adv_from: tuple[str, ...] = ()
    checkpoints: tuple[str, ...] = ()
    activation_maps: str | None = None
    channels: int = 8

    def __post_init__(self):
        super().__post_init__()
        for extra in self.also:
            check_attack_request(extra)
        check.count("--channels", self.channels)
        if self.layers is not None and not all(isinstance(n, str) and n.strip() for n in self.layers):
            raise UserError(f"--layers holds an empty name ({','.join(self.layers)}); write e.g. --layers m0,m2")
        if self.activation_maps is not None and not self.models:
            raise UserError("--activation-maps needs MODEL(s); it does not apply to --checkpoints alone")

    def check_models(self) -> None:
        if not self.models and not self.checkpoints:
            raise UserError("give a MODEL (and --compare MODEL ...) or --checkpoints DIR")

    def inputs(self) -> list[str]:
        return [*self.models, *self.adv_from, *self.checkpoints, self.data.dataset]


def load_checkpoints(series, splits, layers) -> tuple[list[str], list]:
    """Every checkpoint of ``series`` loaded, as ``[(run, [(epoch, path, model)])]``, with the layers of the
    curves (``layers`` or the first checkpoint's default ones); unknown layers fail here, before any attack.

    All are held at once so that their attacks can run as one set of passes (memory grows with the
    number of checkpoints: a ResNet-18 is about 45 MB).
    """
    loaded = []
    for label, checkpoints in series:
        models = load_models([path for _, path in checkpoints], splits.info)
        for model in models:
            layers = list(layers or default_layers(model))
            response_extractor(model, layers)
        loaded.append((label, [(epoch, path, model) for (epoch, path), model in zip(checkpoints, models)]))
    return list(layers or []), loaded


def checkpoint_curves(loaded, splits, request: ResponseRequest, layers, *, progress=None,
                      pairs=adversarial_pairs) -> list[dict]:
    """Figures 5 and 9: per run and epoch of :func:`load_checkpoints`, the "all" row of its own attack
    (all test images): ``{run, epoch, clean_accuracy, adversarial_accuracy, <layer>_max|total|l2}``."""
    rows = []
    for label, checkpoints in loaded:
        for epoch, path, model in checkpoints:
            table, _ = response_tables([path], [model], splits, [request.attack], layers=layers,
                                       batch_size=request.batch_size, seed=request.data.seed, progress=progress,
                                       pairs=pairs)
            rows.append(epoch_row(label, epoch, table, layers))
    return rows


def run(request: ResponseRequest, run, *, progress=None, report=None) -> dict[str, Any]:
    """Tables 1-5 for the models, Figures 5/9 for the checkpoint runs, Figure 9/A9 with activation maps.

    Writes ``results.json`` (``layers``, ``rows``, ``notes``, ``checkpoints``, ``activation_maps``,
    ``definition``, the attack, ``also``, ``also_options``, ``dataset``), ``response.csv/.md`` (one
    row per model, source, attack and split; columns ``<layer>_max|total|l2``) and ``response.png``
    (the "all" rows); with checkpoints ``checkpoints.csv/.md`` and ``checkpoints_<stat>.png``; with
    activation maps ``activation_maps.png``.
    """
    attack, data, paths = request.attack, request.data, list(request.models)
    splits = data.load()
    requests = [attack, *request.also]
    for r in requests:
        r.check(splits.info.num_classes)
    series = [checkpoint_series(d) for d in request.checkpoints]  # all checked before any work
    models = load_models(paths, splits.info)
    adv_models = load_models(request.adv_from, splits.info)
    layers = list(request.layers) if request.layers else (default_layers(models[0]) if models else None)
    for m in models:
        response_extractor(m, layers)  # unknown layer names fail here, before any attack
        if request.activation_maps:
            response_extractor(m, [request.activation_maps])
    layers_ckpt, loaded = load_checkpoints(series, splits, layers)
    run.record_inputs(dataset=splits.fingerprint, models=fingerprints(paths),
                      checkpoints=checkpoint_fingerprints(series), adv_from=fingerprints(request.adv_from))
    # Every attack first, as resumable passes (a cluster's workers share them, then only the chief goes on).
    passes = AttackPasses.of_test_split(run, splits, batch_size=request.batch_size, seed=data.seed,
                                        progress=progress)
    if models:
        for r in requests:
            for source_path, source_model, _ in response_sources(paths, models, request.adv_from, adv_models):
                passes.add(source_model, r, f"{r.name} on {model_name(source_path)}")
    for label, checkpoints in loaded:
        for epoch, _, model in checkpoints:
            passes.add(model, attack, f"{attack.name} on {label}, epoch {epoch}")
    passes.run_all()
    rows, notes = [], []
    if models:
        rows, notes = response_tables(paths, models, splits, requests, layers=layers, adv_from=request.adv_from,
                                      adv_models=adv_models, batch_size=request.batch_size, seed=data.seed,
                                      progress=progress, pairs=passes.pairs)
        columns = ["model", "source", "attack", "split", "n", "clean_accuracy", "adversarial_accuracy",
                   *[f"{layer}_{s}" for layer in layers for s in STATS]]
        write_table(run.path, "response", [{**r, "model": model_name(r["model"])} for r in rows], columns)
        response_figure([{**r, "model": model_name(r["model"])} for r in rows if r["split"] == "all"], layers,
                        run.path / "response.png")
    curves = []
    if series:
        curves = checkpoint_curves(loaded, splits, request, layers_ckpt, progress=progress, pairs=passes.pairs)
        layers = layers or layers_ckpt
        write_table(run.path, "checkpoints", curves)
        grouped = by_run(curves)
        for stat in STATS:
            epoch_curves(grouped, [f"{layer}_{stat}" for layer in layers_ckpt], run.path / f"checkpoints_{stat}.png",
                         ylabel=f"mean {stat} |Δ response|",
                         title=f"{stat} local response difference ({attack.name}) over epochs")
    pair = None
    if request.activation_maps:
        layer = request.activation_maps
        maps, pair = activation_map_pair(paths, models, splits, attack, layer=layer, channels=request.channels,
                                         batch_size=request.batch_size, seed=data.seed, pairs=passes.pairs)
        pair["layer"] = layer
        activation_maps_figure(maps, run.path / "activation_maps.png", layer=layer,
                               title=f"{layer}: test image {pair['index']} (label {pair['label']}) and its "
                                     f"{attack.name} example on {pair['attacked_model']} "
                                     f"(predicted {pair['adversarial_prediction']})")
    results = {"layers": layers, "rows": rows, "notes": notes, "checkpoints": curves, "activation_maps": pair,
               "definition": DEFINITION, **attack.to_json(), "also": [r.name for r in request.also],
               "also_options": [dict(r.options) for r in request.also], "dataset": splits.info.name}
    write_json(run.path / "results.json", results)
    return results
