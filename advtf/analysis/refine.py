"""Refined attacks: any registered attack with its perturbation confined to a pixel set
(Xu et al. 2019, Appendix 3, Eq. 11, Table A1).

The attack runs on a wrapped model ``z -> model(x0 + S o (z - x0))``: the perturbation the
model sees is the attack's own perturbation with the pixels outside ``S`` set to zero, so it
obeys the same norm bound (masking never increases an l_p norm) and the box ``[0, 1]``.
Outside ``S`` the gradient is zero, so sign steps (IFGSM), penalties (C&W, EAD, Str) and
shrinkage leave those pixels at zero: for them this equals Eq. 11's extra projection. A random
start (PGD, APGD) is drawn inside ``S`` (the wrapper's ``perturbation_mask``, read by
:func:`advtf.attacks.threat.start_mask`): noise outside ``S`` would be invisible to the model yet
count in the norm the attack projects, leaving less than ``eps`` for the pixels of ``S``. So
``z - x0`` stays exactly zero outside ``S`` and the whole budget is spent inside it. The refined
adversarial example is ``x0 + S o (z - x0)``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advtf.attacks import attack_spec


class MaskedPerturbation:
    """A model seen through a per-example pixel mask; one object serves every batch (traced once)."""

    def __init__(self, model):
        self.model = model
        self._origin = tf.Variable(tf.zeros([1, 1, 1, 1]), shape=tf.TensorShape(None), trainable=False)
        self._mask = tf.Variable(tf.zeros([1, 1, 1, 1]), shape=tf.TensorShape(None), trainable=False)

    def set(self, natural: np.ndarray, mask: np.ndarray) -> None:
        """Natural images ``[B, H, W, C]`` and their allowed pixels ``[B, H, W]`` (1 = may change)."""
        self._origin.assign(tf.constant(natural, tf.float32))
        self._mask.assign(tf.constant(np.asarray(mask, np.float32)[..., None]))

    @property
    def perturbation_mask(self) -> tf.Variable:
        """``S`` as ``[B, H, W, 1]``: attacks draw their random start inside it (``threat.start_mask``)."""
        return self._mask

    def apply(self, z):
        """The image the model sees: ``x0 + S o (z - x0)``."""
        z = tf.convert_to_tensor(z)
        return tf.ensure_shape(self._origin + self._mask * (z - self._origin), z.shape)

    def __call__(self, z, training=False):
        return self.model(self.apply(z), training=training)


def refined_attack(model, natural: np.ndarray, label: np.ndarray, mask: np.ndarray, request, *,
                   seed: int = 0) -> np.ndarray:
    """The attack of ``request`` on ``natural`` with its perturbation restricted to ``mask`` ([B, H, W]).

    ``label`` is the target for targeted requests and the class to move away from otherwise.
    Returns the refined adversarial images.
    """
    wrapped = _wrapper(model)
    wrapped.set(natural, mask)
    fn = attack_spec(request.name).fn
    label = tf.constant(np.asarray(label, np.int32))
    z = fn(wrapped, tf.constant(natural, tf.float32), label, request.threat, targeted=request.targeted,
           target=label if request.targeted else None, seed=tf.constant([seed, 7], tf.int64), **request.options)
    return wrapped.apply(tf.convert_to_tensor(z, tf.float32)).numpy()


def refine_pairs(model, natural: np.ndarray, label: np.ndarray, mask: np.ndarray, request, *,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`refined_attack` on the pairs whose ``mask`` allows at least one pixel.

    An empty S (e.g. S2 from a CAM with no positive pixel) leaves nothing to perturb, so that
    pair is not attacked. Returns the images (refined, or ``natural`` where skipped) and the
    ``[B]`` bool of the refined pairs.
    """
    natural = np.asarray(natural, np.float32)
    ok = np.asarray(mask).reshape(len(natural), -1).any(1)
    out = natural.copy()
    if ok.any():
        out[ok] = refined_attack(model, natural[ok], np.asarray(label)[ok], np.asarray(mask)[ok], request, seed=seed)
    return out, ok


_WRAPPERS: dict[int, MaskedPerturbation] = {}


def _wrapper(model) -> MaskedPerturbation:
    """One wrapper per model, so compiled attacks trace once for all batches."""
    key = id(model)
    if key not in _WRAPPERS or _WRAPPERS[key].model is not model:
        _WRAPPERS[key] = MaskedPerturbation(model)
    return _WRAPPERS[key]
