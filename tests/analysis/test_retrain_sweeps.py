"""Fig. 6 of Siddiqui & Breuel (2021): medians over module subsets with and without each module, by hand."""

import itertools

import numpy as np
import pytest

from advtf.analysis.retrain import combination_medians

NAMES = ["m0", "m1", "m2", "m3"]
SUBSETS = [c for r in range(5) for c in itertools.combinations(range(4), r)]


def test_combination_medians_by_hand():
    # Four modules, a hand-made accuracy per subset: robust = 0.5 if m0 is retrained else 0.1, plus 0.01 per module.
    rows = [{"indices": list(s), "clean_accuracy": 0.8 - 0.05 * len(s),
             "robust_accuracy": (0.5 if 0 in s else 0.1) + 0.01 * len(s)} for s in SUBSETS]
    medians = combination_medians(rows, NAMES)
    # With m0: 8 subsets of sizes 1,2,2,2,3,3,3,4 -> robust 0.51..0.54, median of (0.52, 0.53) at positions 4, 5.
    assert medians[0]["robust_accuracy_with"] == pytest.approx(0.525)
    # Without m0: sizes 0,1,1,1,2,2,2,3 -> 0.10..0.13, median 0.115.
    assert medians[0]["robust_accuracy_without"] == pytest.approx(0.115)
    # m1 with: half contain m0 -> values {0.11,0.12,0.12,0.13} and {0.52,0.53,0.53,0.54}: median (0.13+0.52)/2.
    assert medians[1]["robust_accuracy_with"] == pytest.approx(0.325)
    for m in medians:
        j = int(m["module"][1:])
        with_j = [r["clean_accuracy"] for r in rows if j in r["indices"]]
        assert m["clean_accuracy_with"] == pytest.approx(float(np.median(with_j)))
        assert m["cells_with"] == m["cells_without"] == 8


def test_a_side_without_cells_has_no_median():
    rows = [{"indices": [0], "clean_accuracy": 0.3, "robust_accuracy": 0.2},
            {"indices": [0, 1], "clean_accuracy": 0.5, "robust_accuracy": 0.1}]
    m0, m1 = combination_medians(rows, ["m0", "m1"])
    assert m0["clean_accuracy_with"] == pytest.approx(0.4) and m0["clean_accuracy_without"] is None
    assert m0["cells_without"] == 0
    assert m1["robust_accuracy_with"] == pytest.approx(0.1) and m1["robust_accuracy_without"] == pytest.approx(0.2)
