"""``advtf cam`` and ``advtf psr``: Xu et al. (2019)'s pixel- and image-level analyses of
adversarial examples, for one attack on one or more models (papers/003, Sections 3-4, Appendix 3).

Both analyse the *successful* adversarial examples of correctly classified test images: ``t0``
is the true label and ``t`` the attack's target (targeted attacks) or the adversarial prediction
(untargeted ones).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from advtf.analysis.cam import (DEFAULT_QUANTILE, MapMaker, four_maps, interpretability_score,
                                shared_normalisation, discriminative_region)
from advtf.inputs import fingerprints, load_models, model_name
from advtf.analysis.psr import (CATEGORIES, DEFAULT_DROP, DEFAULT_XI, categories, category_map, grid_masks,
                                grid_norms, grid_sensitivity, pearson_per_image, pixel_mask, significant_grids)
from advtf.errors import UserError

MAP_KEYS = ("x0_t0", "xadv_t0", "x0_t", "xadv_t")
REFINEMENTS = ("s1", "s2")


def analysed_pairs(model, splits, request, *, batch_size: int, seed: int, progress=None,
                   desc: str = "") -> Iterator[tuple[dict, dict]]:
    """Per batch: ``(kept, counts)``; ``kept`` holds the successful pairs of correctly classified images
    (``natural``, ``image``, ``delta``, ``label`` = t0, ``target`` = t, the norms), ``counts`` the
    batch's ``images``, ``correct`` and ``successful`` counts."""
    from advtf.analysis.pairs import adversarial_pairs

    for rows in adversarial_pairs(model, splits, request, batch_size=batch_size, seed=seed, progress=progress,
                                  desc=desc):
        keep = rows["clean_correct"].astype(bool) & rows["success"].astype(bool)
        counts = {"images": int(len(keep)), "correct": int(rows["clean_correct"].sum()), "successful": int(keep.sum())}
        t = rows["target"] if request.targeted else rows["adversarial_prediction"]
        kept = {k: rows[k][keep] for k in ("natural", "image", "label", "l0", "l1", "l2", "linf")}
        kept["target"] = np.asarray(t)[keep]
        kept["delta"] = kept["image"] - kept["natural"]
        yield kept, counts


def _rates(counts: dict) -> dict:
    c = counts
    return {"images": c["images"], "correct": c["correct"], "pairs": c["successful"],
            "clean_accuracy": c["correct"] / c["images"] if c["images"] else None,
            "success_rate": c["successful"] / c["correct"] if c["correct"] else None}


def _add(counts: dict, more: dict) -> None:
    for k, v in more.items():
        counts[k] = counts.get(k, 0) + v


def _mean(values) -> float | None:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


def _setup(model_paths, data, request, run):
    if not model_paths:
        raise UserError("give at least one MODEL (a run directory of `advtf train` or a .keras file)")
    splits = data.load()
    request.check(splits.info.num_classes)
    models = load_models(model_paths, splits.info)
    run.inputs.update(dataset=splits.fingerprint, models=fingerprints(model_paths))
    return splits, models


