"""Transfer attacks from sources of increasing robustness to victim models (Springer et al. 2021, Sec. 5.2).

For each source (keyed by its robustness parameter ε) adversarial examples of the test split
are generated with the compiled attack machinery and, batch by batch, fed to every victim.
Untargeted: the victims' error rate on the true labels (Figure 5). Targeted: the fraction of
victim predictions equal to the target (Figure 6); targets are random classes other than the
label, drawn from the seed and the batch position only, so every source attacks the same
target for the same image. Pure computation: loading, checking and writing the table are the
job's (:mod:`advtf.jobs.transfer_eval`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advtf.adversarial import AttackRequest, attack_batches
from advtf.analysis.robust_table import count_hits, predict_classes
from advtf.attacks import parse_number
from advtf.errors import UserError


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


def transfer_batch_counts(sources: dict, victims: dict, x: np.ndarray, y: np.ndarray, request: AttackRequest, *,
                          num_classes: int, seed: int = 0, jit: bool = False, batch: int = 0) -> dict[str, int]:
    """The hits of one batch ``(x, y)``, global batch index ``batch``, as :func:`transfer_matrix` counts them.

    Keys (sources and victims by position, as names need not be file names): ``n``,
    ``hits_<s>_<v>``, ``white_box_<s>`` and ``clean_<v>``. The attack of every source is seeded
    with ``[seed, batch]``, so summing the batches of a split gives :func:`transfer_matrix`'s
    counts whatever order (or process) the batches ran in; :func:`matrix_from_counts` turns the
    sums into its result.
    """
    targeted = request.targeted
    counts: dict[str, int] = {"n": len(y)}
    first = None
    for s, model in enumerate(sources.values()):
        row = next(attack_batches(model, [(tf.constant(x), tf.constant(y))], request, num_classes=num_classes,
                                  seed=seed, jit=jit, start=batch))
        reference = row["target"] if targeted else row["label"]
        if first is None:
            first = reference
        elif targeted and not np.array_equal(reference, first):
            raise RuntimeError("targets differ between sources; the batches are not in a fixed order")
        counts[f"white_box_{s}"] = count_hits(row["adversarial_prediction"], reference, equal=targeted)
        images = tf.convert_to_tensor(row["image"])
        for v, victim in enumerate(victims.values()):
            counts[f"hits_{s}_{v}"] = count_hits(predict_classes(victim, images).numpy(), reference, equal=targeted)
            if s == 0:  # the natural images are the same for every source
                natural = predict_classes(victim, tf.convert_to_tensor(row["natural"])).numpy()
                counts[f"clean_{v}"] = count_hits(natural, reference, equal=targeted)
    return counts


def matrix_from_counts(sources, victims, counts: dict[str, int], *, targeted: bool) -> dict:
    """:func:`transfer_matrix`'s result (without ``targets``) from the summed :func:`transfer_batch_counts`."""
    n = int(counts["n"])
    if not n:
        raise UserError("the dataset's test split is empty; nothing to attack")
    sources, victims = list(sources), list(victims)
    return {"metric": metric_name(targeted),
            "table": {s: {v: int(counts[f"hits_{i}_{j}"]) / n for j, v in enumerate(victims)}
                      for i, s in enumerate(sources)},
            "white_box": {s: int(counts[f"white_box_{i}"]) / n for i, s in enumerate(sources)},
            "clean": {v: int(counts[f"clean_{j}"]) / n for j, v in enumerate(victims)}, "n": n}
