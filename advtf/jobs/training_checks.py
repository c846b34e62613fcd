"""The checks ``advtf train`` and ``advtf retrain`` share: the training threat and the optimisation options.

Both requests hold the same option names (their defaults differ: the papers' recipes), so one set of
checks with one wording serves both.
"""

from __future__ import annotations

from advtf import validation as check
from advtf.attacks import NORMS
from advtf.errors import UserError
from advtf.training.schedules import OPTIMIZERS, SCHEDULES


def check_training_threat(request) -> None:
    """``--norm``, ``--eps``, ``--attack-steps``, ``--step-size``, ``--restarts``, ``--attack-target``,
    ``--clean-fraction`` and ``--eval-steps`` of a request."""
    check.choice("--norm", request.norm, NORMS)
    check.positive("--eps", request.eps)
    check.count("--attack-steps", request.attack_steps)
    if request.step_size is not None:
        check.positive("--step-size", request.step_size)
    check.count("--restarts", request.restarts)
    check.choice("--attack-target", request.attack_target, ("label", "prediction"))
    check.in_range("--clean-fraction", request.clean_fraction, 0.0, 1.0, high_open=True)
    check.count("--eval-steps", request.eval_steps)


def check_optimisation(request) -> None:
    """``--epochs``, ``--batch-size``, ``--optimizer``, ``--lr``, ``--momentum``, ``--weight-decay``, ``--schedule``."""
    check.count("--epochs", request.epochs)
    check.count("--batch-size", request.batch_size)
    check.choice("--optimizer", request.optimizer, OPTIMIZERS)
    check.positive("--lr", request.lr)
    check.in_range("--momentum", request.momentum, 0.0, 1.0, high_open=True)
    check.non_negative("--weight-decay", request.weight_decay)
    check.choice("--schedule", request.schedule, SCHEDULES)


def checked_milestones(milestones, epochs: int, schedule: str) -> tuple:
    """``--lr-milestones`` as a tuple: positive, increasing, within ``--epochs``, and only with piecewise."""
    milestones = tuple(milestones)
    for m in milestones:
        check.positive("--lr-milestones", m)
    if list(milestones) != sorted(set(milestones)):
        raise UserError(f"--lr-milestones must be increasing epochs, e.g. 5,8 (got {','.join(map(str, milestones))})")
    if milestones and milestones[-1] > epochs:
        raise UserError(f"--lr-milestones {','.join(f'{m:g}' for m in milestones)} lie beyond --epochs "
                        f"{epochs}; give epochs up to {epochs}")
    if milestones and schedule != "piecewise":
        raise UserError(f"--lr-milestones only applies to --schedule piecewise (got --schedule {schedule}); "
                        "add --schedule piecewise or drop --lr-milestones")
    return milestones
