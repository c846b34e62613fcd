"""Requests of the attacking jobs (attack, evaluate, transfer-eval) refuse bad values before any work,
including those the CLI's parser lets through (inf from Python, -O values)."""

import dataclasses
import math

import pytest

from advtf.adversarial import AttackRequest
from advtf.attacks import Threat
from advtf.errors import UserError
from advtf.inputs import DataRequest
from advtf.jobs.attack import AttackJobRequest
from advtf.jobs.evaluate import EvaluateRequest
from advtf.jobs.transfer_eval import TransferRequest

L2 = Threat(norm="l2", eps=0.5, steps=2)


def _attack(**fields):
    return AttackJobRequest(model="m.keras", attack=AttackRequest("pgd", L2), **fields)


def _with_attack(**fields):
    return AttackJobRequest(model="m.keras", attack=AttackRequest(**{"name": "pgd", "threat": L2, **fields}))


@pytest.mark.parametrize("build, words", [
    (lambda: _with_attack(threat=dataclasses.replace(L2, eps=math.inf)), "--eps must be a finite number"),
    (lambda: _with_attack(threat=Threat(norm="linf", eps=0.1, step_size=math.inf)), "--step-size must be a finite"),
    (lambda: _with_attack(name="cw", options={"confidence": math.inf}), "-O confidence must be a finite number"),
    (lambda: _with_attack(name="cw", options={"nope": 1.0}), "no option 'nope'"),
    (lambda: _with_attack(name="str"), "use --norm linf"),
    (lambda: _with_attack(targeted=True, target_class=-2), "--target-class must be >= 0"),
    (lambda: _with_attack(target_class=2), "only applies with --targeted"),
    (lambda: _with_attack(attack_target="guess"), "--attack-target"),
    (lambda: _attack(split="validation"), "--split"),
    (lambda: _attack(figure_examples=-1), "--figure-examples must be >= 0"),
    (lambda: _attack(batch_size=0), "--batch-size must be >= 1"),
    (lambda: _attack(data=DataRequest(seed=2 ** 32)), "--seed"),
    (lambda: EvaluateRequest(model="m", threat=L2, strategy="gpu-farm"), "--strategy"),
    (lambda: EvaluateRequest(model="m", threat=L2, options={"schedule": "cosine"}, attack="fgsm"), "no option"),
    (lambda: TransferRequest(sources={"0": "a"}, victims={"eps": "b"}, attack=AttackRequest("pgd", L2)),
     "column of transfer.csv"),
    (lambda: TransferRequest(sources={"0": "a", "0.0": "b"}, victims={"v": "b"}, attack=AttackRequest("pgd", L2)),
     "same eps"),
])
def test_requests_refuse_bad_values(build, words):
    with pytest.raises(UserError, match=words.replace("(", r"\(").replace("[", r"\[")):
        build()


def test_a_good_request_is_recorded_as_json():
    request = _with_attack(name="cw", options={"confidence": 1.0}, targeted=True, target_mode="next")
    recorded = request.to_json()
    assert recorded["attack"]["threat"]["norm"] == "l2" and recorded["attack"]["options"] == {"confidence": 1.0}
    assert recorded["data"]["seed"] == 0 and request.inputs() == ["m.keras", "fashion_mnist"]
