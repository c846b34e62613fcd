"""Learning-rate schedules: the default piecewise drops at 50% and 75% of the epochs."""

import numpy as np
import pytest

from advtf.errors import UserError
from advtf.training.schedules import default_milestones, learning_rate


def _rates(schedule, steps):
    return np.array([float(schedule(k)) for k in steps])


@pytest.mark.parametrize("epochs, steps_per_epoch", [(4, 3), (10, 4), (100, 2)])
def test_default_milestones_divide_by_ten_at_half_and_three_quarters(epochs, steps_per_epoch):
    total = epochs * steps_per_epoch
    schedule = learning_rate("piecewise", 0.1, steps_per_epoch=steps_per_epoch, epochs=epochs,
                             milestones=default_milestones(epochs))
    steps = np.arange(total + 1)
    # Keras' PiecewiseConstantDecay: the rate after k updates; a boundary step still has the old rate.
    expected = np.where(steps <= total // 2, 0.1, np.where(steps <= total * 3 // 4, 0.01, 0.001))
    np.testing.assert_allclose(_rates(schedule, steps), expected, rtol=1e-6)


def test_the_papers_milestones_at_100_epochs():
    assert default_milestones(100) == (50, 75)
    assert default_milestones(10) == (5, 7.5)


def test_given_milestones_and_constant():
    schedule = learning_rate("piecewise", 1.0, steps_per_epoch=5, epochs=4, milestones=(1, 3))
    np.testing.assert_allclose(_rates(schedule, [0, 5, 6, 15, 16]), [1, 1, 0.1, 0.1, 0.01], rtol=1e-6)
    assert learning_rate("piecewise", 0.1, steps_per_epoch=5, epochs=4, milestones=()) == 0.1
    assert learning_rate("constant", 0.1, steps_per_epoch=5, epochs=4, milestones=(1,)) == 0.1
    with pytest.raises(UserError, match="increasing positive"):
        learning_rate("piecewise", 0.1, steps_per_epoch=5, epochs=4, milestones=(3, 1))
