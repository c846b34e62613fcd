"""Block-wise retraining (Siddiqui & Breuel 2021, Sec. 3-5): one cell of the protocol.

A pretrained model is split into units -- the modules m0..mK of
:func:`advtf.models.module_layers` (split at down-sampling; the last module is the head), or its
weighted layers in graph order (:func:`layer_units`, the per-layer analysis of Sec. 5.1). A cell
reinitialises a set of units with fresh weights, freezes everything else (``layer.trainable =
False``: excluded from the optimizer, and Keras 3 runs a frozen BatchNormalization layer in
inference mode, so its moving statistics stay the pretrained ones), retrains with the ordinary
training loop (:func:`advtf.training.loop.train`) and measures clean and robust accuracy (PGD on
the true label). :func:`reinit_cell` is the no-training variant of Sec. 5.3 (Zhang et al.,
"Are all layers created equal?").

Cut-off convention (the paper's "retrain all the layers before or after the cut-off point"):
``before k`` retrains units 0..k, ``after k`` retrains units k..K; the cut-off unit itself is
retrained in both, so ``before K`` and ``after 0`` both retrain the whole model.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from advtf.data import make_batches
from advtf.errors import UserError
from advtf.evaluation import evaluate
from advtf.inputs import load_trained_model
from advtf.models import count_params, module_layers
from advtf.models.saving import load_run_weights
from advtf.training.loop import train

PARTS = ("before", "after")
INITIAL_WEIGHTS = "initial.weights.h5"  # written by `advtf train` before its first step
# Siddiqui & Breuel 2021 (Sec. 3.2) train adversarially with PGD at eps 8/255 and 2/255 per
# iteration for 7 iterations: a step of eps/4 (not Madry et al.'s 2.5 * eps / steps).
STEP_FRACTION = 0.25


def retraining_threat(threat):
    """``threat`` with Siddiqui & Breuel's step size eps/4 unless a step size was given."""
    if threat.step_size is not None:
        return threat
    return dataclasses.replace(threat, step_size=STEP_FRACTION * float(threat.eps))


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which units a cell reinitialises (and retrains); all others keep their weights, frozen.

    Attributes:
        name: the cell's name and subdirectory (``before-2``, ``layers-after-5``, ``m0+m3``, ...).
        unit: ``"modules"`` or ``"layers"``.
        indices: the selected units, ascending.
        part, cutoff: set for single cut-off cells.
    """

    name: str
    unit: str
    indices: tuple[int, ...]
    part: str | None = None
    cutoff: int | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"indices": list(self.indices)}


def layer_units(model: keras.Model) -> list[list[keras.layers.Layer]]:
    """The model's weighted layers in graph order, each BatchNormalization joined to the layer it normalises.

    A unit is a Conv/Dense layer (anything with trainable weights that is not BatchNormalization)
    plus the BatchNormalization layers whose input it produces; Fig. 5's per-layer cut-off
    moves through these units. Layers of no module (the input normalisation) are left out.
    """
    in_modules = {id(layer) for module in module_layers(model) for layer in module}
    units: list[list[keras.layers.Layer]] = []
    owner: dict[int, int] = {}
    for layer in model.layers:
        if id(layer) not in in_modules or not layer.trainable_weights:
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            parents = [p.operation for node in layer._inbound_nodes for p in node.parent_nodes]
            index = next((owner[id(p)] for p in parents if id(p) in owner), len(units) - 1)
            if index < 0:
                raise UserError(f"{model.name!r}: BatchNormalization {layer.name!r} precedes every weighted layer")
            units[index].append(layer)
        else:
            owner[id(layer)] = len(units)
            units.append([layer])
    return units


def units_of(model: keras.Model, unit: str) -> list[list[keras.layers.Layer]]:
    """Modules (``"modules"``) or layer units (``"layers"``) of an advtf model.

    Raises:
        UserError: a model without module endpoints (not built by advtf).
    """
    if unit == "modules":
        return module_layers(model)
    if unit == "layers":
        return layer_units(model)
    raise ValueError(f"unit must be modules or layers, got {unit!r}")


def unit_names(model: keras.Model, unit: str) -> list[str]:
    """``m0..mK`` for modules, the weighted layer's name for layer units."""
    units = units_of(model, unit)
    return [f"m{i}" for i in range(len(units))] if unit == "modules" else [u[0].name for u in units]


