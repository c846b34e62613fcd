"""Local response differences between natural and adversarial inputs (papers/000, Sec. 4.3, Tables 1-5,
Figures 5 and 9).

For a layer ``l`` with activation ``f_l`` (a named endpoint of the model, e.g. ResNet-18's
``conv1``, ``layer0``..``layer4``), an image ``x`` and its adversarial version ``x'``:

* **max** = ``max_{c,i,j} |f_l(x')_{c,i,j} - f_l(x)_{c,i,j}|`` — the largest absolute difference of
  any single response of the layer (the paper's "maximum absolute difference of local responses");
* **total** = ``sum_{c,i,j} |f_l(x')_{c,i,j} - f_l(x)_{c,i,j}|`` — the sum of the absolute
  differences over the whole feature map (the paper's "total differences yielded by per pairs");
* **l2** = ``||f_l(x') - f_l(x)||_2`` — the Euclidean distance between the layer's activations,
  Xu et al. (2019)'s *activation bias* (papers/003, Appendix 4, Figure A8).

Both are per image and then averaged over the images of a split (Table 1: "per image"). The paper
gives no formula; this reading reproduces the orders of magnitude of its Table 1 (Conv 1 on a
64×32×32 map: max 0.12, total 370, i.e. a mean |difference| of 0.006 per response). Models run
in inference mode (BatchNorm uses its moving statistics), so a batch's responses do not depend
on the other images in it. Splits (Tables 2, 4) keep only naturally correct images: "successful"
where the adversarial example is misclassified by the model analysed, "failed" where it is not.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from advtf.inputs import model_name
from advtf.errors import UserError

STATS = ("max", "total", "l2")
SPLITS = ("all", "successful", "failed")
PAPER_LAYERS = ("conv1", "layer0", "layer1", "layer2", "layer3", "layer4")
_LOGITS = "__logits__"


def default_layers(model: keras.Model) -> list[str]:
    """The paper's ``conv1, layer0..layer4`` when the model has them (ResNet-18), else its modules ``m0..mK``."""
    from advtf.models import endpoints

    names = list(endpoints(model))
    if all(n in names for n in PAPER_LAYERS):
        return list(PAPER_LAYERS)
    return [n for n in names if n.startswith("m") and n[1:].isdigit()]


def response_extractor(model: keras.Model, layers) -> keras.Model:
    """One model giving every layer's activation and the logits in one forward pass.

    Raises:
        UserError: an unknown layer (endpoint) name; the message lists the available ones.
    """
    from advtf.models import feature_extractor

    features = feature_extractor(model, list(layers))
    outputs = dict(features.output)
    outputs[_LOGITS] = model.output
    return keras.Model(features.inputs, outputs, name=f"{model.name}_responses")


@tf.function(reduce_retracing=True)
def _differences(extractor, x, x_adv):
    n = tf.shape(x)[0]
    out = extractor(tf.concat([x, x_adv], 0), training=False)
    result = {}
    for name, value in out.items():
        if name == _LOGITS:
            predicted = tf.argmax(value, -1, output_type=tf.int32)
            result[name] = tf.stack([predicted[:n], predicted[n:]])
            continue
        delta = tf.reshape(tf.abs(value[n:] - value[:n]), [n, -1])
        result[name] = tf.stack([tf.reduce_max(delta, 1), tf.reduce_sum(delta, 1),
                                 tf.sqrt(tf.reduce_sum(tf.square(delta), 1))])
    return result


def layer_differences(extractor: keras.Model, x, x_adv) -> tuple[dict, np.ndarray, np.ndarray]:
    """Per image and layer, the max and total absolute response difference and their l2 norm (module docstring).

    Returns:
        ``({layer: {"max": [B], "total": [B], "l2": [B]}}, clean predictions, adversarial predictions)``,
        from one forward pass of the natural and adversarial batch together.
    """
    out = _differences(extractor, tf.convert_to_tensor(x, tf.float32), tf.convert_to_tensor(x_adv, tf.float32))
    out = {k: v.numpy() for k, v in out.items()}
    predictions = out.pop(_LOGITS)
    return ({name: dict(zip(STATS, v)) for name, v in out.items()}, predictions[0], predictions[1])