def run_cam_job(model_paths, data, request, run, *, method: str = "cam", layer: str | None = None,
                quantile: float = DEFAULT_QUANTILE, examples: int = 4, batch_size: int = 100,
                progress=None) -> dict:
    """``advtf cam``: the four CAMs of every analysed pair and the interpretability scores (Table 2).

    Writes ``results.json`` (``rows``: per model ``is_x0_t0``, ``is_xadv_t`` (Table 2),
    ``is_xadv_t0``, ``is_x0_t``, the pairs ``undefined_<key>`` whose map has no region (IS left
    out of the means), the mean shared-normalised map ``map_<key>``, pair counts),
    ``cam.csv/.md``, ``examples.csv`` (per pair) and ``cam.png`` (Figure 3/A1 for the first pairs).
    """
    from advtf.plots.interpret import cam_figure
    from advtf.runs import write_json, write_table

    if not 0.0 < quantile < 1.0:
        raise UserError(f"--quantile must be in (0, 1) (got {quantile})")
    splits, models = _setup(model_paths, data, request, run)
    makers = [MapMaker(m, method, layer) for m in models]  # bad layers / heads fail before any attack
    rows, per_pair, shown = [], [], {}
    for path, model, maker in zip(model_paths, models, makers):
        name = model_name(path)
        counts, scores, means, figure = {}, {k: [] for k in MAP_KEYS}, {k: [] for k in MAP_KEYS}, None
        for kept, batch_counts in analysed_pairs(model, splits, request, batch_size=batch_size, seed=data.seed,
                                                 progress=progress, desc=f"{request.name} on {name}"):
            start = counts.get("successful", 0)
            _add(counts, batch_counts)
            if not len(kept["label"]):
                continue
            maps = four_maps(maker, kept["natural"], kept["image"], kept["label"], kept["target"])
            normalised = shared_normalisation(maps)
            for key in MAP_KEYS:
                scores[key].append(interpretability_score(maps[key], kept["delta"], quantile))
                means[key].append(normalised[key].reshape(len(kept["label"]), -1).mean(1))
            for i in range(len(kept["label"])):
                per_pair.append({"model": name, "pair": start + i, "label": int(kept["label"][i]),
                                 "target": int(kept["target"][i]),
                                 **{f"is_{k}": float(scores[k][-1][i]) for k in MAP_KEYS}})
            if figure is None:
                figure = {"natural": kept["natural"][:examples], "label": kept["label"][:examples],
                          "target": kept["target"][:examples],
                          **{k: normalised[k][:examples] for k in MAP_KEYS}}
        row = {"model": name, "attack": request.name, "method": method, "layer": maker.layer, **_rates(counts)}
        for key in MAP_KEYS:
            row[f"is_{key}"] = _mean(np.concatenate(scores[key])) if scores[key] else None
        for key in MAP_KEYS:  # pairs whose map has no region (B empty): IS undefined, left out of the mean
            row[f"undefined_{key}"] = int(np.isnan(np.concatenate(scores[key])).sum()) if scores[key] else 0
        for key in MAP_KEYS:
            row[f"map_{key}"] = _mean(np.concatenate(means[key])) if means[key] else None
        rows.append(row)
        if figure is not None and examples:
            shown[name] = figure
    columns = ["model", "attack", "method", "layer", "images", "pairs", "success_rate", "is_x0_t0", "is_xadv_t",
               "is_xadv_t0", "is_x0_t", *[f"undefined_{k}" for k in MAP_KEYS], *[f"map_{k}" for k in MAP_KEYS]]
    write_table(run.path, "cam", rows, columns)
    if per_pair:
        write_table(run.path, "examples", per_pair)
    for name, figure in shown.items():
        suffix = "" if len(shown) == 1 else f"_{name}"
        cam_figure(figure, run.path / f"cam{suffix}.png", class_names=splits.info.class_names,
                   title=f"{name}: {method} of natural and {request.name} adversarial images")
    notes = [f"{r['model']}: no successful adversarial examples among correctly classified images; "
             "nothing to score (a stronger attack, more --steps or a larger --eps helps)"
             for r in rows if not r["pairs"]]
    results = {"rows": rows, "notes": notes, "method": method, "quantile": quantile,
               "definition": {"IS": "||B(x,c) o delta||_2 / ||delta||_2 (Eq. 5-6), B = pixels with map >= nu, "
                                    "nu the map's quantile, when nu > 0; B = the positive pixels when nu = 0",
                              "undefined_<key>": "pairs whose map has no region (all zero or constant): IS "
                                                 "undefined, left out of the means",
                              "pairs": "successful adversarial examples of correctly classified test images",
                              "t": "the target (targeted) or the adversarial prediction (untargeted)",
                              "map_<key>": "mean of the map after dividing the four maps of a pair by their "
                                           "joint maximum (Figure 3's shared baseline)"},
               **request.to_json(), "dataset": splits.info.name}
    write_json(run.path / "results.json", results)
    return results


def _norm_row(delta: np.ndarray, prefix: str) -> dict:
    flat = delta.reshape(len(delta), -1)
    return {f"{prefix}l0": np.count_nonzero(np.abs(flat) > 1e-6, axis=1).astype(np.float64),
            f"{prefix}l1": np.abs(flat).sum(1), f"{prefix}l2": np.sqrt(np.square(flat).sum(1)),
            f"{prefix}linf": np.abs(flat).max(1)}


