"""Accuracy of several classifiers on several test sets (Springer et al. 2021, Tables 1/2/5/6).

Rows are classifiers (standard, robust, zero-robust, negative-robust, ...), columns test sets
(the original test split and robustified sets R_ε). Each test set is read once; every batch
goes through every classifier in one compiled forward pass.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from advtf.attacks.losses import predictions
from advtf.errors import UserError
from advtf.inputs import DataRequest, check_model_fits, load_named_models, model_fingerprint
from advtf.runs import RunDir, write_json, write_table


@tf.function(reduce_retracing=True)
def predict_classes(model, x):
    """The class ``model`` predicts for each image of ``x`` (B,), compiled once per model."""
    return predictions(model(x, training=False))


def count_hits(predicted: np.ndarray, reference: np.ndarray, *, equal: bool = True) -> int:
    """How many predictions equal (``equal=True``) or differ from ``reference``."""
    same = np.asarray(predicted) == np.asarray(reference)
    return int(np.sum(same if equal else ~same))


def accuracy_matrix(classifiers: dict, testsets: dict[str, tf.data.Dataset], *, progress=None) -> dict:
    """Accuracy of every classifier on every batched ``(x, y)`` test set.

    Returns:
        ``{"accuracy": {classifier: {testset: float}}, "n": {testset: int}}``, in the given orders.

    Raises:
        UserError: an empty test set.
    """
    correct = {c: dict.fromkeys(testsets, 0) for c in classifiers}
    n = dict.fromkeys(testsets, 0)
    for t, batches in testsets.items():
        for x, y in batches:
            y = y.numpy()
            for c, model in classifiers.items():
                correct[c][t] += count_hits(predict_classes(model, x).numpy(), y)
            n[t] += len(y)
            if progress is not None:
                progress.update(len(y))
        if not n[t]:
            raise UserError(f"test set {t} is empty; pass a dataset with images in the evaluated split")
    return {"accuracy": {c: {t: correct[c][t] / n[t] for t in testsets} for c in classifiers}, "n": n}


def own_split(splits, split: str, name: str) -> tf.data.Dataset:
    """``split`` of a loaded dataset, refusing one a saved set only borrows from its source.

    A robustified set without its own test split would otherwise be evaluated on the original
    test images and look like R_ε in the table.
    """
    borrowed = splits.fingerprint.get("filled_from", {}).get("splits", [])
    if split in borrowed:
        raise UserError(f"--testset {name}: saved dataset {splits.info.source} has no {split} split of its own "
                        f"(it would come from its source); pass --split with a split it holds")
    return splits.require(split)


def run_robust_table(classifiers: dict[str, str], testsets: dict[str, str], data: DataRequest, run: RunDir, *,
                     split: str = "test", batch_size: int = 256, progress=None) -> dict:
    """Evaluates every classifier on ``split`` of every test set and writes the run directory.

    ``classifiers``: ``{name: .keras file or train run dir}``; ``testsets``: ``{name: registered
    dataset or saved-dataset directory}``; ``data`` carries the shared ``--data-dir``, subsets and
    ``--seed`` (the same seed picks the same positions in every test set of equal size).
    Everything is loaded and checked before the first forward pass.

    Writes ``accuracy.csv/.md`` (rows classifiers, columns test sets), ``accuracy.png`` and
    ``results.json`` with keys ``accuracy`` ({classifier: {testset: value}}), ``n`` (per test set),
    ``num_classes``, ``chance`` (1/K), ``split`` and ``inputs`` (classifier and test-set paths).
    """
    from advtf.data import make_batches
    from advtf.plots.transfer import accuracy_heatmap

    if "classifier" in testsets:
        raise UserError("--testset classifier: that name is the table's first column; choose another name")
    loaded = {t: dataclasses.replace(data, dataset=d).load() for t, d in testsets.items()}
    streams = {t: own_split(s, split, t) for t, s in loaded.items()}
    models = load_named_models(classifiers, "--classifier")
    for c, model in models.items():
        for t, splits in loaded.items():
            check_model_fits(model, splits.info, what=f"--classifier {c} on --testset {t}")
    num_classes = next(iter(loaded.values())).info.num_classes
    run.inputs.update(classifiers={c: model_fingerprint(p) for c, p in classifiers.items()},
                      testsets={t: s.fingerprint for t, s in loaded.items()})
    total = sum(s.sizes.get(split, 0) for s in loaded.values())
    bar = progress(total=total, desc=f"{len(models)} classifiers", unit="img") if progress else None
    matrix = accuracy_matrix(models, {t: make_batches(ds, batch_size, training=False) for t, ds in streams.items()},
                             progress=bar)
    if bar is not None:
        bar.close()
    chance = 1.0 / num_classes
    results = {**matrix, "num_classes": num_classes, "chance": chance, "split": split,
               "inputs": {"classifiers": {c: str(p) for c, p in classifiers.items()},
                          "testsets": {t: str(d) for t, d in testsets.items()}}}
    write_json(run.path / "results.json", results)
    rows = [{"classifier": c, **accs} for c, accs in matrix["accuracy"].items()]
    write_table(run.path, "accuracy", rows, ["classifier", *testsets])
    accuracy_heatmap(matrix["accuracy"], run.path / "accuracy.png", chance=chance,
                     title=f"accuracy on the {split} split")
    return results
