"""``advtf attack``: a saved adversarial dataset with per-example success and norms.

The attack loop is :func:`advtf.adversarial.attack_batches`; this job validates the request,
streams a split through it and writes the dataset, its tables and figures. The request checks
shared by every attacking job (:func:`check_threat`, :func:`check_attack_request`) live here.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from advtf import validation as check
from advtf.adversarial import ATTACK_TARGETS, AttackRequest, attack_batches, summarize
from advtf.attacks import TARGET_MODES, Threat, check_attack
from advtf.data import save_dataset
from advtf.data.rows import split_rows
from advtf.errors import UserError
from advtf.inputs import DataRequest, load_trained_model, model_fingerprint, model_name
from advtf.jobs import Request
from advtf.plots.adversarial import examples_figure
from advtf.plots.robustness import accuracy_vs_eps
from advtf.runs import write_json, write_table
from advtf.runs.chunks import ChunkStore, process_in_chunks
from advtf.runs.directory import BOOKKEEPING

# Per-example fields written to examples.csv (the images go into the saved dataset).
EXAMPLE_COLUMNS = ["index", "label", "target", "clean_prediction", "adversarial_prediction", "success",
                   "l0", "l1", "l2", "linf"]
# What a finished chunk keeps (in the resume store): the dataset's dtypes for its ELEMENT_KEYS, the
# others as the attack returned them (None).
CHUNK_KEYS = {"image": np.float32, "natural": np.float32, "label": np.int32, "target": np.int32, "success": bool,
              "clean_prediction": np.int32, "adversarial_prediction": np.int32, "clean_correct": None,
              "adversarial_correct": None, "l0": None, "l1": None, "l2": None, "linf": None}
ELEMENT_KEYS = ["image", "natural", "label", "target", "success", "clean_prediction", "adversarial_prediction"]
CHUNK_EXAMPLES = 2048  # examples per resumable chunk (rounded to whole batches)
AHEAD_CHUNKS = 1  # chunks the saved-dataset writer may hold unwritten besides the one read (paced_chunks)
STALL_SECONDS = 60.0  # a writer whose files stop growing this long is not waited for (it failed or ended)


def check_threat(attack: str, threat: Threat, options: dict | None = None) -> None:
    """UserError unless ``attack`` is registered, supports ``threat.norm`` and takes ``options``,
    the budget is finite and in range, and every numeric ``-O`` value is finite."""
    check.positive("--eps", threat.eps)
    check.count("--steps", threat.steps)
    check.count("--restarts", threat.restarts)
    if threat.step_size is not None:
        check.positive("--step-size", threat.step_size)
    check_attack(attack, threat.norm, options)
    for key, value in (options or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            check.finite(f"-O {key}", value)


def check_attack_request(request: AttackRequest) -> None:
    """Everything of ``request`` that can be checked before the dataset is loaded.

    The target class against the number of classes is checked after loading
    (:meth:`AttackRequest.check`).
    """
    check_threat(request.name, request.threat, request.options)
    check.choice("--attack-target", request.attack_target, ATTACK_TARGETS)
    check.choice("--target-mode", request.target_mode, TARGET_MODES)
    if request.target_class is not None:
        check.count("--target-class", request.target_class, minimum=0)
        if not request.targeted:
            raise UserError("--target-class only applies with --targeted")
    elif request.targeted and request.target_mode == "given":
        raise UserError("--target-mode given needs --target-class K")


@dataclasses.dataclass(frozen=True)
class AttackJobRequest(Request):
    """Options of ``advtf attack``."""

    model: str
    attack: AttackRequest
    data: DataRequest = DataRequest()
    split: str = "test"
    batch_size: int = 128
    figure_examples: int = 8
    jit: bool = False

    def __post_init__(self):
        check_attack_request(self.attack)
        check.choice("--split", self.split, ("test", "train"))
        check.count("--batch-size", self.batch_size)
        check.count("--figure-examples", self.figure_examples, minimum=0)
        check.seed(self.data.seed)

    def inputs(self) -> list[str]:
        return [self.model, self.data.dataset]


def accuracy_figure(model: str, clean: float, attacked: float, threat: Threat, path, *, num_classes: int,
                    title: str) -> None:
    """Accuracy at eps 0 (clean) and at the threat's eps (attacked), with chance marked."""
    accuracy_vs_eps({model_name(model): [(0.0, clean), (float(threat.eps), attacked)]}, path,
                    xlabel=f"{threat.norm} eps", chance=1.0 / num_classes, title=title)