@dataclasses.dataclass
class Accumulator:
    """Per-image differences of one (model, source, attack) combination, batch by batch."""

    layers: list
    values: dict = dataclasses.field(default_factory=dict)

    def add(self, diffs, clean_pred, adv_pred, rows, targeted: bool) -> None:
        from advtf.analysis.pairs import success_on

        batch = {f"{layer}_{stat}": diffs[layer][stat] for layer in self.layers for stat in STATS}
        batch["clean_correct"] = clean_pred == rows["label"]
        batch["success"] = success_on(adv_pred, rows, targeted)
        batch["adversarial_correct"] = adv_pred == rows["label"]
        for key, value in batch.items():
            self.values.setdefault(key, []).append(np.asarray(value))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in self.values.items()}


def split_means(arrays: dict[str, np.ndarray], layers) -> list[dict]:
    """One row per split (:data:`SPLITS`): ``n`` and the mean ``<layer>_max`` / ``<layer>_total``.

    An empty split gives ``n = 0`` and ``None`` values (explained in the run's notes), not an error.
    """
    correct = arrays["clean_correct"].astype(bool)
    success = arrays["success"].astype(bool)
    masks = {"all": np.ones_like(correct), "successful": correct & success, "failed": correct & ~success}
    rows = []
    for split in SPLITS:
        mask = masks[split]
        row = {"split": split, "n": int(mask.sum())}
        for layer in layers:
            for stat in STATS:
                values = arrays[f"{layer}_{stat}"][mask]
                row[f"{layer}_{stat}"] = float(values.mean()) if len(values) else None
        rows.append(row)
    return rows


def _key(path) -> str:
    """A model path compared by what it names (``runs/std``, ``runs/std/`` and ``runs/std/model.keras`` agree)."""
    from pathlib import Path

    p = Path(str(path)).resolve()
    return str(p.parent if p.name == "model.keras" else p)


def _empty_note(model: str, source: str, attack: str, row: dict, total: int) -> str | None:
    if row["n"] or row["split"] == "all":
        return None
    other = "failed" if row["split"] == "successful" else "successful"
    return (f"{model_name(model)}, {source} {attack} examples: no {row['split']} attacks among the {total} correctly "
            f"classified images (all of them {other}); the {row['split']} column is empty"
            + ("; a weaker attack (e.g. --also-attack fgsm) leaves failed ones" if row["split"] == "failed" else ""))


def response_tables(model_paths, models, splits, requests, *, layers, adv_from=(), adv_models=(), batch_size=100,
                    seed=0, progress=None) -> tuple[list[dict], list[str]]:
    """Tables 1-5: rows per (model analysed, source of the adversarial examples, attack, split).

    Each request in ``requests`` attacks every model analysed (``source = "own"``) and every model
    in ``adv_from`` (loaded as ``adv_models``; ``source = "from <name>"``: transferred to every
    *other* model analysed). Returns the rows and notes explaining empty splits.
    """
    from advtf.analysis.pairs import adversarial_pairs

    paths = [str(p) for p in model_paths]
    extractors = [response_extractor(m, layers) for m in models]
    keys = [_key(p) for p in paths]
    transfer = [_key(p) for p in adv_from]
    sources = list(zip(paths, models)) + [(str(p), m) for p, m in zip(adv_from, adv_models) if _key(p) not in keys]
    rows, notes = [], []
    for request in requests:
        for source_path, source_model in sources:
            targets = [k for k, p in enumerate(keys) if p == _key(source_path) or _key(source_path) in transfer]
            if not targets:
                continue
            acc = {k: Accumulator(list(layers)) for k in targets}
            for batch in adversarial_pairs(source_model, splits, request, batch_size=batch_size, seed=seed,
                                           progress=progress, desc=f"{request.name} on {model_name(source_path)}"):
                for k in targets:
                    diffs, clean, adv = layer_differences(extractors[k], batch["natural"], batch["image"])
                    acc[k].add(diffs, clean, adv, batch, request.targeted)
            for k in targets:
                arrays = acc[k].arrays()
                source = "own" if keys[k] == _key(source_path) else f"from {model_name(source_path)}"
                base = {"model": paths[k], "source": source, "attack": request.name,
                        "clean_accuracy": float(arrays["clean_correct"].mean()),
                        "adversarial_accuracy": float(arrays["adversarial_correct"].mean())}
                for row in split_means(arrays, layers):
                    rows.append({**base, **row})
                    note = _empty_note(paths[k], source, request.name, row, int(arrays["clean_correct"].sum()))
                    if note:
                        notes.append(note)
    return rows, notes


