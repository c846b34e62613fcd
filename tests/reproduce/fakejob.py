"""A fake job for the reproduce tests: adds its own value to its sources' values; no TensorFlow work.

Registered into a copied JOBS table by the tests (like tests/test_extending.py). ``CALLS`` records
the output directory of every run; ``FAIL`` names a value at which the job raises (a kill).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from advtf import validation as check
from advtf.jobs import Request
from advtf.plots.figure import new_figure, save
from advtf.runs import write_json, write_table

CALLS: list[str] = []
FAIL: set[int] = set()


@dataclasses.dataclass(frozen=True)
class FakeRequest(Request):
    value: int = 1
    sources: tuple = ()
    scale: float = 1.0

    def __post_init__(self):
        check.count("--value", self.value, minimum=0)
        check.positive("--scale", self.scale)


def run(request: FakeRequest, run, *, progress=None, report=None) -> dict:
    """``total = scale * value + the sources' totals``; a table and a figure as every job writes."""
    if request.value in FAIL:
        raise RuntimeError(f"killed at value {request.value}")
    CALLS.append(Path(run.out).name)
    total = request.scale * request.value + sum(json.loads((Path(s) / "results.json").read_text())["total"]
                                                for s in request.sources)
    results = {"total": total, "value": request.value, "nested": {"list": [total, -total]}}
    write_json(run.path / "results.json", results)
    write_table(run.path, "total", [{"total": total}])
    fig, axes = new_figure(1, 1, figsize=(2, 2))
    axes[0, 0].bar([0], [total])
    save(fig, run.path / "total.png", title="total")
    return results
