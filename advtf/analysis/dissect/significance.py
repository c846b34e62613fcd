"""Significance of the interpretability of the most sensitive units (Xu et al. 2019, Figure 7a).

The p-value of the summed ``IoU(k)`` of the ``N`` most sensitive units against ``draws`` random
``N``-subsets: ``p = (1 + #{random >= observed}) / (1 + draws)``.
"""

from __future__ import annotations

import numpy as np

DEFAULT_NS = (10, 20, 30, 50, 80, 100)


def sensitivity_p_values(unit_iou: np.ndarray, sensitivity: np.ndarray, ns, *, draws: int = 10000,
                         seed: int = 0) -> list[dict]:
    """Figure 7a: p-value of the summed ``IoU(k)`` of the ``N`` most sensitive units, per ``N``.

    The background distribution is the summed IoU of ``draws`` uniformly random ``N``-subsets (one
    random permutation of the units per draw; its prefixes give every ``N``), seeded.
    ``p = (1 + #{random >= observed}) / (1 + draws)``; ``N`` above the unit count is skipped.
    """
    unit_iou = np.asarray(unit_iou, np.float64)
    units = len(unit_iou)
    order = np.argsort(-np.asarray(sensitivity, np.float64), kind="stable")
    valid = [n for n in ns if 0 < n <= units]
    observed = {n: float(unit_iou[order[:n]].sum()) for n in valid}
    at_least = {n: 0 for n in valid}
    random_sum = {n: 0.0 for n in valid}
    rng = np.random.default_rng([seed, 7])
    chunk = max(1, (1 << 22) // max(units, 1))
    for start in range(0, draws, chunk):
        size = min(chunk, draws - start)
        permutations = np.argsort(rng.random((size, units)), axis=1)
        prefix = np.cumsum(unit_iou[permutations], axis=1)
        for n in valid:
            sums = prefix[:, n - 1]
            tolerance = 1e-9 * max(1.0, abs(observed[n]))  # the same units summed in another order
            at_least[n] += int((sums >= observed[n] - tolerance).sum())
            random_sum[n] += float(sums.sum())
    rows = []
    for n in ns:
        if n in observed:
            rows.append({"n": n, "observed_iou_sum": observed[n], "random_iou_sum_mean": random_sum[n] / draws,
                         "p_value": (1 + at_least[n]) / (1 + draws), "skipped": None})
        else:
            rows.append({"n": n, "observed_iou_sum": None, "random_iou_sum_mean": None, "p_value": None,
                         "skipped": f"the layer has {units} units"})
    return rows