def run(request: AttackJobRequest, run, *, progress=None, report=None) -> dict[str, Any]:
    """Attacks ``request.split`` of the dataset and writes the run directory.

    The run directory is itself a saved dataset (``<split>/`` in ``tf.data.Dataset.save`` format,
    ``manifest.json`` with a ``dataset`` section), so ``--dataset OUT`` works in every command;
    its elements hold ``image`` (adversarial), ``natural``, ``label``, ``target``, ``success``,
    ``clean_prediction`` and ``adversarial_prediction``. Also: ``results.json``, ``results.csv/.md``,
    ``examples.csv/.md`` (per example: predictions, success, norms), ``examples.png`` (the first
    ``figure_examples``) and ``accuracy.png`` (accuracy before and after).

    ``results.json`` keys: ``n``, ``clean_accuracy`` (before), ``adversarial_accuracy`` (after),
    ``robust_accuracy`` (correct before and after), ``success_rate`` (over attackable examples),
    ``success_rate_on_correct``, ``norms`` (l0/l1/l2/linf: mean, median, and over successful
    examples), ``attack``, ``threat``, ``options``, ``targeted``, ``dataset``, ``model``.
    """
    attack, data, split = request.attack, request.data, request.split
    splits = data.load()
    attack.check(splits.info.num_classes)
    source = splits.require(split)
    n = int(splits.sizes.get(split, 0))
    if not n:
        raise UserError(f"the {split} split of {data.dataset} is empty; nothing to attack")
    model = load_trained_model(request.model, splits.info.image_shape)
    fingerprint = model_fingerprint(request.model)
    run.record_inputs(dataset=splits.fingerprint, model=fingerprint)
    rows_on_disk = split_rows(source, n, run.path / BOOKKEEPING / "rows")
    store = ChunkStore(run.store)
    batch_size = request.batch_size

    def batch(index):
        x, y = rows_on_disk[index], rows_on_disk.labels[index]
        row = next(attack_batches(model, [(tf.constant(x), tf.constant(y))], attack,
                                  num_classes=splits.info.num_classes, seed=data.seed, jit=request.jit,
                                  start=int(index[0]) // batch_size))
        return {k: row[k] if dtype is None else row[k].astype(dtype) for k, dtype in CHUNK_KEYS.items()}

    done = process_in_chunks(store, n, chunk_size=chunk_size(batch_size), batch_size=batch_size, batch_fn=batch,
                             progress=progress, desc=f"{attack.name} on {split}")
    rows = {k: np.concatenate([np.asarray(c[k]) for c in store.iterate(done.chunks, [k])])
            for k in CHUNK_KEYS if k not in ("image", "natural")}
    summary = summarize(rows, targeted=attack.targeted)
    run.fresh(split)  # a kill during an earlier final save may have left it half-written
    section = save_dataset(
        run.path, {split: paced_chunks(store, done.chunks, ELEMENT_KEYS, run.path / split)}, kind="adversarial",
        info=splits.info,
        source={"dataset": data.dataset, "model": fingerprint, "split": split, "fingerprint": splits.fingerprint},
        parameters=attack.to_json(),
    )
    run.extra["dataset"] = section
    threat = attack.threat
    results = {**summary, **attack.to_json(), "split": split, "dataset": splits.info.name, "model": str(request.model)}
    write_json(run.path / "results.json", results)
    table = {"model": str(request.model), "dataset": splits.info.name, "attack": attack.name, "norm": threat.norm,
             "eps": threat.eps, "steps": threat.steps, "targeted": attack.targeted,
             "n": summary["n"], "clean_accuracy": summary["clean_accuracy"],
             "adversarial_accuracy": summary["adversarial_accuracy"], "success_rate": summary["success_rate"]}
    for norm in ("l0", "l1", "l2", "linf"):
        table[f"mean_{norm}"] = summary["norms"][norm]["mean"]
        table[f"median_{norm}"] = summary["norms"][norm]["median"]
    write_table(run.path, "results", [table])
    examples = ({"index": i, **{c: _scalar(rows[c][i]) for c in EXAMPLE_COLUMNS[1:]}} for i in range(summary["n"]))
    write_table(run.path, "examples", examples, EXAMPLE_COLUMNS)
    title = f"{attack.name} ({threat.norm}, eps={threat.eps:g})"
    first = store.load(0, list(CHUNK_KEYS))
    examples_figure(first, run.path / "examples.png", count=request.figure_examples, norm=threat.norm,
                    eps=threat.eps, class_names=splits.info.class_names, title=title)
    accuracy_figure(request.model, summary["clean_accuracy"], summary["adversarial_accuracy"], threat,
                    run.path / "accuracy.png", num_classes=splits.info.num_classes,
                    title=f"accuracy before and after {title}")
    return results


def paced_chunks(store: ChunkStore, count: int, keys: list[str], target: Path) -> tf.data.Dataset:
    """Finished chunks ``0 .. count-1`` as one unbatched dataset for ``Dataset.save`` into ``target``,
    yielding a chunk only once the saver has written all but ``AHEAD_CHUNKS`` chunks before it.

    ``tf.data.Dataset.save`` hands elements to a writer thread through an unbounded queue; when the
    disk is slower than the chunks are read, that queue held up to ~250 MiB at 200k examples, the
    whole growth of ``advtf attack``'s peak memory with the split. The bytes in ``target`` (the
    saver writes each element as one record of a fixed size, :func:`record_bytes`) tell how many
    elements are written, so the generator waits for them: memory stays bounded by two chunks (the
    one unwritten and the one in hand; or 1 MiB, whichever is more).
    """
    first = store.load(0, keys)
    signature = {k: tf.TensorSpec((None, *first[k].shape[1:]), tf.as_dtype(first[k].dtype)) for k in keys}
    element = {k: tf.TensorSpec(s.shape[1:], s.dtype) for k, s in signature.items()}
    per_element = record_bytes(element) if all(s.shape.is_fully_defined() for s in element.values()) else 0
    del first

    def generate():
        yielded = 0
        for chunk in store.iterate(count, keys):
            arrays = {k: np.asarray(v) for k, v in chunk.items()}
            del chunk
            size = len(arrays[keys[0]])
            # The writer's file buffer holds a few KiB back: never ask for its last MiB.
            _wait_written(target, yielded * per_element - max(AHEAD_CHUNKS * size * per_element, 1 << 20))
            yield arrays
            yielded += size

    return tf.data.Dataset.from_generator(generate, output_signature=signature).unbatch()


def record_bytes(element: dict[str, tf.TensorSpec]) -> int:
    """Bytes ``Dataset.save`` (no compression) writes per element of fixed-shape ``element``: the
    difference between saving two and one zero elements (measured, the format being TensorFlow's)."""
    sizes = []
    with tempfile.TemporaryDirectory(prefix="advtf-record-") as tmp:
        for n in (1, 2):
            ds = tf.data.Dataset.from_tensors({k: tf.zeros(s.shape, s.dtype) for k, s in element.items()}).repeat(n)
            ds.save(os.path.join(tmp, str(n)), shard_func=_one_shard)
            sizes.append(_tree_bytes(Path(tmp, str(n)), "snapshot"))
    return max(0, sizes[1] - sizes[0])


@tf.autograph.experimental.do_not_convert
def _one_shard(element) -> tf.Tensor:
    return tf.constant(0, tf.int64)


def _tree_bytes(root: Path, suffix: str = "snapshot") -> int:
    """Total size of the ``*.<suffix>`` files under ``root`` (0 while it does not exist)."""
    total = 0
    for parent, _, files in os.walk(root):
        total += sum(os.stat(os.path.join(parent, f)).st_size for f in files if f.endswith("." + suffix))
    return total


def _wait_written(target: Path, want: int) -> None:
    """Sleeps until the snapshot files under ``target`` hold ``want`` bytes, or they stop growing."""
    last, since = -1, time.monotonic()
    while want > 0:
        size = _tree_bytes(target)
        if size >= want:
            return
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since > STALL_SECONDS:
            return  # the writer failed or stopped: its error surfaces through Dataset.save
        time.sleep(0.02)


def chunk_size(batch_size: int) -> int:
    """Examples per resumable chunk: whole batches, about CHUNK_EXAMPLES, so batches (and their seeds)
    are those of one uninterrupted pass over the split."""
    return batch_size * max(1, round(CHUNK_EXAMPLES / batch_size))


def _scalar(v):
    v = v.item() if hasattr(v, "item") else v
    return round(v, 6) if isinstance(v, float) else v
