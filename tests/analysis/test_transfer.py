"""``advtf.analysis.transfer``: metrics against numpy on stand-in models, ordering, shared targets."""

import numpy as np
import pytest
import tensorflow as tf
from standins import K, predict, random_set, selector

from advtf.adversarial import AttackRequest, attack_batches
from advtf.analysis.transfer import order_sources, transfer_matrix
from advtf.attacks import Threat
from advtf.errors import UserError

PERMS = {"0": [0, 1, 2, 3], "1/16": [1, 2, 3, 0]}  # sources, by their eps text
CONSTANT = 1  # the class the constant victim always predicts
THREAT = Threat(norm="l2", eps=1.0, steps=5, step_size=0.3)


@pytest.fixture(scope="module")
def setup():
    x, y = random_set(30, 3)
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    sources = {name: selector(perm) for name, perm in PERMS.items()}
    victims = {"same-as-0": selector(PERMS["0"]), "reversed": selector([3, 2, 1, 0]),
               "constant": selector(None, constant=CONSTANT)}
    return x, y, batches, sources, victims


def _expected(setup, request):
    """The metrics computed in numpy from the attack's own images, source by source."""
    x, y, batches, sources, _ = setup
    perms = {"same-as-0": PERMS["0"], "reversed": [3, 2, 1, 0], "constant": None}
    table, white_box, targets = {}, {}, {}
    for name, model in sources.items():
        rows = list(attack_batches(model, batches, request, num_classes=K, seed=5))
        images = np.concatenate([r["image"] for r in rows])
        ref = np.concatenate([r["target"] if request.targeted else r["label"] for r in rows])
        hit = (lambda p: p == ref) if request.targeted else (lambda p: p != ref)
        white_box[name] = np.mean(hit(predict(PERMS[name], images)))
        table[name] = {v: np.mean(hit(predict(p, images, constant=CONSTANT if p is None else None)))
                       for v, p in perms.items()}
        targets[name] = ref
    return table, white_box, targets


@pytest.mark.parametrize("targeted", [False, True])
def test_transfer_metrics_equal_numpy(setup, targeted):
    x, y, batches, sources, victims = setup
    request = AttackRequest("pgd", THREAT, targeted=targeted)
    result = transfer_matrix(sources, victims, batches, request, num_classes=K, seed=5)
    table, white_box, targets = _expected(setup, request)
    assert result["metric"] == ("target_rate" if targeted else "error_rate") and result["n"] == 30
    for s in PERMS:
        assert result["white_box"][s] == pytest.approx(white_box[s])
        assert np.array_equal(result["targets"][s], targets[s])
        for v in victims:
            assert result["table"][s][v] == pytest.approx(table[s][v]), (s, v)
    # A victim identical to source 0 is attacked white-box by it.
    assert result["table"]["0"]["same-as-0"] == pytest.approx(result["white_box"]["0"])
    # The constant victim ignores the image: closed forms, same for every source.
    ref = result["targets"]["0"]
    closed = np.mean(ref == CONSTANT) if targeted else np.mean(y != CONSTANT)
    for s in PERMS:
        assert result["table"][s]["constant"] == pytest.approx(closed)
    assert result["clean"]["constant"] == pytest.approx(closed)
    natural = predict(PERMS["0"], x)
    assert result["clean"]["same-as-0"] == pytest.approx(np.mean(natural == ref if targeted else natural != y))
    if not targeted:
        assert result["white_box"]["0"] >= 0.9  # eps 1 in l2 is plenty against these linear models


def test_every_source_attacks_the_same_targets(setup):
    x, y, batches, sources, victims = setup
    request = AttackRequest("pgd", THREAT, targeted=True, target_mode="random")
    result = transfer_matrix(sources, {"constant": victims["constant"]}, batches, request, num_classes=K, seed=11)
    first, second = (result["targets"][s] for s in PERMS)
    assert np.array_equal(first, second)
    assert np.all(first != y) and len(set(first.tolist())) > 1
    other = transfer_matrix(sources, {"constant": victims["constant"]}, batches, request, num_classes=K, seed=12)
    assert not np.array_equal(other["targets"]["0"], first)  # the seed draws them


def test_sources_are_ordered_by_eps():
    got = order_sources({"0.5": "c", "0": "a", "1/16": "b", "1": "d"})
    assert [(n, e) for n, e, _ in got] == [("0", 0.0), ("1/16", 0.0625), ("0.5", 0.5), ("1", 1.0)]
    with pytest.raises(UserError, match="same eps"):
        order_sources({"0": "a", "0.0": "b"})
    with pytest.raises(UserError, match="not a number"):
        order_sources({"robust": "a"})
    with pytest.raises(UserError, match=">= 0"):
        order_sources({"-1": "a"})
