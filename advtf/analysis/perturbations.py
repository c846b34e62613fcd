"""Adversarial perturbations in the spatial domain (papers/000, Sec. 3, Figures 3, 7, 8).

The figure shows, for the same natural images, each model's adversarial example and its
perturbation ``δ = x_adv - x``: overall (min-max scaled to [0, 1], the paper's "[0, 255]"),
the channel mean and each channel on a diverging colour map with ±eps at the ends.

The paper reads these figures by eye ("locally consistent" vs "disordered"); to make the reading
measurable, every perturbation also gets (per image, then averaged):

* ``at_bound``: share of entries with ``|δ| >= 0.99·eps`` (the paper: robust-model perturbations
  "tend to reach the perturbation bound");
* ``sign_agreement``: share of horizontally or vertically neighbouring entries (same channel)
  whose ``δ`` has the same sign, among pairs where both are non-zero (locally co-increasing or
  co-decreasing: 1 = perfectly consistent, 0.5 = random signs);
* ``neighbour_diff``: mean ``|δ(p) - δ(q)|`` over those neighbour pairs, divided by eps (local disorder);
* ``high_energy``: share of ``‖δ‖²`` at spatial frequencies ``>= min(H, W)/4`` from the centre.
"""

from __future__ import annotations

import numpy as np

from advtf.errors import UserError

ONLY = ("successful", "failed", "all")
STATS = ("at_bound", "sign_agreement", "neighbour_diff", "high_energy")


def _neighbour_pairs(delta: np.ndarray):
    """Horizontally and vertically adjacent entries of ``[N, H, W, C]``, flattened per image."""
    n = len(delta)
    first = np.concatenate([delta[:, 1:].reshape(n, -1), delta[:, :, 1:].reshape(n, -1)], axis=1)
    second = np.concatenate([delta[:, :-1].reshape(n, -1), delta[:, :, :-1].reshape(n, -1)], axis=1)
    return first, second


def perturbation_stats(delta, eps: float) -> dict[str, np.ndarray]:
    """Per-image :data:`STATS` of perturbations ``[N, H, W, C]`` (module docstring)."""
    from advtf.analysis.frequency import radial_distance

    delta = np.asarray(delta, np.float64)
    if delta.ndim != 4:
        raise UserError(f"perturbations must be [N, H, W, C]; got shape {delta.shape}")
    n, height, width = delta.shape[:3]
    a, b = _neighbour_pairs(delta)
    both = (a != 0) & (b != 0)
    same = (np.sign(a) == np.sign(b)) & both
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(both.any(1), same.sum(1) / np.maximum(both.sum(1), 1), np.nan)
        power = np.abs(np.fft.fftshift(np.fft.fft2(delta, axes=(1, 2)), axes=(1, 2))) ** 2
        far = radial_distance(height, width) >= min(height, width) / 4
        total = power.sum(axis=(1, 2, 3))
        high = np.where(total > 0, power[:, far].sum(axis=(1, 2)) / np.where(total > 0, total, 1), np.nan)
    return {"at_bound": (np.abs(delta) >= 0.99 * eps).reshape(n, -1).mean(1),
            "sign_agreement": agreement,
            "neighbour_diff": np.abs(a - b).mean(1) / eps,
            "high_energy": high}


def select_examples(success: list[np.ndarray], correct: list[np.ndarray], only: str, count: int) -> np.ndarray:
    """Indices of up to ``count`` examples naturally correct on every model, chosen by ``only``.

    ``successful``: the attack succeeds on every model (Figure 3); ``failed``: it fails on the first
    model (Figure 8: failed on the adversarially-trained model, listed first); ``all``: any outcome.
    """
    if only not in ONLY:
        raise UserError(f"--only must be one of {', '.join(ONLY)} (got {only!r})")
    keep = np.logical_and.reduce(correct)
    if only == "successful":
        keep &= np.logical_and.reduce(success)
    elif only == "failed":
        keep &= ~success[0]
    return np.flatnonzero(keep)[:count]


def run_perturbations_job(model_paths, data, request, run, *, only: str = "successful", count: int = 6,
                          batch_size: int = 100, progress=None) -> dict:
    """``advtf perturbations``: the Figure 3/7/8 grid for models side by side, and the statistics.

    Writes ``results.json`` (``models``: per model ``model``, ``n``, ``success_rate`` and the mean
    :data:`STATS` over all images and over the ones shown; ``shown``: indices; ``note`` when nothing
    matched ``--only``), ``perturbations.csv/.md`` (the same per model), ``examples.csv/.md``
    (per shown example and model: label, prediction, success) and ``perturbations.png``.
    """
    from advtf.analysis.pairs import adversarial_pairs, concat_rows
    from advtf.inputs import fingerprints, load_models
    from advtf.plots.local import perturbation_grid
    from advtf.runs import write_json, write_table

    if only not in ONLY:
        raise UserError(f"--only must be one of {', '.join(ONLY)} (got {only!r})")
    splits = data.load()
    request.check(splits.info.num_classes)
    models = load_models(model_paths, splits.info)
    run.inputs.update(dataset=splits.fingerprint, models=fingerprints(model_paths))
    attacked = []
    for k, model in enumerate(models):
        attacked.append(concat_rows(list(adversarial_pairs(model, splits, request, batch_size=batch_size,
                                                           seed=data.seed, progress=progress,
                                                           desc=f"{request.name} on model {k + 1}"))))
    if not attacked[0]:
        raise UserError(f"the test split of {data.dataset} is empty; nothing to attack")
    shown = select_examples([r["success"].astype(bool) for r in attacked],
                            [r["clean_correct"].astype(bool) for r in attacked], only, count)
    eps = request.threat.eps
    summary, example_rows = [], []
    for path, rows in zip(model_paths, attacked):
        stats = perturbation_stats(rows["image"] - rows["natural"], eps)
        entry = {"model": str(path), "n": int(len(rows["label"])), "success_rate": float(rows["success"].mean()),
                 **{s: float(np.nanmean(stats[s])) for s in STATS},
                 **{f"shown_{s}": float(np.nanmean(stats[s][shown])) if len(shown) else None for s in STATS}}
        summary.append(entry)
        example_rows += [{"index": int(i), "model": str(path), "label": int(rows["label"][i]),
                          "prediction": int(rows["adversarial_prediction"][i]), "success": bool(rows["success"][i]),
                          **{s: round(float(stats[s][i]), 4) for s in STATS}} for i in shown]
    note = None
    if len(shown):
        columns = [{"name": str(p), "image": r["image"][shown], "prediction": r["adversarial_prediction"][shown],
                    "success": r["success"][shown]} for p, r in zip(model_paths, attacked)]
        perturbation_grid(attacked[0]["natural"][shown], columns, run.path / "perturbations.png", eps=eps,
                          title=f"{request.name} ({request.threat.norm}, eps={eps:g}), {only} attacks")
    else:
        note = (f"no naturally correct image with a {only} attack"
                f"{' on every model' if only == 'successful' else ' on the first model' if only == 'failed' else ''}"
                f" among the {len(attacked[0]['label'])} attacked; no figure drawn (try --only all or more images)")
    write_table(run.path, "perturbations", summary)
    write_table(run.path, "examples", example_rows, ["index", "model", "label", "prediction", "success", *STATS])
    results = {"models": summary, "shown": shown.tolist(), "only": only, "note": note, **request.to_json(),
               "dataset": splits.info.name}
    write_json(run.path / "results.json", results)
    return results
