"""``advtf features``: natural vs adversarial feature-vector distributions per module, measured (MMD,
C2ST) and embedded in 2-D (Siddiqui & Breuel 2021, Sec. 6, Figure 8).

The sampling, statistics and embeddings are :mod:`advtf.analysis.features`; this job attacks every
model in resumable chunks (:class:`~advtf.jobs.attack_passes.AttackPasses`: ``--resume``, shared by
the workers of a cluster run), then measures and writes the results, the table, the embeddings
(``embeddings.npz``, no pickle) and the figure. :func:`load_panels` reads a finished run back to redraw its figure.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from advtf import validation as check
from advtf.analysis.features import (METHODS, PCA_DIMENSIONS, analyse_module, check_modules, collect_features,
                                     default_modules, require_method, with_densities)
from advtf.errors import UserError
from advtf.inputs import fingerprints, load_models, model_name
from advtf.jobs.attack_passes import AttackPasses
from advtf.jobs.frequency import AttackedModelsRequest
from advtf.plots.features import features_figure
from advtf.runs import read_json, write_json, write_table

PANEL_ARRAYS = ("embedding", "adversarial", "image", "position")
COLUMNS = ["model", "module", "channels", "n_images", "n_natural", "n_adversarial", "mmd2", "p_value", "bandwidth",
           "mmd_n", "c2st_accuracy", "clean_accuracy", "adversarial_accuracy"]
DEFINITION = {
    "feature_vector": "one spatial position of a module's output, z in R^C; the same positions for an image and "
                      "its adversarial version",
    "mmd2": "unbiased MMD^2 with the RBF kernel exp(-|x-y|^2 / (2 bandwidth^2)); bandwidth = median pairwise "
            "distance of the pooled sample; at most mmd_samples vectors per side",
    "p_value": "(1 + #{permuted MMD^2 >= observed}) / (1 + permutations)",
    "c2st_accuracy": "held-out accuracy of a logistic regression natural vs adversarial (split by image); "
                     "0.5 = indistinguishable",
}


@dataclasses.dataclass(frozen=True)
class FeaturesRequest(AttackedModelsRequest):
    """Options of ``advtf features`` (``data.test_subset`` is --images); ``modules`` None: Figure 8's
    ``m1..m4`` when all are feature maps, else every spatial module."""

    modules: tuple[str, ...] | None = None
    method: str = "tsne"
    positions: int = 100
    embed_samples: int = 1000
    mmd_samples: int = 2000
    permutations: int = 200
    perplexity: float = 30.0

    def __post_init__(self):
        super().__post_init__()
        check.choice("--method", self.method, METHODS)
        check.count("--positions", self.positions)
        check.count("--embed-samples", self.embed_samples, minimum=10)
        check.count("--mmd-samples", self.mmd_samples, minimum=10)
        check.count("--permutations", self.permutations)
        check.positive("--perplexity", self.perplexity)
        if self.modules is not None and not all(isinstance(m, str) and m.strip() for m in self.modules):
            raise UserError(f"--modules holds an empty name ({','.join(self.modules)}); write e.g. --modules m1,m2")
        require_method(self.method)  # a missing optional package fails before anything is written


def save_embeddings(path, panels: list[dict]) -> None:
    """``np.savez`` of every panel's ``p<i>_embedding``/``_adversarial``/``_image``/``_position`` (no pickle)."""
    np.savez(path, **{f"p{i}_{key}": np.asarray(panel[key]) for i, panel in enumerate(panels) for key in PANEL_ARRAYS})


def load_embeddings(path, count: int) -> list[dict]:
    """The ``count`` panels written by :func:`save_embeddings` (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as data:
        return [{key: data[f"p{i}_{key}"] for key in PANEL_ARRAYS} for i in range(count)]


def load_panels(run_dir) -> tuple[list[dict], dict]:
    """The figure's panels of a finished ``advtf features`` run, and its results, to redraw it::

        panels, results = load_panels("runs/features")
        features_figure(panels, results["rows"], results["modules"], "again.png")
    """
    results = read_json(Path(run_dir) / "results.json")
    arrays = load_embeddings(Path(run_dir) / "embeddings.npz", len(results["panels"]))
    return [with_densities({**meta, **a}) for meta, a in zip(results["panels"], arrays)], results


def run(request: FeaturesRequest, run, *, progress=None, report=None) -> dict[str, Any]:
    """Statistics, embeddings and Figure 8 for every model × module.

    Writes ``results.json`` (``modules``, ``method``, ``rows``, ``panels``, ``settings``,
    ``definition``, the attack, ``dataset``), ``features.csv/.md``, ``embeddings.npz`` (panel ``i``
    of ``results["panels"]`` as ``p<i>_*`` arrays) and ``features.png``.
    """
    attack, data, paths = request.attack, request.data, list(request.models)
    splits = data.load()
    attack.check(splits.info.num_classes)
    models = load_models(paths, splits.info)
    modules = list(dict.fromkeys(request.modules)) if request.modules else default_modules(models[0])
    for path, model in zip(paths, models):
        check_modules(model, modules, model_name(path))
    run.record_inputs(dataset=splits.fingerprint, models=fingerprints(paths))
    passes = AttackPasses.of_test_split(run, splits, batch_size=request.batch_size, seed=data.seed,
                                        progress=progress)
    for path, model in zip(paths, models):
        passes.add(model, attack, f"{attack.name} on {model_name(path)}")
    passes.run_all()  # a non-chief worker of a cluster run stops here
    rows, panels = [], []
    for path, model in zip(paths, models):
        name = model_name(path)
        pairs = passes.pairs(model, splits, attack, batch_size=request.batch_size, seed=data.seed)
        samples, accuracy = collect_features(model, modules, pairs, positions=request.positions, seed=data.seed)
        bar = progress(total=len(modules), desc=f"MMD + {request.method} ({name})", unit="module") if progress else None
        for module in modules:
            row, panel = analyse_module(samples[module], method=request.method, embed_samples=request.embed_samples,
                                        mmd_samples=request.mmd_samples, permutations=request.permutations,
                                        perplexity=request.perplexity, seed=data.seed)
            rows.append({"model": str(path), **row, **accuracy})
            panels.append({"model": str(path), **panel})
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    named = [{**r, "model": model_name(r["model"])} for r in rows]
    write_table(run.path, "features", named, COLUMNS)
    save_embeddings(run.path / "embeddings.npz", panels)
    threat = attack.threat
    features_figure([{**p, "model": model_name(p["model"])} for p in panels], named, modules,
                    run.path / "features.png",
                    title=f"{request.method} of per-position feature vectors: natural (green) vs {attack.name} (red), "
                          f"{threat.norm} eps={threat.eps:g}")
    tsne = request.method == "tsne"
    results = {
        "modules": modules, "method": request.method, "rows": rows,
        "panels": [{"key": f"p{i}", "model": p["model"], "module": p["module"]} for i, p in enumerate(panels)],
        "settings": {"positions": request.positions, "embed_samples": request.embed_samples,
                     "mmd_samples": request.mmd_samples, "permutations": request.permutations,
                     "perplexity": request.perplexity if tsne else None, "pca_dimensions": PCA_DIMENSIONS if tsne else None},
        "definition": DEFINITION, **attack.to_json(), "dataset": splits.info.name,
    }
    write_json(run.path / "results.json", results)
    return results
