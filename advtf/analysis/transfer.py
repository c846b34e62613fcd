"""Transfer attacks from sources of increasing robustness to victim models (Springer et al. 2021, Sec. 5.2).

For each source (keyed by its robustness parameter ε) adversarial examples of the test split
are generated with the compiled attack machinery and, batch by batch, fed to every victim.
Untargeted: the victims' error rate on the true labels (Figure 5). Targeted: the fraction of
victim predictions equal to the target (Figure 6); targets are random classes other than the
label, drawn from the seed and the batch position only, so every source attacks the same
target for the same image.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advtf.adversarial import AttackRequest, attack_batches
from advtf.analysis.robust_table import count_hits, predict_classes
from advtf.attacks import parse_number
from advtf.errors import UserError
from advtf.inputs import DataRequest, check_model_fits, load_named_models, model_fingerprint
from advtf.runs import RunDir, write_json, write_table

RESERVED = ("source", "eps", "white_box")  # columns of transfer.csv besides the victims


def metric_name(targeted: bool) -> str:
    return "target_rate" if targeted else "error_rate"


def order_sources(sources: dict[str, str]) -> list[tuple[str, float, str]]:
    """``(name, eps, model)`` of ``{eps text: model}``, sorted by ε (``0``, ``1/16``, ``0.5`` ...).

    Raises:
        UserError: a key that is not a number, a negative one, or two keys of the same value.
    """
    parsed = [(name, parse_number(name, what="--source robustness parameter"), path) for name, path in sources.items()]
    seen: dict[float, str] = {}
    for name, eps, _ in parsed:
        if eps < 0:
            raise UserError(f"--source {name}: a robustness parameter is >= 0; write e.g. --source 0=runs/std")
        if eps in seen:
            raise UserError(f"--source {seen[eps]} and --source {name} have the same eps; give each source once")
        seen[eps] = name
    return sorted(parsed, key=lambda item: item[1])


def transfer_matrix(sources: dict, victims: dict, batches: tf.data.Dataset, request: AttackRequest, *,
                    num_classes: int, seed: int = 0, jit: bool = False, progress=None) -> dict:
    """Attacks ``batches`` with every source and evaluates every victim on each adversarial batch.

    Returns:
        ``metric`` ("error_rate" untargeted, "target_rate" targeted), ``table`` ({source: {victim:
        value}}), ``white_box`` ({source: value}: the same metric on the source itself), ``clean``
        ({victim: value} on the natural images, against the same labels or targets), ``n`` and
        ``targets`` ({source: (n,) int array}: the classes attacked towards, or the true labels).

    Raises:
        UserError: an empty dataset.
    """
    targeted = request.targeted
    hits = {s: dict.fromkeys(victims, 0) for s in sources}
    white_box = dict.fromkeys(sources, 0)
    clean = dict.fromkeys(victims, 0)
    targets: dict[str, np.ndarray] = {}
    n = 0
    for k, (s, model) in enumerate(sources.items()):
        n, chunks = 0, []
        for row in attack_batches(model, batches, request, num_classes=num_classes, seed=seed, jit=jit,
                                  progress=progress):
            reference = row["target"] if targeted else row["label"]
            white_box[s] += count_hits(row["adversarial_prediction"], reference, equal=targeted)
            images = tf.convert_to_tensor(row["image"])
            for v, victim in victims.items():
                hits[s][v] += count_hits(predict_classes(victim, images).numpy(), reference, equal=targeted)
                if k == 0:  # the natural images are the same for every source
                    natural = predict_classes(victim, tf.convert_to_tensor(row["natural"])).numpy()
                    clean[v] += count_hits(natural, reference, equal=targeted)
            n += len(reference)
            chunks.append(reference)
        if not n:
            raise UserError("the dataset's test split is empty; nothing to attack")
        targets[s] = np.concatenate(chunks)
        if targeted and k and not np.array_equal(targets[s], targets[next(iter(sources))]):
            raise RuntimeError("targets differ between sources; the batches are not in a fixed order")
    return {"metric": metric_name(targeted),
            "table": {s: {v: hits[s][v] / n for v in victims} for s in sources},
            "white_box": {s: white_box[s] / n for s in sources},
            "clean": {v: clean[v] / n for v in victims}, "n": n, "targets": targets}


def run_transfer(sources: dict[str, str], victims: dict[str, str], data: DataRequest, request: AttackRequest,
                 run: RunDir, *, batch_size: int = 128, jit: bool = False, progress=None) -> dict:
    """Transfer attacks of the test split from every source to every victim; writes the run directory.

    ``sources``: ``{ε text: model}`` (ordered by ε in every output); ``victims``: ``{name: model}``.
    Everything is loaded and checked before the first attack.

    Writes ``transfer.csv/.md`` (sources × victims, plus each source's white-box value),
    ``transfer.png`` (metric against source ε, one line per victim) and ``results.json`` with keys
    ``metric``, ``table``, ``white_box``, ``clean``, ``n``, ``sources`` (name, eps, model, by ε),
    ``x_axis``, ``dataset``, ``inputs`` and the attack's ``attack``, ``threat``, ``options``,
    ``targeted``, ``target_mode``, ``attack_target``.
    """
    from advtf.data import make_batches
    from advtf.plots.transfer import transfer_curves

    ordered = order_sources(sources)
    clash = [v for v in victims if v in RESERVED]
    if clash:
        raise UserError(f"--victim {clash[0]}: that name is a column of transfer.csv; choose another name")
    splits = data.load()
    info = splits.info
    request.check(info.num_classes)
    if request.targeted and request.target_mode == "given":
        raise UserError("transfer-eval needs targets other than the label; drop --target-class "
                        "(--target-mode random or next)")
    test = splits.require("test")
    source_models = load_named_models({name: path for name, _, path in ordered}, "--source")
    victim_models = load_named_models(victims, "--victim")
    for option, models in (("--source", source_models), ("--victim", victim_models)):
        for name, model in models.items():
            check_model_fits(model, info, what=f"{option} {name}")
    run.inputs.update(dataset=splits.fingerprint,
                      sources={name: model_fingerprint(path) for name, _, path in ordered},
                      victims={name: model_fingerprint(path) for name, path in victims.items()})
    total = splits.sizes.get("test", 0) * len(ordered)
    bar = progress(total=total, desc=f"{request.name} from {len(ordered)} sources", unit="img") if progress else None
    matrix = transfer_matrix(source_models, victim_models, make_batches(test, batch_size, training=False), request,
                             num_classes=info.num_classes, seed=data.seed, jit=jit, progress=bar)
    if bar is not None:
        bar.close()
    matrix.pop("targets")
    results = {**matrix, "sources": [{"name": name, "eps": eps, "model": str(path)} for name, eps, path in ordered],
               "x_axis": "categorical: sources equally spaced in order of eps, labelled by eps",
               **request.to_json(), "dataset": info.name,
               "inputs": {"sources": {name: str(path) for name, _, path in ordered},
                          "victims": {name: str(path) for name, path in victims.items()},
                          "dataset": data.dataset, "test_subset": data.test_subset, "seed": data.seed}}
    write_json(run.path / "results.json", results)
    rows = [{"source": name, "eps": eps, **matrix["table"][name], "white_box": matrix["white_box"][name]}
            for name, eps, _ in ordered]
    write_table(run.path, "transfer", rows, ["source", "eps", *victims, "white_box"])
    kind = "targeted" if request.targeted else "untargeted"
    transfer_curves(matrix["table"], run.path / "transfer.png", metric=matrix["metric"],
                    white_box=matrix["white_box"], clean=matrix["clean"],
                    title=f"{kind} {request.name} transfer ({request.threat.norm}, eps={request.threat.eps:g}) "
                          f"on {info.name}")
    return results
