"""Optimisers and learning-rate schedules, counted in epochs as the papers state them."""

from __future__ import annotations

import keras

from advtf.errors import UserError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("piecewise", "cosine", "constant")
# Where ``piecewise`` divides the lr by 10 when no milestones are given: at 50% and 75% of the
# epochs, as the local-properties paper's 50 and 75 of 100 epochs (and Madry et al.'s recipe).
DEFAULT_MILESTONE_FRACTIONS = (0.5, 0.75)


def default_milestones(epochs: int) -> tuple[float, ...]:
    """The epochs (possibly fractional) where ``piecewise`` drops the lr by default: 50% and 75% of ``epochs``."""
    return tuple(f * epochs for f in DEFAULT_MILESTONE_FRACTIONS)


def learning_rate(schedule: str, lr: float, *, steps_per_epoch: int, epochs: int,
                  milestones=(), gamma: float = 0.1):
    """A Keras learning-rate schedule over optimiser steps.

    ``piecewise`` divides ``lr`` by ``1/gamma`` at each milestone epoch (e.g. 50, 75 as in
    the local-properties paper; fractional epochs such as :func:`default_milestones` of an odd
    ``epochs`` fall on the nearest step); no milestones keep ``lr`` constant. ``cosine``
    anneals to 0 over ``epochs``.
    """
    if schedule not in SCHEDULES:
        raise UserError(f"unknown schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")
    if schedule == "constant" or (schedule == "piecewise" and not milestones):
        return float(lr)
    if schedule == "piecewise":
        if sorted(milestones) != list(milestones) or min(milestones) <= 0:
            raise UserError(f"--lr-milestones must be increasing positive epochs (got {list(milestones)})")
        bounds = [int(round(m * steps_per_epoch)) for m in milestones]
        values = [float(lr) * gamma**i for i in range(len(bounds) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(bounds, values)
    return keras.optimizers.schedules.CosineDecay(float(lr), decay_steps=max(1, steps_per_epoch * epochs))


def make_optimizer(name: str, schedule, *, momentum: float = 0.9, nesterov: bool = False,
                   weight_decay: float = 0.0) -> keras.optimizers.Optimizer:
    """The optimiser ``name``.

    Only ``adamw`` decays weights itself (decoupled, Loshchilov & Hutter); for ``sgd`` and
    ``adam`` the training loop adds the coupled L2 term ``weight_decay * w`` to every
    gradient, as PyTorch's ``weight_decay`` does and the papers' recipes assume.
    """
    if name == "sgd":
        return keras.optimizers.SGD(schedule, momentum=momentum, nesterov=nesterov)
    if name == "adam":
        return keras.optimizers.Adam(schedule)
    if name == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=weight_decay)
    raise UserError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
