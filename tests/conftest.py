"""Shared test setup: two logical CPU devices (for MirroredStrategy) and tiny fixtures."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Must happen before TensorFlow initialises its devices.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
except RuntimeError:  # already initialised (e.g. re-import); tests needing 2 devices skip
    pass

try:
    from hypothesis import settings
except ImportError:  # only the property-based test files need it; they import it themselves
    settings = None
if settings is not None:
    # "ci": the same examples on every run (a red CI run can be replayed; a green one is not luck), no
    # example database and no deadline on a shared machine. "dev": fresh random examples, to find new bugs.
    settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
    settings.register_profile("dev", deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def two_cpu_strategy():
    """MirroredStrategy over the two logical CPU devices configured above (skips without them)."""
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs the two logical CPU devices tests/conftest.py configures")
    return tf.distribute.MirroredStrategy([d.name for d in devices[:2]])


@pytest.fixture
def small_unroll():
    """Trace the long attacks' step loops with 2 steps per while iteration instead of the library's 10.

    The results are bit-identical (tests/attacks/test_loop_forms.py) and tracing costs ~4x less; for
    tests that trace C&W, EAD, Str or APGD for something other than the loop form itself.
    """
    from advtf.attacks.loops import forced_unroll

    with forced_unroll(2):
        yield
