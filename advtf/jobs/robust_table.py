"""``advtf robust-table``: accuracy of classifiers on test sets (Springer et al. 2021, Tables 1/2/5/6).

The accuracy matrix is :func:`advtf.analysis.robust_table.accuracy_matrix`; this job loads and
checks every classifier and test set before the first forward pass and writes the table,
its heat map and ``results.json``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import tensorflow as tf

from advtf import validation as check
from advtf.analysis.robust_table import accuracy_matrix
from advtf.data import make_batches
from advtf.errors import UserError
from advtf.inputs import DataRequest, check_model_fits, load_named_models, model_fingerprint
from advtf.jobs import Request
from advtf.plots.transfer import accuracy_heatmap
from advtf.runs import write_json, write_table


@dataclasses.dataclass(frozen=True)
class RobustTableRequest(Request):
    """Options of ``advtf robust-table``: ``{name: model}`` rows and ``{name: dataset}`` columns, in order.

    ``data`` carries the shared ``--data-dir``, subsets and ``--seed`` (its ``dataset`` is unused:
    every column names its own).
    """

    classifiers: dict
    testsets: dict
    data: DataRequest = DataRequest()
    split: str = "test"
    batch_size: int = 256

    def __post_init__(self):
        if not self.classifiers:
            raise UserError("robust-table needs a --classifier NAME=MODEL")
        if not self.testsets:
            raise UserError("robust-table needs a --testset NAME=DATASET")
        if "classifier" in self.testsets:
            raise UserError("--testset classifier: that name is the table's first column; choose another name")
        check.choice("--split", self.split, ("test", "train"))
        check.count("--batch-size", self.batch_size)
        check.seed(self.data.seed)

    def inputs(self) -> list[str]:
        return [*map(str, self.classifiers.values()), *map(str, self.testsets.values())]


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


def run(request: RobustTableRequest, run, *, progress=None, report=None) -> dict[str, Any]:
    """Evaluates every classifier on ``split`` of every test set and writes the run directory.

    The same ``--seed`` picks the same positions in every test set of equal size. Writes
    ``accuracy.csv/.md`` (rows classifiers, columns test sets), ``accuracy.png`` and
    ``results.json`` with keys ``accuracy`` ({classifier: {testset: value}}), ``n`` (per test set),
    ``num_classes``, ``chance`` (1/K), ``split`` and ``inputs`` (classifier and test-set paths).
    """
    classifiers, testsets, split = request.classifiers, request.testsets, request.split
    loaded = {t: dataclasses.replace(request.data, dataset=d).load() for t, d in testsets.items()}
    streams = {t: own_split(s, split, t) for t, s in loaded.items()}
    models = load_named_models(classifiers, "--classifier")
    for c, model in models.items():
        for t, splits in loaded.items():
            check_model_fits(model, splits.info, what=f"--classifier {c} on --testset {t}")
    num_classes = next(iter(loaded.values())).info.num_classes
    run.record_inputs(classifiers={c: model_fingerprint(p) for c, p in classifiers.items()},
                      testsets={t: s.fingerprint for t, s in loaded.items()})
    total = sum(s.sizes.get(split, 0) for s in loaded.values())
    bar = progress(total=total, desc=f"{len(models)} classifiers", unit="img") if progress else None
    matrix = accuracy_matrix(models, {t: make_batches(ds, request.batch_size, training=False)
                                      for t, ds in streams.items()}, progress=bar)
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
