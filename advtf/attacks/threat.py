"""Threat models: the norm ball an attack lives in, and its step geometry.

Images are float32 in [0, 1]; every epsilon is in pixel units because normalisation lives
inside the model (docs/design.md, "Contracts").
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import tensorflow as tf

from advtf.errors import UserError

NORMS = ("linf", "l2", "l1")
_TINY = 1e-12
# An entry of a perturbation counts towards its l0 norm when |delta| exceeds this (float noise
# from projections and clipping stays far below it; one 8-bit grey level is 3.9e-3).
L0_TOLERANCE = 1e-6


def parse_number(text: str | float | int, *, what: str = "value") -> float:
    """Parses ``0.5``, ``8/255`` or ``1e-3`` without ``eval``."""
    if isinstance(text, (int, float)):
        return float(text)
    try:
        return float(Fraction(str(text).strip()))
    except (ValueError, ZeroDivisionError):
        raise UserError(f"{what} {text!r} is not a number; write it as 0.03, 8/255 or 3e-2") from None
    except OverflowError:
        raise UserError(f"{what} {text!r} is not a finite number; write it as 0.03, 8/255 or 3e-2") from None


@dataclasses.dataclass(frozen=True)
class Threat:
    """An attack budget: norm ball of radius ``eps`` and the iterative schedule.

    Attributes:
        norm: ``"linf"``, ``"l2"`` or ``"l1"`` (each attack lists the norms it supports).
        eps: radius of the ball, in [0, 1] pixel units.
        steps: number of gradient steps (1 with ``random_start=False`` is FGSM).
        step_size: step length; ``None`` means 2.5 * eps / steps (Madry et al.'s
            robustness library convention).
        restarts: independent random restarts; the worst case per example is kept.
        random_start: start from a uniform draw in the ball (Madry et al. 2018).
    """

    norm: str = "linf"
    eps: float = 8 / 255
    steps: int = 10
    step_size: float | None = None
    restarts: int = 1
    random_start: bool = True

    def __post_init__(self):
        if self.norm not in NORMS:
            raise UserError(f"unknown norm {self.norm!r}; choose one of: {', '.join(NORMS)}")
        if not self.eps > 0:
            raise UserError(f"eps must be > 0 (got {self.eps}); pass e.g. --eps 0.5 or --eps 8/255")
        if int(self.steps) < 1:
            raise UserError(f"steps must be >= 1 (got {self.steps}); pass e.g. --steps 10")
        if int(self.restarts) < 1:
            raise UserError(f"restarts must be >= 1 (got {self.restarts}); pass e.g. --restarts 1")
        if self.step_size is not None and not self.step_size > 0:
            raise UserError(f"step size must be > 0 (got {self.step_size}); omit it for 2.5*eps/steps")

    @property
    def alpha(self) -> float:
        """The step size actually used."""
        if self.step_size is not None:
            return float(self.step_size)
        return 2.5 * float(self.eps) / int(self.steps)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["step_size"] = self.alpha
        return d


def _batch_norm(v: tf.Tensor, norm: str) -> tf.Tensor:
    """Per-example norm of a batch, shaped (B, 1, 1, 1) for broadcasting."""
    axes = list(range(1, len(v.shape)))
    if norm == "linf":
        return tf.reduce_max(tf.abs(v), axis=axes, keepdims=True)
    if norm == "l1":
        return tf.reduce_sum(tf.abs(v), axis=axes, keepdims=True)
    if norm == "l0":
        return tf.reduce_sum(tf.cast(tf.abs(v) > L0_TOLERANCE, v.dtype), axis=axes, keepdims=True)
    return tf.sqrt(tf.reduce_sum(tf.square(v), axis=axes, keepdims=True))


def per_example_norm(v: tf.Tensor, norm: str) -> tf.Tensor:
    """Per-example ``norm`` (``linf``, ``l2``, ``l1`` or ``l0``) of a batch, shape (B,)."""
    return tf.reshape(_batch_norm(v, norm), [-1])


def ascent_direction(grad: tf.Tensor, norm: str) -> tf.Tensor:
    """Steepest ascent direction of unit ``norm`` (sign for linf, normalised gradient for l2)."""
    if norm == "linf":
        return tf.sign(grad)
    return grad / (_batch_norm(grad, "l2") + _TINY)


def project(delta: tf.Tensor, eps: tf.Tensor, norm: str) -> tf.Tensor:
    """Euclidean projection of each perturbation onto the ``norm`` ball of radius ``eps``."""
    if norm == "linf":
        return tf.clip_by_value(delta, -eps, eps)
    if norm == "l1":
        return _project_l1(delta, eps)
    scale = tf.minimum(1.0, eps / (_batch_norm(delta, "l2") + _TINY))
    return delta * scale


def _project_l1(delta: tf.Tensor, eps: tf.Tensor) -> tf.Tensor:
    """Projection onto the l1 ball by soft-thresholding at the sorted-cumsum level (Duchi et al. 2008)."""
    shape = tf.shape(delta)
    v = tf.reshape(delta, [shape[0], -1])
    a = tf.abs(v)
    u = tf.sort(a, axis=1, direction="DESCENDING")
    css = tf.cumsum(u, axis=1)
    j = tf.cast(tf.range(1, tf.shape(v)[1] + 1), v.dtype)
    positive = u - (css - eps) / j > 0
    rho = tf.maximum(tf.reduce_sum(tf.cast(positive, tf.int32), axis=1), 1)
    css_rho = tf.gather(css, rho - 1, batch_dims=1)
    theta = tf.maximum((css_rho - eps) / tf.cast(rho, v.dtype), 0.0)
    inside = tf.reduce_sum(a, axis=1) <= eps
    theta = tf.where(inside, tf.zeros_like(theta), theta)
    w = tf.sign(v) * tf.maximum(a - theta[:, None], 0.0)
    # Summing thousands of float32 entries rounds: pull the rare overshoot back inside.
    total = tf.reduce_sum(tf.abs(w), axis=1, keepdims=True)
    w = w * tf.minimum(1.0, eps * (1.0 - 1e-6) / (total + _TINY))
    return tf.reshape(w, shape)


def clip_to_threat(x: tf.Tensor, x_adv: tf.Tensor, eps, norm: str) -> tf.Tensor:
    """``x_adv`` moved into the ``norm`` ball of radius ``eps`` around ``x`` and into [0, 1].

    Clipping to the box after the projection never increases any of these norms, so both
    constraints hold on return; every attack ends with this call.
    """
    eps = tf.cast(eps, x.dtype)
    return tf.clip_by_value(x + project(x_adv - x, eps, norm), 0.0, 1.0)


def random_start(shape, eps: tf.Tensor, norm: str, seed: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
    """A uniform draw from the ``norm`` ball (stateless, so runs are reproducible).

    With ``mask`` (broadcastable to ``shape``, 1 where the perturbation may be non-zero; see
    :func:`start_mask`), a uniform draw from the ball of the allowed entries and exactly zero
    elsewhere, so a refined attack's start spends none of its budget outside its pixel set.
    """
    if mask is not None:  # as a [B, H, W, C] tensor of the draw's rank (a mask variable may have none)
        mask = tf.reshape(tf.broadcast_to(tf.cast(mask, tf.float32), shape), shape)
    if norm == "linf":
        noise = tf.random.stateless_uniform(shape, seed, minval=-1.0, maxval=1.0) * eps
        return noise if mask is None else noise * mask
    direction = tf.random.stateless_normal(shape, seed)
    if mask is None:
        dim = tf.cast(tf.reduce_prod(shape[1:]), tf.float32)
    else:
        direction = direction * mask
        dim = tf.maximum(tf.reduce_sum(mask, axis=list(range(1, len(direction.shape))), keepdims=True), 1.0)
    direction = direction / (_batch_norm(direction, "l2") + _TINY)
    u = tf.random.stateless_uniform([shape[0], 1, 1, 1], seed + 1)
    return direction * eps * tf.pow(u, 1.0 / dim)


def start_mask(model):
    """The pixels a model lets an attack perturb (``model.perturbation_mask``, e.g. a refined attack's
    set S, ``[B, H, W, 1]``), or None: random starts are drawn inside it."""
    return getattr(model, "perturbation_mask", None)
