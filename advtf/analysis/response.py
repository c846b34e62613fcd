"""Local response differences between natural and adversarial inputs (the local-properties paper,
Sec. 4.3, Tables 1-5, Figures 5 and 9).

For a layer ``l`` with activation ``f_l`` (a named endpoint of the model, e.g. ResNet-18's
``conv1``, ``layer0``..``layer4``), an image ``x`` and its adversarial version ``x'``:

* **max** = ``max_{c,i,j} |f_l(x')_{c,i,j} - f_l(x)_{c,i,j}|`` — the largest absolute difference of
  any single response of the layer (the paper's "maximum absolute difference of local responses");
* **total** = ``sum_{c,i,j} |f_l(x')_{c,i,j} - f_l(x)_{c,i,j}|`` — the sum of the absolute
  differences over the whole feature map (the paper's "total differences yielded by per pairs");
* **l2** = ``||f_l(x') - f_l(x)||_2`` — the Euclidean distance between the layer's activations,
  Xu et al. (2019)'s *activation bias* (Appendix 4, Figure A8).

Both are per image and then averaged over the images of a split (Table 1: "per image"). The paper
gives no formula; this reading reproduces the orders of magnitude of its Table 1 (Conv 1 on a
64×32×32 map: max 0.12, total 370, i.e. a mean |difference| of 0.006 per response). Models run
in inference mode (BatchNorm uses its moving statistics), so a batch's responses do not depend
on the other images in it. Splits (Tables 2, 4) keep only naturally correct images: "successful"
where the adversarial example is misclassified by the model analysed, "failed" where it is not.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from advtf.analysis.pairs import adversarial_pairs, success_on
from advtf.errors import UserError
from advtf.inputs import model_name
from advtf.models import endpoints, feature_extractor

STATS = ("max", "total", "l2")
SPLITS = ("all", "successful", "failed")
PAPER_LAYERS = ("conv1", "layer0", "layer1", "layer2", "layer3", "layer4")
_LOGITS = "__logits__"


def default_layers(model: keras.Model) -> list[str]:
    """The paper's ``conv1, layer0..layer4`` when the model has them (ResNet-18), else its modules ``m0..mK``."""
    names = list(endpoints(model))
    if all(n in names for n in PAPER_LAYERS):
        return list(PAPER_LAYERS)
    return [n for n in names if n.startswith("m") and n[1:].isdigit()]


def response_extractor(model: keras.Model, layers) -> keras.Model:
    """One model giving every layer's activation and the logits in one forward pass.

    Raises:
        UserError: an unknown layer (endpoint) name; the message lists the available ones.
    """
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
    p = Path(str(path)).resolve()
    return str(p.parent if p.name == "model.keras" else p)


def _empty_note(model: str, source: str, attack: str, row: dict, total: int) -> str | None:
    if row["n"] or row["split"] == "all":
        return None
    other = "failed" if row["split"] == "successful" else "successful"
    return (f"{model_name(model)}, {source} {attack} examples: no {row['split']} attacks among the {total} correctly "
            f"classified images (all of them {other}); the {row['split']} column is empty"
            + ("; a weaker attack (e.g. --also-attack fgsm) leaves failed ones" if row["split"] == "failed" else ""))


def response_sources(model_paths, models, adv_from=(), adv_models=()) -> list[tuple[str, object, list[int]]]:
    """The attacked models of :func:`response_tables`: ``(path, model, indices of the models analysed on its
    examples)`` for every source with at least one such model, in the order the tables attack them."""
    keys = [_key(p) for p in model_paths]
    transfer = [_key(p) for p in adv_from]
    sources = [(str(p), m) for p, m in zip(model_paths, models)]
    sources += [(str(p), m) for p, m in zip(adv_from, adv_models) if _key(p) not in keys]
    out = []
    for source_path, source_model in sources:
        targets = [k for k, p in enumerate(keys) if p == _key(source_path) or _key(source_path) in transfer]
        if targets:
            out.append((source_path, source_model, targets))
    return out


def response_tables(model_paths, models, splits, requests, *, layers, adv_from=(), adv_models=(), batch_size=100,
                    seed=0, progress=None, pairs=adversarial_pairs) -> tuple[list[dict], list[str]]:
    """Tables 1-5: rows per (model analysed, source of the adversarial examples, attack, split).

    Each request in ``requests`` attacks every model analysed (``source = "own"``) and every model
    in ``adv_from`` (loaded as ``adv_models``; ``source = "from <name>"``: transferred to every
    *other* model analysed). ``pairs`` gives each attack's batches (``adversarial_pairs``' signature;
    a job passes its stored, resumable passes). Returns the rows and notes explaining empty splits.
    """
    paths = [str(p) for p in model_paths]
    extractors = [response_extractor(m, layers) for m in models]
    keys = [_key(p) for p in paths]
    rows, notes = [], []
    for request in requests:
        for source_path, source_model, targets in response_sources(paths, models, adv_from, adv_models):
            acc = {k: Accumulator(list(layers)) for k in targets}
            for batch in pairs(source_model, splits, request, batch_size=batch_size, seed=seed,
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


def activation_map_pair(model_paths, models, splits, request, *, layer: str, channels: int = 8, batch_size=100,
                        seed: int = 0, pairs=adversarial_pairs) -> tuple[dict, dict]:
    """Figure 9/A9: ``layer``'s channel maps in every model for one natural/adversarial pair.

    The pair is the first correctly classified test image of the first batch whose attack on the
    first model succeeds (else the first image); every model sees the same ``x`` and ``x'``. Each
    model shows its ``channels`` most active channels on ``x``. ``pairs`` gives that batch (see
    :func:`response_tables`). Returns ``(maps, pair_info)``.
    """
    batches = pairs(models[0], splits, request, batch_size=batch_size, seed=seed)
    try:
        rows = next(iter(batches))
    finally:
        getattr(batches, "close", lambda: None)()
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


def epoch_row(run: str, epoch: int, table: list[dict], layers) -> dict:
    """Figures 5 and 9: the "all" row of one checkpoint's :func:`response_tables` as a point of its run's curve."""
    row = next(r for r in table if r["split"] == "all")
    return {"run": run, "epoch": epoch, "clean_accuracy": row["clean_accuracy"],
            "adversarial_accuracy": row["adversarial_accuracy"],
            **{f"{layer}_{s}": row[f"{layer}_{s}"] for layer in layers for s in STATS}}
