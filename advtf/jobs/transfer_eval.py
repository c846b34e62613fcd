"""``advtf transfer-eval``: transfer attacks from sources of increasing robustness (Springer et al. 2021, Sec. 5.2).

The source-by-victim matrix is :func:`advtf.analysis.transfer.transfer_matrix`'s; this job loads
and checks every source and victim before the first attack, counts batch by batch in resumable
chunks (``--resume``; shared by the workers of a cluster run) and writes the table, the curves of
Figures 5/6 and ``results.json``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from advtf import validation as check
from advtf.adversarial import AttackRequest
import numpy as np

from advtf.analysis.transfer import matrix_from_counts, order_sources, transfer_batch_counts
from advtf.data.rows import split_rows
from advtf.errors import UserError
from advtf.inputs import DataRequest, check_model_fits, load_named_models, model_fingerprint
from advtf.jobs import Request
from advtf.jobs.attack import check_attack_request, chunk_size
from advtf.plots.transfer import transfer_curves
from advtf.runs import write_json, write_table
from advtf.runs.chunks import ChunkStore, process_in_chunks
from advtf.runs.directory import BOOKKEEPING

RESERVED = ("source", "eps", "white_box")  # columns of transfer.csv besides the victims


@dataclasses.dataclass(frozen=True)
class TransferRequest(Request):
    """Options of ``advtf transfer-eval``: ``{eps text: model}`` sources, ``{name: model}`` victims."""

    sources: dict
    victims: dict
    attack: AttackRequest
    data: DataRequest = DataRequest()
    batch_size: int = 128
    jit: bool = False

    def __post_init__(self):
        if not self.sources or not self.victims:
            raise UserError("transfer-eval needs at least one --source EPS=MODEL and one --victim NAME=MODEL")
        order_sources(self.sources)  # every key a distinct number >= 0
        clash = [v for v in self.victims if v in RESERVED]
        if clash:
            raise UserError(f"--victim {clash[0]}: that name is a column of transfer.csv; choose another name")
        check_attack_request(self.attack)
        if self.attack.targeted and self.attack.target_mode == "given":
            raise UserError("transfer-eval needs targets other than the label; drop --target-class "
                            "(--target-mode random or next)")
        check.count("--batch-size", self.batch_size)
        check.seed(self.data.seed)

    def inputs(self) -> list[str]:
        return [*map(str, self.sources.values()), *map(str, self.victims.values()), self.data.dataset]


def run(request: TransferRequest, run, *, progress=None, report=None) -> dict[str, Any]:
    """Transfer attacks of the test split from every source to every victim; writes the run directory.

    Sources are ordered by ε in every output. Writes ``transfer.csv/.md`` (sources × victims, plus
    each source's white-box value), ``transfer.png`` (metric against source ε, one line per victim)
    and ``results.json`` with keys ``metric``, ``table``, ``white_box``, ``clean``, ``n``, ``sources``
    (name, eps, model, by ε), ``x_axis``, ``dataset``, ``inputs`` and the attack's ``attack``,
    ``threat``, ``options``, ``targeted``, ``target_mode``, ``attack_target``.
    """
    attack, data, victims = request.attack, request.data, request.victims
    ordered = order_sources(request.sources)
    splits = data.load()
    info = splits.info
    attack.check(info.num_classes)
    test = splits.require("test")
    source_models = load_named_models({name: path for name, _, path in ordered}, "--source")
    victim_models = load_named_models(victims, "--victim")
    for option, models in (("--source", source_models), ("--victim", victim_models)):
        for name, model in models.items():
            check_model_fits(model, info, what=f"{option} {name}")
    run.record_inputs(dataset=splits.fingerprint,
                      sources={name: model_fingerprint(path) for name, _, path in ordered},
                      victims={name: model_fingerprint(path) for name, path in victims.items()})
    n = int(splits.sizes.get("test", 0))
    if not n:
        raise UserError("the dataset's test split is empty; nothing to attack")
    # Counts per batch, kept by resumable chunk; batch i is seeded as in one pass (seed, i), whatever resumed.
    images = split_rows(test, n, run.path / BOOKKEEPING / "rows")
    ordered_sources = {name: source_models[name] for name, _, _ in ordered}

    def batch(index):
        counts = transfer_batch_counts(ordered_sources, victim_models, images[index], images.labels[index], attack,
                                       num_classes=info.num_classes, seed=data.seed, jit=request.jit,
                                       batch=int(index[0]) // request.batch_size)
        return {k: np.array([v], np.int64) for k, v in counts.items()}

    store = ChunkStore(run.store)
    done = process_in_chunks(store, n, chunk_size=chunk_size(request.batch_size), batch_size=request.batch_size,
                             batch_fn=batch, progress=progress, desc=f"{attack.name} from {len(ordered)} sources")
    totals = {k: sum(int(np.sum(c[k])) for c in store.iterate(done.chunks, [k]))
              for k in _count_keys(len(ordered), len(victims))}
    matrix = matrix_from_counts(ordered_sources, victims, totals, targeted=attack.targeted)
    results = {**matrix, "sources": [{"name": name, "eps": eps, "model": str(path)} for name, eps, path in ordered],
               "x_axis": "categorical: sources equally spaced in order of eps, labelled by eps",
               **attack.to_json(), "dataset": info.name,
               "inputs": {"sources": {name: str(path) for name, _, path in ordered},
                          "victims": {name: str(path) for name, path in victims.items()},
                          "dataset": data.dataset, "test_subset": data.test_subset, "seed": data.seed}}
    write_json(run.path / "results.json", results)
    rows = [{"source": name, "eps": eps, **matrix["table"][name], "white_box": matrix["white_box"][name]}
            for name, eps, _ in ordered]
    write_table(run.path, "transfer", rows, ["source", "eps", *victims, "white_box"])
    kind = "targeted" if attack.targeted else "untargeted"
    transfer_curves(matrix["table"], run.path / "transfer.png", metric=matrix["metric"],
                    white_box=matrix["white_box"], clean=matrix["clean"],
                    title=f"{kind} {attack.name} transfer ({attack.threat.norm}, eps={attack.threat.eps:g}) "
                          f"on {info.name}")
    return results


def _count_keys(sources: int, victims: int) -> list[str]:
    """The keys of :func:`advtf.analysis.transfer.transfer_batch_counts` for these many sources and victims."""
    return ["n", *(f"white_box_{s}" for s in range(sources)),
            *(f"hits_{s}_{v}" for s in range(sources) for v in range(victims)),
            *(f"clean_{v}" for v in range(victims))]
