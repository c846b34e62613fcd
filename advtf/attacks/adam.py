"""Adam (Kingma & Ba 2015, Algorithm 1) with its state held in plain tensors, for attacks' inner loops.

Minimum-norm attacks (C&W) run Adam on the input representation of every example inside one
compiled ``tf.while_loop``, and restart it with fresh moments for each binary-search value of the
constant ``c``. The state (first and second moments, step count) is therefore loop-carried tensors:
:func:`adam_init` makes it, :func:`adam_step` advances it, and :func:`adam_reset` gives chosen
examples fresh moments and a step count of 0.

Why not a Keras optimizer (``keras.optimizers.Adam``)?

* Its state lives in ``tf.Variable``s created for a model variable on first use; an attack is a pure
  function of a batch whose shape varies between calls, and ``tf.function`` forbids creating
  variables on any call but the first, so the optimizer would have to live outside the attack and be
  rebuilt per batch shape.
* Its step count ``iterations`` is one scalar for the whole variable, so its bias correction cannot
  differ per example: examples reset at different times (a per-example restart) would be corrected
  with the wrong ``t``. Here ``t`` may be a scalar or one count per example.
* Variable reads and writes inside the loop add automatic control dependencies between iterations
  and move the moments out of the loop state (XLA and the while loop handle tensors better).
* It computes the "epsilon-hat" form ``lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``
  with ``eps = 1e-7``, not Algorithm 1's ``lr * m_hat / (sqrt(v_hat) + eps)`` with ``eps = 1e-8``
  (which Foolbox's C&W uses): the two differ where ``v`` is small, e.g. in the first steps.
"""

from __future__ import annotations

import tensorflow as tf

BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-8


def adam_init(var):
    """Fresh state for ``var``: ``(m, v)`` zeros shaped like it (the step count is the caller's ``t``)."""
    return tf.zeros_like(var), tf.zeros_like(var)


def adam_step(var, grad, m, v, t, lr, beta1: float = BETA1, beta2: float = BETA2, epsilon: float = EPSILON):
    """One Adam step of Algorithm 1 (Kingma & Ba 2015) on ``var`` (descent on the loss).

    ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``; ``m_hat = m / (1 - b1^t)``;
    ``v_hat = v / (1 - b2^t)``; ``var = var - lr m_hat / (sqrt(v_hat) + eps)``.

    Args:
        var, grad, m, v: tensors of one shape (B, ...).
        t: the 1-based number of this step since the last reset: a scalar, or one per example (B,).
        lr: learning rate, scalar or broadcastable to ``var``.

    Returns:
        ``(var, m, v)`` after the step.
    """
    t = tf.cast(t, var.dtype)
    if t.shape.rank == 1:  # one count per example
        t = tf.reshape(t, [-1] + [1] * (len(var.shape) - 1))
    m = beta1 * m + (1.0 - beta1) * grad
    v = beta2 * v + (1.0 - beta2) * tf.square(grad)
    m_hat = m / (1.0 - tf.pow(beta1, t))
    v_hat = v / (1.0 - tf.pow(beta2, t))
    return var - lr * m_hat / (tf.sqrt(v_hat) + epsilon), m, v


def adam_reset(mask, m, v, t):
    """Fresh moments and step count 0 for the examples where ``mask`` (B,) is true; ``t`` is (B,)."""
    shaped = tf.reshape(mask, [-1] + [1] * (len(m.shape) - 1))
    return (tf.where(shaped, tf.zeros_like(m), m), tf.where(shaped, tf.zeros_like(v), v),
            tf.where(mask, tf.zeros_like(t), t))
