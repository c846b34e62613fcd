"""advtf: adversarial-robustness research in TensorFlow / Keras 3."""

__version__ = "0.1.0"
