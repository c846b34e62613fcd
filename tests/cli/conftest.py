"""Fixtures the CLI tests share."""

import pytest


@pytest.fixture(scope="session")
def untrained_digits_model(tmp_path_factory):
    """An untrained test_cnn for digits (16x16x1, 10 classes; GAP -> Dense head, modules m0..m3): bad input must be
    refused before any attack, pass or training runs."""
    from advtf.models import create_model, save_model

    path = tmp_path_factory.mktemp("untrained") / "m.keras"
    return save_model(create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=0), path)