def run_psr_job(model_paths, data, request, run, *, grid: int | None = None, stride: int | None = None,
                xi: float = DEFAULT_XI, drop: float = DEFAULT_DROP, refine=(), method: str = "cam",
                layer: str | None = None, quantile: float = DEFAULT_QUANTILE, examples: int = 3,
                batch_size: int = 50, chunk: int = 256, progress=None) -> dict:
    """``advtf psr``: grid sensitivity, PSR, Table 1 correlations, refined attacks (Table A1).

    Writes ``results.json`` (``rows`` per model: correlations ``corr_d0``, ``corr_dt``, ``corr_s``
    (per-image Pearson with ||delta_Gi||_2, averaged) and their pooled versions, the share of each
    PSR category over the perturbed grids and over S1; ``refine`` rows per model and refinement: mean
    l0/l1/l2/linf before and after and the attack success rates over the refined pairs, and
    ``skipped_empty``, the pairs whose S is empty and so cannot be refined), ``psr.csv/.md``,
    ``refine.csv/.md``, ``psr_examples.png`` (Figure 2), ``psr_cam.png`` (Figure 4/A2) and
    ``refine_<s>.png`` (Figures 6/A6).
    """
    from advtf.analysis.refine import refine_pairs
    from advtf.plots.interpret import psr_cam_figure, psr_examples_figure, refine_figure
    from advtf.runs import write_json, write_table

    refine = list(dict.fromkeys(refine))
    unknown = [r for r in refine if r not in REFINEMENTS]
    if unknown:
        raise UserError(f"unknown --refine {', '.join(unknown)}; choose s1 (significant grids) or s2 (CAM region)")
    if not 0.0 <= drop < 1.0:
        raise UserError(f"--drop must be in [0, 1) (got {drop})")
    if xi <= 0:
        raise UserError(f"--xi must be positive (got {xi})")
    splits, models = _setup(model_paths, data, request, run)
    height, width = splits.info.image_shape[:2]
    grid = grid or max(2, round(min(height, width) / 16))
    stride = stride or grid
    masks = grid_masks(height, width, grid, stride)
    makers = [MapMaker(m, method, layer) for m in models]
    rows, refine_rows, notes = [], [], []
    for path, model, maker in zip(model_paths, models, makers):
        name = model_name(path)
        counts, acc, figure = {}, {}, None
        refined = {r: {} for r in refine}
        for kept, batch_counts in analysed_pairs(model, splits, request, batch_size=batch_size, seed=data.seed,
                                                 progress=progress, desc=f"{request.name} on {name}"):
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
            need_cam = figure is None or "s2" in refine
            region = None
            if need_cam:
                maps = {"x0_t0": maker(kept["natural"], kept["label"]), "xadv_t": maker(kept["image"], kept["target"])}
                region = discriminative_region(maps["x0_t0"], quantile)
            attack_label = kept["target"] if request.targeted else kept["label"]
            for r in refine:
                mask = pixel_mask(significant, masks) if r == "s1" else region.astype(np.float32)
                # An empty S (S2: a CAM with no region, see advtf.analysis.cam) cannot be refined: skip the pair.
                x_ref, ok = refine_pairs(model, kept["natural"], attack_label, mask, request, seed=data.seed)
                refined[r]["_skipped"] = refined[r].get("_skipped", 0) + int(n - ok.sum())
                if ok.any():
                    predicted = np.argmax(model(x_ref[ok], training=False).numpy(), -1)
                    success = predicted == attack_label[ok] if request.targeted else predicted != attack_label[ok]
                    part = {**_norm_row(kept["delta"][ok], "original_"),
                            **_norm_row(x_ref[ok] - kept["natural"][ok], "refined_"),
                            "refined_success": success.astype(np.float64), "pixels": mask[ok].mean((1, 2))}
                    for key, value in part.items():
                        refined[r].setdefault(key, []).append(value)
                refined[r].setdefault("_figure", (mask[:examples], x_ref[:examples]))
            if figure is None:
                top = slice(0, examples)
                peak = np.maximum(maps["x0_t0"].reshape(n, -1).max(1), maps["xadv_t"].reshape(n, -1).max(1))
                peak = np.where(peak > 0, peak, 1.0)[:, None, None]
                figure = {"natural": kept["natural"][top], "adversarial": kept["image"][top],
                          "delta": kept["delta"][top], "label": kept["label"][top], "target": kept["target"][top],
                          "cam_x0_t0": (maps["x0_t0"] / peak)[top], "cam_xadv_t": (maps["xadv_t"] / peak)[top],
                          "category_map": category_map(sens["r"][top], sens["s"][top], significant[top], masks),
                          "l2": norms["l2"][top], "linf": norms["linf"][top],
                          "l2_map": np.max(norms["l2"][top][:, :, None, None] * masks[None], axis=1),
                          **{k: sens[k][top] for k in ("d0", "dt", "r")}}
        arrays = {k: np.concatenate(v) for k, v in acc.items()}
        row = {"model": name, "attack": request.name, "grid": grid, "stride": stride, "grids": len(masks),
               **_rates(counts)}
        for k in ("d0", "dt", "s"):
            row[f"corr_{k}"] = _mean(arrays[f"corr_{k}"]) if arrays else None
        for k in ("d0", "dt", "s"):
            row[f"pooled_corr_{k}"] = (float(np.corrcoef(arrays[f"pooled_{k}"], arrays["pooled_l2"])[0, 1])
                                       if arrays and np.std(arrays[f"pooled_{k}"]) > 0 else None)
        for scope in ("perturbed", "s1"):
            for cat in CATEGORIES:
                row[f"{scope}_{cat}"] = _mean(arrays[f"{scope}_{cat}"]) if arrays else None
        rows.append(row)
        if not counts.get("successful"):
            notes.append(f"{name}: no successful adversarial examples among correctly classified images")
        for r in refine:
            parts = refined[r]
            if not parts:
                continue
            mask, x_ref = parts.pop("_figure")
            skipped = parts.pop("_skipped")
            if skipped:
                notes.append(f"{name}, {r.upper()}: {skipped} pair(s) skipped, their allowed set S is empty"
                             + (" (CAM with no positive pixel)" if r == "s2" else ""))
            if not parts:  # every pair skipped: the note above is the whole result
                continue
            values = {k: np.concatenate(v) for k, v in parts.items()}
            ref_row = {"model": name, "attack": request.name, "refine": r, "pairs": len(values["pixels"]),
                       "skipped_empty": skipped, "pixels_allowed": float(values["pixels"].mean()),
                       **{k: float(v.mean()) for k, v in values.items() if k not in ("pixels", "refined_success")},
                       "original_success_rate": row["success_rate"],
                       "refined_success_rate": float(values["refined_success"].mean())}
            refine_rows.append(ref_row)
            if figure is not None and examples:
                refine_figure(figure, mask, x_ref, run.path / f"refine_{r}{'' if len(models) == 1 else '_' + name}.png",
                              title=f"{name}: {request.name} refined under {r.upper()}")
        if figure is not None and examples:
            suffix = "" if len(models) == 1 else f"_{name}"
            psr_examples_figure(figure, run.path / f"psr_examples{suffix}.png", class_names=splits.info.class_names,
                                title=f"{name}: grid sensitivity of {request.name} perturbations")
            psr_cam_figure(figure, run.path / f"psr_cam{suffix}.png", class_names=splits.info.class_names,
                           title=f"{name}: PSR of the top {1 - drop:.0%} of s over CAM F(x', t)")
    write_table(run.path, "psr", rows)
    if refine_rows:
        write_table(run.path, "refine", refine_rows, list(dict.fromkeys(k for r in refine_rows for k in r)))
    results = {"rows": rows, "refine": refine_rows, "notes": notes, "grid": grid, "stride": stride, "xi": xi,
               "drop": drop, "method": method, "quantile": quantile,
               "definition": {"corr_<k>": "Pearson correlation of <k> with ||delta_Gi||_2 over the grids of an "
                                          "image, averaged over images (pooled_corr_<k>: over all grids at once)",
                              "perturbed_<category>": "share of the perturbed grids (delta_G != 0) per PSR "
                                                      "category (r<-1 suppression, r>1 promotion), mean over images",
                              "s1_<category>": "the same among S1, the grids holding the top (1-drop) of s",
                              "skipped_empty": "refine: pairs not refined because their S is empty (S2: the CAM "
                                               "F(x0,t0) has no positive pixel or is constant)",
                              "pairs": "successful adversarial examples of correctly classified test images"},
               **request.to_json(), "dataset": splits.info.name}
    write_json(run.path / "results.json", results)
    return results
