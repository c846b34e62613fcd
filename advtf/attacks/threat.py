"""Threat models: the norm ball an attack lives in, and its step geometry.

Images are float32 in [0, 1]; every epsilon is in pixel units because normalisation lives
inside the model (docs/design.md, "Contracts").
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import tensorflow as tf

from advtf.errors import UserError
from advtf.registry import Registry

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


class Ball:
    """The geometry of one norm ball, one object per norm as Foolbox's per-norm attack bases.

    ``measure`` is the per-example norm; ``project``, ``ascent_direction`` and ``random_start`` are
    what an attack needs to stay in the ball, step in it and start inside it. A norm that is only a
    measure (l0) raises on the rest. Look a ball up by name with :func:`ball`.
    """

    name = ""
    # True when ``ascent_direction`` squares the gradient (an l2 normalisation): a huge gradient
    # (APGD's DLR) then overflows float32 unless the caller rescales it first.
    squares_gradient = False

    def _norm(self, v: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def measure(self, v: tf.Tensor, keepdims: bool = False) -> tf.Tensor:
        """Per-example norm of a batch: shape (B,), or (B, 1, 1, 1) for broadcasting with ``keepdims``."""
        n = self._norm(v)
        return n if keepdims else tf.reshape(n, [-1])

    def project(self, delta: tf.Tensor, eps: tf.Tensor) -> tf.Tensor:
        """Euclidean projection of each perturbation onto the ball of radius ``eps``."""
        raise NotImplementedError(f"the {self.name} ball has no projection here (it is only a measure)")

    def ascent_direction(self, grad: tf.Tensor) -> tf.Tensor:
        """The steepest ascent direction of unit norm (0 where the gradient is 0)."""
        raise NotImplementedError(f"the {self.name} ball has no step direction here (it is only a measure)")

    def random_start(self, shape, eps: tf.Tensor, seed: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
        """A uniform draw from the ball of radius ``eps`` (stateless, so runs are reproducible).

        With ``mask`` (broadcastable to ``shape``, 1 where the perturbation may be non-zero; see
        :func:`start_mask`), a uniform draw from the ball of the allowed entries and exactly zero
        elsewhere, so a refined attack's start spends none of its budget outside its pixel set.
        """
        raise NotImplementedError(f"the {self.name} ball has no random start here (it is only a measure)")

    def __repr__(self) -> str:
        return f"ball({self.name!r})"


def _full_mask(mask, shape):
    """``mask`` as a float [B, H, W, C] tensor of the draw's rank (a mask variable may have none), or None."""
    if mask is None:
        return None
    return tf.reshape(tf.broadcast_to(tf.cast(mask, tf.float32), shape), shape)


def _axes(v: tf.Tensor) -> list[int]:
    return list(range(1, len(v.shape)))


class LinfBall(Ball):
    """linf: clipping, sign steps, a uniform draw from the cube."""

    name = "linf"

    def _norm(self, v):
        return tf.reduce_max(tf.abs(v), axis=_axes(v), keepdims=True)

    def project(self, delta, eps):
        return tf.clip_by_value(delta, -eps, eps)

    def ascent_direction(self, grad):
        return tf.sign(grad)

    def random_start(self, shape, eps, seed, mask=None):
        mask = _full_mask(mask, shape)
        noise = tf.random.stateless_uniform(shape, seed, minval=-1.0, maxval=1.0) * eps
        return noise if mask is None else noise * mask


class L2Ball(Ball):
    """l2: radial scaling, normalised-gradient steps, a uniform draw from the sphere's interior."""

    name = "l2"
    squares_gradient = True

    def _norm(self, v):
        return tf.sqrt(tf.reduce_sum(tf.square(v), axis=_axes(v), keepdims=True))

    def project(self, delta, eps):
        return delta * tf.minimum(1.0, eps / (self._norm(delta) + _TINY))

    def ascent_direction(self, grad):
        return grad / (self._norm(grad) + _TINY)

    def random_start(self, shape, eps, seed, mask=None):
        # A Gaussian direction, radius eps * u^(1/d): uniform in the d-dimensional ball.
        mask = _full_mask(mask, shape)
        direction = tf.random.stateless_normal(shape, seed)
        if mask is None:
            dim = tf.cast(tf.reduce_prod(shape[1:]), tf.float32)
        else:
            direction = direction * mask
            dim = tf.maximum(tf.reduce_sum(mask, axis=_axes(direction), keepdims=True), 1.0)
        direction = direction / (self._norm(direction) + _TINY)
        u = tf.random.stateless_uniform([shape[0], 1, 1, 1], seed + 1)
        return direction * eps * tf.pow(u, 1.0 / dim)


