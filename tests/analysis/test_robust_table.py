"""``advtf.analysis.robust_table``: the accuracy matrix against numpy."""

import numpy as np
import pytest
import tensorflow as tf
from standins import predict, random_set, selector

from advtf.analysis.robust_table import accuracy_matrix, count_hits
from advtf.errors import UserError

PERMS = {"identity": [0, 1, 2, 3], "shifted": [1, 2, 3, 0]}


def test_count_hits():
    assert count_hits([0, 1, 2, 2], [0, 1, 1, 2]) == 3
    assert count_hits([0, 1, 2, 2], [0, 1, 1, 2], equal=False) == 1


def test_accuracy_matrix_equals_numpy():
    models = {name: selector(perm) for name, perm in PERMS.items()}
    models["always-2"] = selector(None, constant=2)
    sets = {"a": random_set(37, 0), "b": random_set(20, 1)}  # 37 = 5 batches of 8 with a partial one
    batches = {t: tf.data.Dataset.from_tensor_slices(xy).batch(8) for t, xy in sets.items()}
    bar = _Counter()
    result = accuracy_matrix(models, batches, progress=bar)
    assert result["n"] == {"a": 37, "b": 20} and bar.count == 57
    assert list(result["accuracy"]) == ["identity", "shifted", "always-2"]
    for t, (x, y) in sets.items():
        for name, perm in PERMS.items():
            assert result["accuracy"][name][t] == pytest.approx(np.mean(predict(perm, x) == y))
        assert result["accuracy"]["always-2"][t] == pytest.approx(np.mean(y == 2))


def test_empty_test_set_is_refused():
    empty = tf.data.Dataset.from_tensor_slices(random_set(0, 0)).batch(4)
    with pytest.raises(UserError, match="empty"):
        accuracy_matrix({"m": selector(PERMS["identity"])}, {"t": empty})


class _Counter:
    count = 0

    def update(self, n):
        self.count += n