def checkpoint_curves(checkpoint_dirs, splits, request, *, layers=None, batch_size=100, seed=0,
                      progress=None) -> tuple[list[str], list[dict]]:
    """Figures 5 and 9: mean max and total differences per layer for every epoch of every run.

    Each checkpoint is attacked by ``request`` itself (its own adversarial examples, all test images).
    Returns the layers and rows ``{run, epoch, clean_accuracy, adversarial_accuracy, <layer>_max, <layer>_total}``.
    """
    from advtf.inputs import checkpoint_series, load_models

    series = [checkpoint_series(d) for d in checkpoint_dirs]  # all checked before any work
    rows = []
    for label, checkpoints in series:
        for epoch, path in checkpoints:
            (model,) = load_models([path], splits.info)
            layers = list(layers or default_layers(model))
            table, _ = response_tables([path], [model], splits, [request], layers=layers, batch_size=batch_size,
                                       seed=seed, progress=progress)
            row = next(r for r in table if r["split"] == "all")
            rows.append({"run": label, "epoch": epoch, "clean_accuracy": row["clean_accuracy"],
                         "adversarial_accuracy": row["adversarial_accuracy"],
                         **{f"{layer}_{s}": row[f"{layer}_{s}"] for layer in layers for s in STATS}})
    return list(layers or []), rows


def activation_map_pair(model_paths, models, splits, request, *, layer: str, channels: int = 8, batch_size=100,
                        seed: int = 0) -> tuple[dict, dict]:
    """Figure 9/A9: ``layer``'s channel maps in every model for one natural/adversarial pair.

    The pair is the first correctly classified test image whose attack on the first model
    succeeds (else the first image); every model sees the same ``x`` and ``x'``. Each model
    shows its ``channels`` most active channels on ``x``. Returns ``(maps, pair_info)``.
    """
    from advtf.adversarial import attack_batches
    from advtf.data import make_batches
    from advtf.models import feature_extractor

    batches = make_batches(splits.require("test"), batch_size, training=False).take(1)
    rows = next(attack_batches(models[0], batches, request, num_classes=splits.info.num_classes, seed=seed))
    good = np.flatnonzero(rows["clean_correct"] & rows["success"].astype(bool))
    i = int(good[0]) if len(good) else 0
    x, x_adv = rows["natural"][i:i + 1], rows["image"][i:i + 1]
    maps = {}
    for path, model in zip(model_paths, models):
        extractor = feature_extractor(model, [layer])
        natural = np.asarray(extractor(x)[layer])[0]
        adversarial = np.asarray(extractor(x_adv)[layer])[0]
        if natural.ndim != 3:
            raise UserError(f"--activation-maps {layer}: not a spatial layer (shape {natural.shape}); "
                            "pick a module such as m1")
        top = np.argsort(-natural.mean((0, 1)))[:channels]
        maps[model_name(path)] = {"natural": natural[..., top], "adversarial": adversarial[..., top]}
    info = {"index": i, "label": int(rows["label"][i]), "adversarial_prediction": int(rows["adversarial_prediction"][i]),
            "success": bool(rows["success"][i]), "attacked_model": model_name(model_paths[0])}
    return maps, info


