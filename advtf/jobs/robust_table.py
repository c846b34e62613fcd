"""``advtf robust-table``: accuracy of classifiers on test sets (Springer et al. 2021, Tables 1/2/5/6).

The accuracy matrix is :func:`advtf.analysis.robust_table.accuracy_matrix`'s; this job loads and
checks every classifier and test set before the first forward pass, counts batch by batch in
resumable chunks (``--resume``; one chunked pass per test set, shared by the workers of a cluster
run) and writes the table, its heat map and ``results.json``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

from advtf import validation as check
from advtf.analysis.robust_table import batch_hits
from advtf.data.rows import split_rows
from advtf.errors import UserError
from advtf.inputs import DataRequest, check_model_fits, load_named_models, model_fingerprint
from advtf.jobs import Request
from advtf.jobs.attack import chunk_size
from advtf.plots.transfer import accuracy_heatmap
from advtf.runs import write_json, write_table
from advtf.runs.chunks import ChunkStore, process_in_chunks
from advtf.runs.directory import BOOKKEEPING


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
    sizes = {t: int(s.sizes.get(split, 0)) for t, s in loaded.items()}
    for t, size in sizes.items():
        if not size:
            raise UserError(f"test set {t} is empty; pass a dataset with images in the evaluated split")
    # Per test set, hits per batch kept by resumable chunk (store keys testset<i>_00000 ...).
    correct = {c: {} for c in classifiers}
    for i, (t, stream) in enumerate(streams.items()):
        images = split_rows(stream, sizes[t], run.path / BOOKKEEPING / f"rows-{i}")

        def batch(index, images=images):
            return {"hits": np.array([batch_hits(models, images[index], images.labels[index])], np.int64)}

        store = ChunkStore(run.store, prefix=f"testset{i}")
        done = process_in_chunks(store, sizes[t], chunk_size=chunk_size(request.batch_size),
                                 batch_size=request.batch_size, batch_fn=batch, progress=progress,
                                 desc=f"{len(models)} classifiers on {t}", final=i == len(streams) - 1)
        hits = sum(np.asarray(chunk["hits"]).sum(axis=0) for chunk in store.iterate(done.chunks, ["hits"]))
        for c, h in zip(classifiers, hits):
            correct[c][t] = int(h)
    matrix = {"accuracy": {c: {t: correct[c][t] / sizes[t] for t in testsets} for c in classifiers}, "n": sizes}
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
