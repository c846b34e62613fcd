"""Collects the Springer-chain results under runs/springer into Markdown tables (stdout).

Usage: python docs/experiments/springer_summary.py [RUNS_DIR]
"""

import json
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/springer")


def load(name):
    path = root / name / "results.json"
    return json.loads(path.read_text()) if path.exists() else None


def table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |")
    print()


print("### Classifiers (accuracy on the same test images; PGD-20 on the true label at the eval eps)\n")
rows = []
for name in sorted(p.name for p in root.iterdir() if p.is_dir() and (p.name.startswith(("src-", "std-", "cls-")))):
    r = load(name)
    if r:
        threat = r.get("training_threat") or {}
        rows.append([name, r["model"], r.get("width"), threat.get("eps", 0.0) if r["robust_training"] else 0.0,
                     r["clean_accuracy"], r["threat"]["eps"], r["robust_accuracy"], r["epochs"], r["wall_seconds"]])
table(["run", "model", "width", "training eps", "clean acc.", "eval L2 eps", "PGD-20 acc.", "epochs", "seconds"],
      rows)

print("### Robustified test sets R_eps\n")
rows = []
for name in sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("R")):
    r = load(name)
    if r:
        rows.append([name, r["n"], r["steps"], r["step_size"], r["relative_distance_before"],
                     r["relative_distance_after"], r["images_per_second"]])
table(["set", "images", "steps", "step size", "rel. distance before", "rel. distance after", "images/s"], rows)

print("### Relabeled training sets\n")
rows = []
for name in ("D-zero", "D-negative", "D-zero-eps1", "D-negative-eps1"):
    r = load(name)
    if r:
        hist = r["label_histogram"]
        rows.append([name, r["n"], r["threat"]["eps"], r["threat"]["steps"], r["success_rate"],
                     r["success_rate_label_changed"], f"{min(hist.values())}..{max(hist.values())}",
                     r["images_per_second"]])
table(["set", "examples", "eps", "steps", "targeted success", "success (label changed)", "per-class counts",
       "images/s"], rows)

# Figure 2 of the paper across eps: the R sets share their seed images (same split, same seed).
sets = sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith("R") and (p / "results.json").exists()),
              key=lambda p: float(p.name[1:]))
if sets and len(sys.argv) > 2:
    import numpy as np

    from advtf.data import load_dataset, load_saved_elements, split_arrays
    from advtf.plots.derived import image_rows_figure

    count = 6
    first = [list(load_saved_elements(p, "test").take(count).as_numpy_iterator()) for p in sets]
    made = load(sets[0].name)  # the R sets are made from the same test subset (its size and seed)
    images, _ = split_arrays(load_dataset("fashion_mnist", test_subset=made["n"], seed=made["seed"]).test)
    seeds = np.stack([images[e["seed_index"]] for e in first[0]])
    originals = np.stack([images[e["index"]] for e in first[0]])
    columns = [("seed x0", seeds)] + [(f"R_{p.name[1:]}", np.stack([e["image"] for e in f]))
                                      for p, f in zip(sets, first)] + [("original", originals)]
    image_rows_figure(columns, Path(sys.argv[2]), title="Fashion-MNIST robustified by eps-robust ResNet20v2 sources")
    print(f"wrote {sys.argv[2]}")