class L1Ball(Ball):
    """l1: soft-thresholding (Duchi et al. 2008), one-coordinate steps, a uniform draw from the cross-polytope."""

    name = "l1"

    def _norm(self, v):
        return tf.reduce_sum(tf.abs(v), axis=_axes(v), keepdims=True)

    def project(self, delta, eps):
        """Soft-thresholding at the sorted-cumsum level (Duchi et al. 2008, Fig. 1)."""
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

    def ascent_direction(self, grad):
        """The signed unit vector of the largest |gradient| entry (the first one on ties): the
        steepest l1 ascent, which moves one coordinate per step."""
        shape = tf.shape(grad)
        flat = tf.reshape(grad, [shape[0], -1])
        pick = tf.one_hot(tf.argmax(tf.abs(flat), axis=1), tf.shape(flat)[1], dtype=grad.dtype)
        return tf.reshape(pick * tf.sign(flat), shape)

    def random_start(self, shape, eps, seed, mask=None):
        # (E_1..E_d) / (E_1 + ... + E_{d+1}) with E_i ~ Exp(1) is uniform on the simplex's interior
        # {x >= 0, sum x <= 1}; random signs make it uniform in the cross-polytope.
        mask = _full_mask(mask, shape)
        e = -tf.math.log1p(-tf.random.stateless_uniform(shape, seed))
        if mask is not None:
            e = e * mask
        extra = -tf.math.log1p(-tf.random.stateless_uniform([shape[0], 1, 1, 1], seed + 1))
        signs = tf.where(tf.random.stateless_uniform(shape, seed + 2) < 0.5, -1.0, 1.0)
        return signs * e / (self._norm(e) + extra) * eps


class L0Ball(Ball):
    """l0: only a measure, the count of entries with |v| above :data:`L0_TOLERANCE`."""

    name = "l0"

    def _norm(self, v):
        return tf.reduce_sum(tf.cast(tf.abs(v) > L0_TOLERANCE, v.dtype), axis=_axes(v), keepdims=True)


BALLS: Registry[Ball] = Registry("norm", "the norms are linf, l2, l1 and, as a measure only, l0")
for _ball in (LinfBall(), L2Ball(), L1Ball(), L0Ball()):
    BALLS.register(_ball.name, _ball)


def ball(name: str) -> Ball:
    """The ball of norm ``name`` (UserError with a "did you mean" for an unknown one)."""
    return BALLS.get(name)


def per_example_norm(v: tf.Tensor, norm: str) -> tf.Tensor:
    """Per-example ``norm`` (``linf``, ``l2``, ``l1`` or ``l0``) of a batch, shape (B,)."""
    return ball(norm).measure(v)


def ascent_direction(grad: tf.Tensor, norm: str) -> tf.Tensor:
    """Steepest ascent direction of unit ``norm`` (sign for linf, normalised gradient for l2)."""
    return ball(norm).ascent_direction(grad)


def project(delta: tf.Tensor, eps: tf.Tensor, norm: str) -> tf.Tensor:
    """Euclidean projection of each perturbation onto the ``norm`` ball of radius ``eps``."""
    return ball(norm).project(delta, eps)


def clip_to_threat(x: tf.Tensor, x_adv: tf.Tensor, eps, norm: str) -> tf.Tensor:
    """``x_adv`` moved into the ``norm`` ball of radius ``eps`` around ``x`` and into [0, 1].

    Clipping to the box after the projection never increases any of these norms, so both
    constraints hold on return; every attack ends with this call.
    """
    eps = tf.cast(eps, x.dtype)
    return tf.clip_by_value(x + project(x_adv - x, eps, norm), 0.0, 1.0)


def random_start(shape, eps: tf.Tensor, norm: str, seed: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
    """A uniform draw from the ``norm`` ball (see :meth:`Ball.random_start`)."""
    return ball(norm).random_start(shape, eps, seed, mask)


def as_seed(seed) -> tf.Tensor:
    """A stateless seed of shape (2,) int64, the form every attack takes.

    ``None`` draws a random one; a plain int ``s`` (from a notebook, say) becomes ``[s, 0]``, so
    ``seed=3`` and ``seed=tf.constant([3, 0])`` give the same attack; a shape-(2,) integer tensor
    or array is used as it is.
    """
    if seed is None:
        return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)
    if isinstance(seed, (bool, float)):
        raise UserError(f"seed must be an int or a shape-(2,) integer tensor (got {seed!r}); pass e.g. seed=0")
    seed = tf.convert_to_tensor(seed)
    if not (seed.dtype.is_integer and seed.shape.rank in (0, 1)) or (seed.shape.rank == 1 and seed.shape[0] != 2):
        raise UserError(f"seed must be an int or a shape-(2,) integer tensor (got {seed.dtype.name} of shape "
                        f"{seed.shape}); pass e.g. seed=0 or seed=tf.constant([0, 0])")
    seed = tf.cast(seed, tf.int64)
    return tf.stack([seed, tf.constant(0, tf.int64)]) if seed.shape.rank == 0 else seed


def start_mask(model):
    """The pixels a model lets an attack perturb (``model.perturbation_mask``, e.g. a refined attack's
    set S, ``[B, H, W, 1]``), or None: random starts are drawn inside it."""
    return getattr(model, "perturbation_mask", None)
