"""``advtf frequency``: filtered and frequency-swapped accuracy and mean spectra of adversarial examples
(the local-properties paper, Sec. 3.1, Figures 1, 2 and 6).

The filters, counts and spectra are :mod:`advtf.analysis.frequency`; this job attacks every model
in resumable chunks (:class:`~advtf.jobs.attack_passes.AttackPasses`: ``--resume``, shared by the
workers of a cluster run), then measures and writes the results, the table, the spectra and both
figures. :class:`AttackedModelsRequest` is the request shape shared by the analyses that attack
several models on one test split (``frequency``, ``perturbations``, ``features``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from advtf import validation as check
from advtf.adversarial import AttackRequest
from advtf.analysis.frequency import (CURVES, default_radii, low_pass_masks, max_radius, measure_model,
                                      model_entry)
from advtf.errors import UserError
from advtf.inputs import DataRequest, fingerprints, load_models, model_name
from advtf.jobs import Request
from advtf.jobs.attack import check_attack_request
from advtf.jobs.attack_passes import AttackPasses
from advtf.plots.local import frequency_figure, spectrum_figure
from advtf.runs import write_json, write_table


@dataclasses.dataclass(frozen=True)
class AttackedModelsRequest(Request):
    """Models attacked one by one on the test split of ``data`` with ``attack``."""

    models: tuple[str, ...]
    attack: AttackRequest
    data: DataRequest = DataRequest()
    batch_size: int = 100

    def __post_init__(self):
        self.check_models()
        check_attack_request(self.attack)
        check.count("--batch-size", self.batch_size)
        check.seed(self.data.seed)

    def check_models(self) -> None:
        """UserError when there is nothing to analyse."""
        if not self.models:
            raise UserError("give at least one MODEL (a .keras file or a run directory of `advtf train`)")

    def inputs(self) -> list[str]:
        return [*self.models, self.data.dataset]


@dataclasses.dataclass(frozen=True)
class FrequencyRequest(AttackedModelsRequest):
    """Options of ``advtf frequency``; ``radii`` None: every integer radius to past the spectrum's corner."""

    radii: tuple[float, ...] | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.radii is not None:
            if not self.radii:
                raise UserError("--radii is empty; give radii >= 0, e.g. --radii 0,2,4,8,16")
            for r in self.radii:
                check.non_negative("--radii", r)


def run(request: FrequencyRequest, run, *, progress=None, report=None) -> dict[str, Any]:
    """Figures 1, 2 and 6 for every model: filtered and frequency-swapped accuracy, spectra.

    Each model is attacked on the test split; accuracies are against the true labels. Writes
    ``results.json``, ``frequency.csv/.md`` (one row per model and radius, one column per curve),
    ``spectra.json`` (the ``[H, W]`` mean log-amplitude spectra), ``frequency.png`` and ``spectrum.png``.

    ``results.json`` keys: ``radii``, ``max_radius``, ``high_radius`` (where "high frequencies"
    start for the spectrum summary: ``min(H, W) / 4``), ``models`` (per model: ``model``, ``n``,
    ``clean_accuracy``, ``adversarial_accuracy``, ``curves`` {curve: accuracy per radius},
    ``best_low_adversarial`` {radius, accuracy}, ``log_ratio_high`` and ``log_ratio_low`` (mean of
    log|adv| - log|nat| at distance >= / < ``high_radius``)), the attack, ``threat``, ``dataset``.
    """
    attack, data, paths = request.attack, request.data, list(request.models)
    splits = data.load()
    attack.check(splits.info.num_classes)
    height, width = splits.info.image_shape[:2]
    radii = default_radii(height, width) if request.radii is None else [float(r) for r in request.radii]
    masks = low_pass_masks(height, width, radii)
    models = load_models(paths, splits.info)
    run.record_inputs(dataset=splits.fingerprint, models=fingerprints(paths))
    passes = AttackPasses.of_test_split(run, splits, batch_size=request.batch_size, seed=data.seed,
                                        progress=progress)
    for k, model in enumerate(models):
        passes.add(model, attack, f"{attack.name} on model {k + 1}")
    passes.run_all()  # a non-chief worker of a cluster run stops here
    measured = [measure_model(model, splits, attack, masks, batch_size=request.batch_size, seed=data.seed,
                              progress=progress, desc=f"filters, model {k + 1}", natural=k == 0, pairs=passes.pairs)
                for k, model in enumerate(models)]
    natural_log = measured[0]["natural_log"] / measured[0]["n"]
    high_radius = min(height, width) / 4
    entries = [model_entry(p, m, natural_log, radii, high_radius) for p, m in zip(paths, measured)]
    table = [{"model": e["model"], "radius": r, **{c: round(e["curves"][c][i], 4) for c in CURVES}}
             for e in entries for i, r in enumerate(radii)]
    write_table(run.path, "frequency", table, ["model", "radius", *CURVES])
    write_json(run.path / "spectra.json", {
        "note": "mean over images and channels of log(|fftshift(fft2(x))| + 1e-6), centred, [H][W]",
        "natural": natural_log, **{e["model"]: e["adversarial_spectrum"] for e in entries}})
    frequency_figure(radii, [{**e, "model": model_name(e["model"])} for e in entries], run.path / "frequency.png",
                     curves=CURVES,
                     title=f"{attack.name} ({attack.threat.norm}, eps={attack.threat.eps:g})")
    spectrum_figure(natural_log, [(model_name(e["model"]), e.pop("adversarial_spectrum")) for e in entries],
                    run.path / "spectrum.png")
    results = {"radii": radii, "max_radius": max_radius(height, width), "high_radius": high_radius,
               "models": entries, **attack.to_json(), "dataset": splits.info.name}
    write_json(run.path / "results.json", results)
    return results