def cutoff_selection(part: str, cutoff: int, count: int, unit: str = "modules") -> Selection:
    """``before k``: units 0..k; ``after k``: units k..count-1 (UserError outside 0..count-1)."""
    if part not in PARTS:
        raise UserError(f"--part must be before or after (got {part!r})")
    if not 0 <= cutoff < count:
        what = "modules m0..m" if unit == "modules" else "weighted layers 0.."
        raise UserError(f"--cutoff {cutoff} is outside 0..{count - 1}; the model has {count} {unit} "
                        f"({what}{count - 1})")
    indices = tuple(range(cutoff + 1)) if part == "before" else tuple(range(cutoff, count))
    prefix = "" if unit == "modules" else "layers-"
    return Selection(f"{prefix}{part}-{cutoff}", unit, indices, part, cutoff)


def subset_selection(indices, unit: str = "modules", names: list[str] | None = None) -> Selection:
    """A cell retraining exactly ``indices`` (``m0+m2+m3``; ``none`` for the empty set)."""
    indices = tuple(sorted(set(int(i) for i in indices)))
    if unit == "modules":
        name = "+".join(f"m{i}" for i in indices) or "none"
    else:
        name = "layers-" + ("+".join(names[i] if names else str(i) for i in indices) or "none")
    return Selection(name, unit, indices)


def parse_modules(text: str, count: int) -> tuple[int, ...]:
    """Module indices of ``"0,2,3"`` or ``"m0,m2"`` (UserError on unknown or empty entries)."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    indices, bad = [], []
    for item in items:
        digits = item[1:] if item.lower().startswith("m") else item
        if digits.isdigit() and int(digits) < count:
            indices.append(int(digits))
        else:
            bad.append(item)
    if bad or not items:
        raise UserError(f"--modules {text!r}: unknown module(s) {', '.join(bad) or '(none given)'}; "
                        f"the model has m0..m{count - 1} (write e.g. 0,2,3 or m0,m2)")
    return tuple(sorted(set(indices)))


def _reseeded(config, counter: list[int], seed: int):
    """``config`` with every initializer's seed replaced by one drawn from ``seed`` (fresh, reproducible)."""
    if isinstance(config, dict):
        out = {k: _reseeded(v, counter, seed) for k, v in config.items()}
        if "initializers" in str(config.get("module", "")) and isinstance(out.get("config"), dict) \
                and "seed" in out["config"]:
            counter[0] += 1
            out["config"] = {**out["config"], "seed": 7_919 * (seed + 1) + counter[0]}
        return out
    if isinstance(config, list):
        return [_reseeded(v, counter, seed) for v in config]
    return config


def fresh_model(model: keras.Model, seed: int) -> keras.Model:
    """A clone of ``model`` built from its config with freshly drawn weights.

    advtf models carry seeded initializers in their config (so a plain clone would reproduce
    the pretrained run's own initial weights); their seeds are replaced by ones derived from
    ``seed``, so the fresh weights depend on ``seed`` only.
    """
    counter = [0]

    def clone(layer):
        return layer.__class__.from_config(_reseeded(layer.get_config(), counter, seed))

    keras.utils.set_random_seed(seed)  # unseeded initializers, if any
    return keras.models.clone_model(model, clone_function=clone)


def _initializer_seeds(config) -> list:
    """Seeds of every random initializer in a (layer or model) config, ``None`` for unseeded ones."""
    if isinstance(config, dict):
        own = [config["config"]["seed"]] if "initializers" in str(config.get("module", "")) \
            and isinstance(config.get("config"), dict) and "seed" in config["config"] else []
        return own + [s for v in config.values() for s in _initializer_seeds(v)]
    if isinstance(config, list):
        return [s for v in config for s in _initializer_seeds(v)]
    return []


def initial_model(model: keras.Model, pretrained: str | Path | None, seed: int) -> tuple[keras.Model, str]:
    """The model at its initialisation, and which one it is.

    ``saved``: the ``initial.weights.h5`` that ``advtf train`` writes next to its model.
    ``config``: every initializer in the model's config is seeded (advtf's ``create_model(seed=...)``),
    so a plain clone draws exactly the weights the run started from.
    ``fresh``: otherwise, :func:`fresh_model` with ``seed``.
    """
    seeds = _initializer_seeds(model.get_config())
    if seeds and all(s is not None for s in seeds):
        fresh, source = keras.models.clone_model(model), "config"
    else:
        fresh, source = fresh_model(model, seed), "fresh"
    if pretrained is not None:
        path = Path(pretrained)
        run_dir = path if path.is_dir() else path.parent
        if (run_dir / INITIAL_WEIGHTS).is_file():
            load_run_weights(fresh, run_dir, INITIAL_WEIGHTS)  # stays inside the run directory
            return fresh, "saved"
    return fresh, source


