"""A complete ``advtf attack`` run: a saved adversarial dataset, results and a figure."""

from __future__ import annotations

import numpy as np

from advtf.adversarial import AttackRequest, attack_batches, summarize
from advtf.inputs import DataRequest, load_trained_model, model_fingerprint
from advtf.runs import RunDir, write_json, write_table

# Per-example fields written to examples.csv (the images go into the saved dataset).
EXAMPLE_COLUMNS = ["index", "label", "target", "clean_prediction", "adversarial_prediction", "success",
                   "l0", "l1", "l2", "linf"]


def run_attack_job(model_path, data: DataRequest, request: AttackRequest, run: RunDir, *, split: str = "test",
                   batch_size: int = 128, jit: bool = False, progress=None, figure_examples: int = 8) -> dict:
    """Attacks ``split`` of ``data`` with ``request`` and writes the run directory.

    The run directory is itself a saved dataset (``<split>/`` in ``tf.data.Dataset.save`` format,
    ``manifest.json`` with a ``dataset`` section), so ``--dataset OUT`` works in every command;
    its elements hold ``image`` (adversarial), ``natural``, ``label``, ``target``, ``success``,
    ``clean_prediction`` and ``adversarial_prediction``. Also: ``results.json``, ``results.csv/.md``,
    ``examples.csv/.md`` (per example: predictions, success, norms) and ``examples.png``.

    ``results.json`` keys: ``n``, ``clean_accuracy`` (before), ``adversarial_accuracy`` (after),
    ``robust_accuracy`` (correct before and after), ``success_rate`` (over attackable examples),
    ``success_rate_on_correct``, ``norms`` (l0/l1/l2/linf: mean, median, and over successful
    examples), ``attack``, ``threat``, ``options``, ``targeted``, ``dataset``, ``model``.
    """
    import tensorflow as tf

    from advtf.data import make_batches
    from advtf.data.saved import save_dataset
    from advtf.plots.adversarial import examples_figure

    splits = data.load()
    request.check(splits.info.num_classes)
    source = splits.require(split)
    model = load_trained_model(model_path, splits.info.image_shape)
    run.inputs.update(dataset=splits.fingerprint, model=model_fingerprint(model_path))
    bar = progress(total=splits.sizes.get(split), desc=f"{request.name} on {split}", unit="img") if progress else None
    chunks = list(attack_batches(model, make_batches(source, batch_size, training=False), request,
                                 num_classes=splits.info.num_classes, seed=data.seed, jit=jit, progress=bar))
    if bar is not None:
        bar.close()
    if not chunks:
        from advtf.errors import UserError

        raise UserError(f"the {split} split of {data.dataset} is empty; nothing to attack")
    rows = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    summary = summarize(rows, targeted=request.targeted)
    elements = {
        "image": rows["image"].astype(np.float32), "natural": rows["natural"].astype(np.float32),
        "label": rows["label"].astype(np.int32), "target": rows["target"].astype(np.int32),
        "success": rows["success"].astype(bool),
        "clean_prediction": rows["clean_prediction"].astype(np.int32),
        "adversarial_prediction": rows["adversarial_prediction"].astype(np.int32),
    }
    section = save_dataset(
        run.path, {split: tf.data.Dataset.from_tensor_slices(elements)}, kind="adversarial", info=splits.info,
        source={"dataset": data.dataset, "model": model_fingerprint(model_path), "split": split,
                "fingerprint": splits.fingerprint},
        parameters=request.to_json(),
    )
    run.extra["dataset"] = section
    results = {**summary, **request.to_json(), "split": split, "dataset": splits.info.name, "model": str(model_path)}
    write_json(run.path / "results.json", results)
    table = {"model": str(model_path), "dataset": splits.info.name, "attack": request.name, "norm": request.threat.norm,
             "eps": request.threat.eps, "steps": request.threat.steps, "targeted": request.targeted,
             "n": summary["n"], "clean_accuracy": summary["clean_accuracy"],
             "adversarial_accuracy": summary["adversarial_accuracy"], "success_rate": summary["success_rate"]}
    for norm in ("l0", "l1", "l2", "linf"):
        table[f"mean_{norm}"] = summary["norms"][norm]["mean"]
        table[f"median_{norm}"] = summary["norms"][norm]["median"]
    write_table(run.path, "results", [table])
    examples = [{"index": i, **{c: _scalar(rows[c][i]) for c in EXAMPLE_COLUMNS[1:]}} for i in range(summary["n"])]
    write_table(run.path, "examples", examples, EXAMPLE_COLUMNS)
    examples_figure(rows, run.path / "examples.png", count=figure_examples, norm=request.threat.norm,
                    eps=request.threat.eps, class_names=splits.info.class_names,
                    title=f"{request.name} ({request.threat.norm}, eps={request.threat.eps:g})")
    return results


def _scalar(v):
    v = v.item() if hasattr(v, "item") else v
    return round(v, 6) if isinstance(v, float) else v
