"""Estimated gradient passes of a plan's steps (one pass = one image through forward and backward).

An order-of-magnitude budget for ``--dry-run``, computed from the requests alone (no data read):
training counts every epoch's images times (1 + attack steps) when adversarial, attacks count
images x steps x restarts (x binary-search rounds where the attack has them). Forward-only work
(evaluation tables, kernel statistics) counts 0.
"""

from __future__ import annotations

from typing import Any

# (train, test) split sizes of the registered datasets (the canonical releases).
SPLIT_SIZES = {"fashion_mnist": (60000, 10000), "mnist": (60000, 10000), "cifar10": (50000, 10000),
               "imagenette": (9469, 3925), "imagenet9": (45000, 1800)}
CLASSES = {"fashion_mnist": 10, "mnist": 10, "cifar10": 10, "imagenette": 10, "imagenet9": 9}


def _sizes(plan, data, split: str) -> int | None:
    """Images of ``split`` a step reads: the subset, else the dataset's (or the producing step's) size."""
    subset = data.train_subset if split == "train" else data.test_subset
    produced = _produced(plan, data.dataset, split)
    full = produced if produced is not None else SPLIT_SIZES.get(data.dataset, (None, None))[split == "test"]
    if full is None:
        return subset
    n = min(subset, full) if subset else full
    if split == "train" and data.validation:
        n -= int(data.validation) if data.validation >= 1 else int(n * data.validation)
    return n


def _produced(plan, dataset: str, split: str) -> int | None:
    """Size of a split written by an earlier step (robustify: the robustified split; relabel: its split)."""
    for step in plan.steps:
        if str(step.out) == str(dataset):
            request = step.request
            own = getattr(request, "split", None)
            n = _sizes(plan, request.data, split)
            if step.job == "relabel" and own == split and getattr(request, "per_image", "one") == "all":
                n = None if n is None else n * CLASSES.get(request.data.dataset, 10)
            return n
    return None


def _attack_passes(attack) -> int:
    threat = attack.threat
    rounds = int(attack.options.get("search_steps", 1)) if isinstance(attack.options, dict) else 1
    return int(threat.steps) * int(threat.restarts) * max(rounds, 1)


def gradient_passes(plan, step) -> int | None:
    """Estimated gradient passes of ``step`` (None when a dataset's size is unknown)."""
    r: Any = step.request
    job = step.job
    if job in ("robust-table", "kernels", "evaluate"):
        return 0
    if job == "train":
        n = _sizes(plan, r.data, "train")
        per = 1 + ((1 if r.fast else r.attack_steps) if r.robust else 0)
        test = _sizes(plan, r.data, "test") or 0
        return None if n is None else r.epochs * n * per + test * r.eval_steps
    if job == "robustify":
        n = _sizes(plan, r.data, r.split)
        return None if n is None else n * r.steps
    if job == "relabel":
        n = _sizes(plan, r.data, r.split)
        k = CLASSES.get(r.data.dataset, 10) if r.per_image == "all" else 1
        return None if n is None else n * k * r.steps * r.restarts
    if job == "transfer-eval":
        n = _sizes(plan, r.data, "test")
        return None if n is None else n * len(r.sources) * _attack_passes(r.attack)
    if job in ("cam", "frequency", "perturbations", "features", "psr"):
        n = _sizes(plan, r.data, "test")
        if job == "features" and getattr(r, "images", None):
            n = r.images
        refine = len(getattr(r, "refine", ())) if job == "psr" else 0
        return None if n is None else n * len(r.models) * _attack_passes(r.attack) * (1 + refine)
    if job == "response":
        n = _sizes(plan, r.data, "test")
        models = len(r.models) + sum(1 for _ in r.checkpoints) * 10
        attacks = _attack_passes(r.attack) + sum(_attack_passes(a) for a in r.also)
        return None if n is None else n * max(models, 1) * attacks
    if job == "retrain":
        n_train, n_test = _sizes(plan, r.data, "train"), _sizes(plan, r.data, "test")
        if n_test is None or (n_train is None and not r.reinit_only):
            return None
        cells = 12 if r.sweep else 1  # a ResNet-18 / VGG cut-off sweep: ~2 parts x 6 modules
        per = 1 + ((1 if r.fast else r.attack_steps) if r.mode == "adversarial" else 0)
        train = 0 if r.reinit_only else cells * r.epochs * n_train * per
        return train + (cells + 1) * n_test * r.eval_steps
    return None


def human(n: int | None) -> str:
    """``1.2e6``-style text of an estimate."""
    return "unknown (dataset size not known in advance)" if n is None else f"{n:.2g}" if n >= 1000 else str(n)
