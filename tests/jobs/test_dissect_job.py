"""The ``advtf dissect`` job: an interrupted run resumes to the result of an uninterrupted one, and a
resume with other options is refused."""

import pytest

from advtf.errors import UserError


class _Stop(Exception):
    pass


def _interrupting(stage: str, after: int):
    """A progress factory whose bars of ``stage`` raise after ``after`` batches (a job cut short)."""
    calls = {"n": 0}

    class Bar:
        def __init__(self, total, desc, unit):
            self.desc = desc

        def update(self, k):
            if self.desc.startswith(stage):
                calls["n"] += 1
                if calls["n"] > after:
                    raise _Stop

        def close(self):
            pass

    return Bar


def test_interrupted_job_resumes_to_the_same_result(tmp_path, monkeypatch):
    import dataclasses

    import advtf.jobs.attack_passes as passes_module

    from advtf.adversarial import AttackRequest
    from advtf.attacks import Threat
    from advtf.jobs import execute
    from advtf.jobs.dissect import DissectRequest
    from advtf.models import create_model, save_model

    model = save_model(create_model("test_cnn", input_shape=(12, 12, 1), num_classes=10, seed=0), tmp_path / "m.keras")
    attack = AttackRequest("pgd", Threat(norm="linf", eps=0.1, steps=2, step_size=None, restarts=1))
    request = DissectRequest(model=str(model), attack=attack, layers=("m0",), concept_images=16, attack_images=12,
                             ns=(5,), draws=100, batch_size=4, checkpoint_every=1, show_images=2, show_units=2)
    monkeypatch.setattr(passes_module, "CHUNK_BATCHES", 1)  # the attack's chunks: one batch each
    full = execute("dissect", request, out=tmp_path / "full")
    # the attack pass comes first (its chunks), then the thresholds, the IoU counts and the sensitivity sums
    for stage in ("pgd", "IoU", "sensitivity"):
        out = tmp_path / f"cut-{stage}"
        with pytest.raises(_Stop):
            execute("dissect", request, out=out, progress=_interrupting(stage, 2))
        partial = out.with_name(out.name + ".partial")
        assert (partial / "resume" / "dissect_thresholds.npz").exists() == (stage != "pgd")
        assert (partial / "resume" / "dissect_sensitivity.npz").exists() == (stage == "sensitivity")
        assert (partial / "resume" / "pass0_00000").exists()  # the attack's first chunk at least
        with pytest.raises(UserError, match="other options"):
            execute("dissect", dataclasses.replace(request, batch_size=8), out=out, resume=True)
        resumed = execute("dissect", request, out=out, resume=True)
        assert resumed["layers"]["m0"]["unit_rows"] == full["layers"]["m0"]["unit_rows"]
        assert resumed["attack_success_rate"] == full["attack_success_rate"]
        assert not (out / "resume").exists() and (out / "segmentation_m0.png").exists()


@pytest.mark.parametrize("change, words", [
    ({"attack_targeted": True}, "untargeted"),  # the CLI has no --targeted; a library caller might pass one
    ({"detector_iou": 0.0}, "--detector-iou must be in (0, 1)"),
    ({"layers": ("m0", "")}, "--layers"),
    ({"ns": ()}, "--top-n"),
    ({"budget": 0}, "--quantile-budget must be >= 1"),
    ({"split": "test"}, "--split must be one of all, train, val"),
    ({"union": "any"}, "--union-images"),
    ({"unit_score": "median"}, "--unit-iou"),
])
def test_request_refuses_bad_values_before_any_work(tmp_path, change, words):
    from advtf.adversarial import AttackRequest
    from advtf.attacks import Threat
    from advtf.jobs.dissect import DissectRequest

    change = dict(change)
    attack = AttackRequest("pgd", Threat(norm="linf", eps=0.1, steps=2, step_size=None, restarts=1),
                           targeted=change.pop("attack_targeted", False))
    with pytest.raises(UserError) as error:
        DissectRequest(model=str(tmp_path / "missing.keras"), attack=attack, **change)
    assert words in str(error.value) and "\n" not in str(error.value)
