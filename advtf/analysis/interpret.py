"""Xu et al. (2019)'s pixel- and image-level statistics of adversarial examples, one model at a time
(Sections 3-4, Appendix 3): pure computation behind the ``advtf cam`` and ``advtf psr`` jobs.

Both analyse the *successful* adversarial examples of correctly classified test images: ``t0``
is the true label and ``t`` the attack's target (targeted attacks) or the adversarial prediction
(untargeted ones). Nothing here writes files; :mod:`advtf.jobs.cam` and :mod:`advtf.jobs.psr` do.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from advtf.analysis.cam import (DEFAULT_QUANTILE, MapMaker, discriminative_region, four_maps,
                                interpretability_score, shared_normalisation)
from advtf.analysis.pairs import adversarial_pairs
from advtf.analysis.psr import (CATEGORIES, DEFAULT_DROP, DEFAULT_XI, categories, category_map, grid_norms,
                                grid_sensitivity, pearson_per_image, pixel_mask, significant_grids)
from advtf.analysis.refine import refine_pairs

MAP_KEYS = ("x0_t0", "xadv_t0", "x0_t", "xadv_t")
REFINEMENTS = ("s1", "s2")
NORMS = ("l0", "l1", "l2", "linf")


def analysed_pairs(model, splits, request, *, batch_size: int, seed: int, progress=None, desc: str = "",
                   pairs=adversarial_pairs) -> Iterator[tuple[dict, dict]]:
    """Per batch: ``(kept, counts)``; ``kept`` holds the successful pairs of correctly classified images
    (``natural``, ``image``, ``delta``, ``label`` = t0, ``target`` = t, the norms), ``counts`` the
    batch's ``images``, ``correct`` and ``successful`` counts. ``pairs`` gives the attacked batches
    (``adversarial_pairs``' signature; a job passes its stored, resumable passes)."""
    for rows in pairs(model, splits, request, batch_size=batch_size, seed=seed, progress=progress, desc=desc):
        keep = rows["clean_correct"].astype(bool) & rows["success"].astype(bool)
        counts = {"images": int(len(keep)), "correct": int(rows["clean_correct"].sum()), "successful": int(keep.sum())}
        t = rows["target"] if request.targeted else rows["adversarial_prediction"]
        kept = {k: rows[k][keep] for k in ("natural", "image", "label", *NORMS)}
        kept["target"] = np.asarray(t)[keep]
        kept["delta"] = kept["image"] - kept["natural"]
        yield kept, counts


def _rates(counts: dict) -> dict:
    images, correct, pairs = counts.get("images", 0), counts.get("correct", 0), counts.get("successful", 0)
    return {"images": images, "correct": correct, "pairs": pairs,
            "clean_accuracy": correct / images if images else None,
            "success_rate": pairs / correct if correct else None}


def _add(counts: dict, more: dict) -> None:
    for k, v in more.items():
        counts[k] = counts.get(k, 0) + v


def _mean(values) -> float | None:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


def cam_statistics(model, maker: MapMaker, splits, request, *, quantile: float = DEFAULT_QUANTILE,
                   examples: int = 4, batch_size: int = 100, seed: int = 0, progress=None, desc: str = "",
                   pairs=adversarial_pairs) -> dict:
    """The four CAMs of every analysed pair of one model and their interpretability scores (Table 2).

    Returns ``stats`` (``images``, ``correct``, ``pairs``, ``clean_accuracy``, ``success_rate``; per
    map key ``is_<key>`` the mean IS over pairs with a region, ``undefined_<key>`` the pairs whose
    map has none (IS NaN), ``map_<key>`` the mean shared-normalised map), ``pairs`` (per pair:
    ``pair``, ``label``, ``target``, ``is_<key>``) and ``figure`` (the first ``examples`` pairs'
    images, classes and shared-normalised maps; None without pairs). ``pairs``: see :func:`analysed_pairs`.
    """
    counts, scores, means, per_pair, figure = {}, {k: [] for k in MAP_KEYS}, {k: [] for k in MAP_KEYS}, [], None
    for kept, batch_counts in analysed_pairs(model, splits, request, batch_size=batch_size, seed=seed,
                                             progress=progress, desc=desc, pairs=pairs):
        start = counts.get("successful", 0)
        _add(counts, batch_counts)
        n = len(kept["label"])
        if not n:
            continue
        maps = four_maps(maker, kept["natural"], kept["image"], kept["label"], kept["target"])
        normalised = shared_normalisation(maps)
        for key in MAP_KEYS:
            scores[key].append(interpretability_score(maps[key], kept["delta"], quantile))
            means[key].append(normalised[key].reshape(n, -1).mean(1))
        for i in range(n):
            per_pair.append({"pair": start + i, "label": int(kept["label"][i]), "target": int(kept["target"][i]),
                             **{f"is_{k}": float(scores[k][-1][i]) for k in MAP_KEYS}})
        if figure is None and examples:
            figure = {"natural": kept["natural"][:examples], "label": kept["label"][:examples],
                      "target": kept["target"][:examples], **{k: normalised[k][:examples] for k in MAP_KEYS}}
    stats = _rates(counts)
    joined = {k: np.concatenate(scores[k]) if scores[k] else None for k in MAP_KEYS}
    for key in MAP_KEYS:
        stats[f"is_{key}"] = _mean(joined[key]) if joined[key] is not None else None
    for key in MAP_KEYS:  # pairs whose map has no region (B empty): IS undefined, left out of the mean
        stats[f"undefined_{key}"] = int(np.isnan(joined[key]).sum()) if joined[key] is not None else 0
    for key in MAP_KEYS:
        stats[f"map_{key}"] = _mean(np.concatenate(means[key])) if means[key] else None
    return {"stats": stats, "pairs": per_pair, "figure": figure}


def norms_of(delta: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    """Per-example l0 (|.| > 1e-6), l1, l2 and linf of perturbations, keys ``<prefix><norm>``."""
    flat = delta.reshape(len(delta), -1)
    return {f"{prefix}l0": np.count_nonzero(np.abs(flat) > 1e-6, axis=1).astype(np.float64),
            f"{prefix}l1": np.abs(flat).sum(1), f"{prefix}l2": np.sqrt(np.square(flat).sum(1)),
            f"{prefix}linf": np.abs(flat).max(1)}


def _sensitivity_figure(kept, maps, sens, norms, significant, masks, examples: int) -> dict:
    """Figures 2 and 4 of the first ``examples`` pairs: images, maps on a shared scale, grid statistics."""
    n, top = len(kept["label"]), slice(0, examples)
    peak = np.maximum(maps["x0_t0"].reshape(n, -1).max(1), maps["xadv_t"].reshape(n, -1).max(1))
    peak = np.where(peak > 0, peak, 1.0)[:, None, None]
    return {"natural": kept["natural"][top], "adversarial": kept["image"][top], "delta": kept["delta"][top],
            "label": kept["label"][top], "target": kept["target"][top],
            "cam_x0_t0": (maps["x0_t0"] / peak)[top], "cam_xadv_t": (maps["xadv_t"] / peak)[top],
            "category_map": category_map(sens["r"][top], sens["s"][top], significant[top], masks),
            "l2": norms["l2"][top], "linf": norms["linf"][top],
            "l2_map": np.max(norms["l2"][top][:, :, None, None] * masks[None], axis=1),
            **{k: sens[k][top] for k in ("d0", "dt", "r")}}


def psr_statistics(model, maker: MapMaker, splits, request, masks: np.ndarray, *, xi: float = DEFAULT_XI,
                   drop: float = DEFAULT_DROP, refine=(), quantile: float = DEFAULT_QUANTILE, examples: int = 3,
                   batch_size: int = 50, chunk: int = 256, seed: int = 0, progress=None, desc: str = "",
                   pairs=adversarial_pairs) -> dict:
    """Grid sensitivity, PSR, Table 1 correlations and refined attacks (Table A1) of one model.

    Returns ``stats`` (rates; ``corr_<k>`` per-image Pearson of d0/dt/s with ||delta_Gi||_2,
    averaged, and ``pooled_corr_<k>`` over all grids at once; the share of each PSR category over
    the perturbed grids, ``perturbed_<c>``, and over S1, ``s1_<c>``), ``refine`` (per refinement of
    ``refine`` when there were pairs: ``skipped_empty``, the pairs whose S is empty; ``pairs``
    refined; their ``pixels_allowed``, mean norms before and after, ``refined_success_rate``;
    ``figure``, the first batch's masks and refined images), and ``figure`` (Figures 2 and 4 of
    the first ``examples`` pairs; None without pairs or examples). ``pairs`` gives the attack's
    batches (:func:`analysed_pairs`); the refined attacks run here, on the successful pairs.
    """
    counts, acc, figure = {}, {}, None
    refined = {r: {} for r in refine}
    for kept, batch_counts in analysed_pairs(model, splits, request, batch_size=batch_size, seed=seed,
                                             progress=progress, desc=desc, pairs=pairs):
        _add(counts, batch_counts)
        n = len(kept["label"])
        if not n:
            continue
        sens = grid_sensitivity(model, kept["image"], kept["delta"], kept["label"], kept["target"], masks,
                                xi=xi, chunk=chunk)
        norms = grid_norms(kept["delta"], masks)
        significant = significant_grids(sens["s"], drop)
        cats = categories(sens["r"])
        batch = {f"corr_{k}": pearson_per_image(sens[k], norms["l2"]) for k in ("d0", "dt", "s")}
        for k in ("d0", "dt", "s"):
            batch[f"pooled_{k}"] = sens[k].ravel()
        batch["pooled_l2"] = norms["l2"].ravel()
        perturbed = norms["l2"] > 0
        for c, cat in enumerate(CATEGORIES):
            with np.errstate(invalid="ignore", divide="ignore"):
                batch[f"perturbed_{cat}"] = ((cats == c) & perturbed).sum(1) / perturbed.sum(1)
                batch[f"s1_{cat}"] = ((cats == c) & significant).sum(1) / significant.sum(1)
        for key, value in batch.items():
            acc.setdefault(key, []).append(value)
        draw = figure is None and examples > 0
        maps = region = None
        if draw or "s2" in refine:
            maps = {"x0_t0": maker(kept["natural"], kept["label"]), "xadv_t": maker(kept["image"], kept["target"])}
            region = discriminative_region(maps["x0_t0"], quantile)
        attack_label = kept["target"] if request.targeted else kept["label"]
        for r in refine:
            mask = pixel_mask(significant, masks) if r == "s1" else region.astype(np.float32)
            # An empty S (S2: a CAM with no region, see advtf.analysis.cam) cannot be refined: skip the pair.
            x_ref, ok = refine_pairs(model, kept["natural"], attack_label, mask, request, seed=seed)
            refined[r]["skipped"] = refined[r].get("skipped", 0) + int(n - ok.sum())
            if ok.any():
                predicted = np.argmax(model(x_ref[ok], training=False).numpy(), -1)
                success = predicted == attack_label[ok] if request.targeted else predicted != attack_label[ok]
                part = {**norms_of(kept["delta"][ok], "original_"), **norms_of(x_ref[ok] - kept["natural"][ok], "refined_"),
                        "refined_success": success.astype(np.float64), "pixels": mask[ok].mean((1, 2))}
                for key, value in part.items():
                    refined[r].setdefault("values", {}).setdefault(key, []).append(value)
            refined[r].setdefault("figure", (mask[:examples], x_ref[:examples]))
        if draw:
            figure = _sensitivity_figure(kept, maps, sens, norms, significant, masks, examples)
    arrays = {k: np.concatenate(v) for k, v in acc.items()}
    stats = _rates(counts)
    for k in ("d0", "dt", "s"):
        stats[f"corr_{k}"] = _mean(arrays[f"corr_{k}"]) if arrays else None
    for k in ("d0", "dt", "s"):
        stats[f"pooled_corr_{k}"] = (float(np.corrcoef(arrays[f"pooled_{k}"], arrays["pooled_l2"])[0, 1])
                                     if arrays and np.std(arrays[f"pooled_{k}"]) > 0 else None)
    for scope in ("perturbed", "s1"):
        for cat in CATEGORIES:
            stats[f"{scope}_{cat}"] = _mean(arrays[f"{scope}_{cat}"]) if arrays else None
    return {"stats": stats, "figure": figure,
            "refine": {r: _refined_summary(parts) for r, parts in refined.items() if parts}}


def _refined_summary(parts: dict) -> dict:
    """Means over the refined pairs of one refinement (``pairs`` 0 when every pair was skipped)."""
    summary = {"pairs": 0, "skipped_empty": parts["skipped"], "figure": parts["figure"]}
    if "values" in parts:
        values = {k: np.concatenate(v) for k, v in parts["values"].items()}
        summary.update(pairs=len(values["pixels"]), pixels_allowed=float(values["pixels"].mean()),
                       **{k: float(v.mean()) for k, v in values.items() if k not in ("pixels", "refined_success")},
                       refined_success_rate=float(values["refined_success"].mean()))
    return summary