def reinitialise(model: keras.Model, source: keras.Model, units: list[list[keras.layers.Layer]],
                 indices, *, freeze: bool = True) -> int:
    """Copies ``source``'s weights into the layers of the selected units and freezes all other layers.

    Every weight of a selected layer is replaced (BatchNormalization moving statistics too);
    layers of other units, and layers of no unit (input normalisation), keep theirs and get
    ``trainable = False`` when ``freeze``. Returns the number of reinitialised weight values.
    """
    selected = {id(layer) for i in indices for layer in units[i]}
    copied = 0
    for layer in model.layers:
        if id(layer) in selected:
            weights = source.get_layer(layer.name).get_weights()
            layer.set_weights(weights)
            copied += sum(int(np.prod(w.shape)) for w in weights)
            layer.trainable = True
        elif freeze and not isinstance(layer, keras.layers.InputLayer):
            layer.trainable = False
    return copied


def prepare_model(pretrained: str | Path, selection: Selection, seed: int, image_shape=None) -> keras.Model:
    """The pretrained model with ``selection``'s units freshly reinitialised and the rest frozen."""
    model = load_trained_model(pretrained, image_shape)
    reinitialise(model, fresh_model(model, seed), units_of(model, selection.unit), selection.indices)
    return model


def _accuracy(model, data, eval_threat, batch_size, strategy, seed, progress, desc) -> dict:
    bar = progress(total=None, desc=desc) if progress else None
    out = evaluate(model, make_batches(data.test, batch_size, training=False), threat=eval_threat,
                   strategy=strategy, seed=seed, progress=bar)
    if bar is not None:
        bar.close()
    return {"clean_accuracy": out["clean_accuracy"], "robust_accuracy": out["robust_accuracy"], "n_test": out["n"]}


def evaluate_pretrained(pretrained, data, eval_threat, *, batch_size: int, strategy, seed: int,
                        progress=None) -> dict:
    """Clean and robust accuracy of the pretrained model itself ("only pretrained")."""
    with strategy.scope():
        model = load_trained_model(pretrained, data.info.image_shape)
    return _accuracy(model, data, eval_threat, batch_size, strategy, seed, progress, "pretrained (PGD)")


def retrain_cell(pretrained, selection: Selection, data, config, adversarial, eval_threat, workdir: Path, *,
                 strategy, progress=None, save_model: bool = False) -> dict:
    """Reinitialises ``selection``, retrains it (the rest frozen) and evaluates; writes ``workdir``.

    ``workdir`` gets ``history.csv`` (and ``model.keras`` with ``save_model``); the loop's
    per-epoch checkpoints make an interrupted cell resume at its last finished epoch and are
    removed when the cell is done. Returns the cell's results (accuracies, counts, seconds).
    """
    start = time.time()
    workdir = Path(workdir)
    if not selection.indices:  # the empty selection is the pretrained model itself
        raise ValueError("a retrained cell needs at least one unit")

    def build():
        return prepare_model(pretrained, selection, config.seed, data.info.image_shape)

    result = train(build, data, config, adversarial, workdir=workdir, strategy=strategy, progress=progress)
    model = result.model
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    out = _accuracy(model, data, eval_threat, config.batch_size, strategy, config.seed, progress,
                    f"{selection.name} (PGD)")
    if save_model:
        for layer in model.layers:  # saved models load trainable, like any `advtf train` model
            layer.trainable = True
        model.save(workdir / "model.keras")
    shutil.rmtree(workdir / "resume", ignore_errors=True)  # the cell's checkpoints: it is finished
    shutil.rmtree(workdir / "logs", ignore_errors=True)
    return {**out, "trainable_params": trainable, "total_params": count_params(model),
            "epochs": result.epochs_run, "seconds": round(time.time() - start, 2)}


def reinit_cell(pretrained, selection: Selection, data, eval_threat, *, batch_size: int, strategy, seed: int,
                initial: keras.Model, progress=None) -> dict:
    """Replaces ``selection``'s units by their ``initial`` weights, no training, and evaluates."""
    start = time.time()
    with strategy.scope():
        model = load_trained_model(pretrained, data.info.image_shape)
    copied = reinitialise(model, initial, units_of(model, selection.unit), selection.indices, freeze=False)
    out = _accuracy(model, data, eval_threat, batch_size, strategy, seed, progress, f"{selection.name} (PGD)")
    return {**out, "reinitialised_params": copied, "epochs": 0, "seconds": round(time.time() - start, 2)}
