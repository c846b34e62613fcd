"""The ``advtf relabel`` request: the threat it builds and the options it refuses before any work."""

import math

import pytest

from advtf.errors import UserError
from advtf.jobs.relabel import RelabelRequest


def test_threat_and_recorded_parameters():
    request = RelabelRequest(model="runs/std", mode="negative", eps=2.0, steps=10, step_size=0.3)
    assert request.threat.eps == 2.0 and request.threat.alpha == 0.3 and not request.threat.random_start
    assert RelabelRequest(model="m", restarts=3).threat.random_start  # restarts draw random starts
    assert RelabelRequest(model="m", step_size=None, steps=200, eps=0.5).threat.alpha == pytest.approx(2.5 * 0.5 / 200)
    assert request.parameters() == {"mode": "negative", "per_image": "one", "attack": "pgd",
                                    "threat": request.threat.to_json(), "options": {}, "split": "train"}
    assert request.inputs() == ["runs/std", "fashion_mnist"]


@pytest.mark.parametrize("change, words", [
    (dict(eps=math.nan), "--eps must be a finite"),
    (dict(eps=-0.5), "--eps must be > 0"),
    (dict(step_size=math.inf), "--step-size must be a finite"),
    (dict(steps=0), "--steps must be >= 1"),
    (dict(restarts=0), "--restarts must be >= 1"),
    (dict(chunk_size=0), "--chunk-size must be >= 1"),
    (dict(batch_size=0), "--batch-size must be >= 1"),
    (dict(figure_examples=0), "--figure-examples must be >= 1"),
    (dict(mode="negative", per_image="all"), "--mode zero"),
    (dict(attack="nope"), "nope"),
    (dict(attack="cw", norm="linf"), "does not support --norm linf"),
])
def test_bad_requests_are_refused(change, words):
    with pytest.raises(UserError, match=words):
        RelabelRequest(**{"model": "m", **change})
