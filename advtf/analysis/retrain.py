"""Summaries of Siddiqui & Breuel's (2021) block-wise retraining sweeps: pure computation on cell results.

The sweep itself (cells, resume, files) is the job :mod:`advtf.jobs.retrain`; the retraining
protocol is :mod:`advtf.training.retrain`.
"""

from __future__ import annotations

import numpy as np

METRICS = ("clean_accuracy", "robust_accuracy")


def combination_medians(rows: list[dict], names: list[str]) -> list[dict]:
    """Per unit: median clean and robust accuracy over the cells that retrain it and over those that don't (Fig. 6).

    ``rows`` are cells with ``indices`` (the retrained units) and the two accuracies; a side
    without cells has ``None`` medians.
    """
    out = []
    for j, name in enumerate(names):
        with_j = [r for r in rows if j in r["indices"]]
        without = [r for r in rows if j not in r["indices"]]
        entry = {"module": name, "cells_with": len(with_j), "cells_without": len(without)}
        for metric in METRICS:
            entry[f"{metric}_with"] = float(np.median([r[metric] for r in with_j])) if with_j else None
            entry[f"{metric}_without"] = float(np.median([r[metric] for r in without])) if without else None
        out.append(entry)
    return out