def run_response_job(model_paths, data, request, run, *, layers=None, adv_from=(), also=(), checkpoints=(),
                     batch_size: int = 100, activation_maps: str | None = None, channels: int = 8,
                     progress=None) -> dict:
    """``advtf response``: Tables 1-5 for ``model_paths``, and Figures 5/9 for ``checkpoints`` runs.

    ``also`` holds further :class:`~advtf.adversarial.AttackRequest` s (e.g. FGSM next to PGD, Table 4).
    Writes ``results.json`` (``layers``, ``rows``, ``notes``, ``checkpoints``, ``definition``, attack
    and dataset), ``response.csv/.md`` (one row per model, source, attack and split; columns
    ``<layer>_max`` and ``<layer>_total``), ``response.png`` (the "all" rows), and with checkpoints
    ``checkpoints.csv/.md``, ``checkpoints_max.png`` and ``checkpoints_total.png``.
    """
    from advtf.analysis.pairs import by_run
    from advtf.inputs import checkpoint_fingerprints, checkpoint_series, fingerprints, load_models
    from advtf.plots.local import epoch_curves, response_figure
    from advtf.runs import write_json, write_table

    if not model_paths and not checkpoints:
        raise UserError("nothing to analyse: give MODEL(s) or --checkpoints DIR")
    splits = data.load()
    requests = [request, *also]
    for r in requests:
        r.check(splits.info.num_classes)
    series = [checkpoint_series(d) for d in checkpoints]
    models = load_models(model_paths, splits.info)
    adv_models = load_models(adv_from, splits.info)
    layers = list(layers) if layers else (default_layers(models[0]) if models else None)
    for m in models:
        response_extractor(m, layers)  # unknown layer names fail here, before any attack
    run.inputs.update(dataset=splits.fingerprint, models=fingerprints(model_paths),
                      checkpoints=checkpoint_fingerprints(series),
                      adv_from=fingerprints(adv_from))
    if activation_maps and not models:
        raise UserError("--activation-maps needs MODEL(s); it does not apply to --checkpoints alone")
    if activation_maps:
        for m in models:
            response_extractor(m, [activation_maps])
    rows, notes = [], []
    if models:
        rows, notes = response_tables(model_paths, models, splits, requests, layers=layers, adv_from=adv_from,
                                      adv_models=adv_models, batch_size=batch_size, seed=data.seed, progress=progress)
        columns = ["model", "source", "attack", "split", "n", "clean_accuracy", "adversarial_accuracy",
                   *[f"{layer}_{s}" for layer in layers for s in STATS]]
        write_table(run.path, "response", [{**r, "model": model_name(r["model"])} for r in rows], columns)
        response_figure([r for r in rows if r["split"] == "all"], layers, run.path / "response.png")
    curves = []
    if checkpoints:
        layers_ckpt, curves = checkpoint_curves(checkpoints, splits, request, layers=layers, batch_size=batch_size,
                                                seed=data.seed, progress=progress)
        layers = layers or layers_ckpt
        write_table(run.path, "checkpoints", curves)
        grouped = by_run(curves)
        for stat in STATS:
            panels = {f"{layer}_{stat}": layer for layer in layers_ckpt}
            epoch_curves(grouped,
                         list(panels), run.path / f"checkpoints_{stat}.png", ylabel=f"mean {stat} |Δ response|",
                         title=f"{stat} local response difference ({request.name}) over epochs")
    pair = None
    if activation_maps:
        from advtf.plots.local import activation_maps_figure

        maps, pair = activation_map_pair(model_paths, models, splits, request, layer=activation_maps,
                                         channels=channels, batch_size=batch_size, seed=data.seed)
        pair["layer"] = activation_maps
        activation_maps_figure(maps, run.path / "activation_maps.png", layer=activation_maps,
                               title=f"{activation_maps}: test image {pair['index']} (label {pair['label']}) and its "
                                     f"{request.name} example on {pair['attacked_model']} "
                                     f"(predicted {pair['adversarial_prediction']})")
    results = {"layers": layers, "rows": rows, "notes": notes, "checkpoints": curves, "activation_maps": pair,
               "definition": {"max": "mean over images of max_{c,i,j} |f(x_adv) - f(x)|",
                              "total": "mean over images of sum_{c,i,j} |f(x_adv) - f(x)|",
                              "l2": "mean over images of ||f(x_adv) - f(x)||_2 (activation bias, Xu et al. "
                                    "2019, Figure A8)"},
               **request.to_json(), "also": [r.name for r in also],
               "also_options": [dict(r.options) for r in also], "dataset": splits.info.name}
    write_json(run.path / "results.json", results)
    return results
