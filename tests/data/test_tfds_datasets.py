"""Datasets read through tensorflow-datasets, under tfds.testing.mock_data (no network, no files)."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from advtf.data import list_datasets, load_dataset
from advtf.errors import UserError


def arrays(ds):
    pairs = list(ds.as_numpy_iterator())
    return np.stack([x for x, _ in pairs]), np.array([y for _, y in pairs])


def test_cifar10_pipeline_and_subset_determinism():
    with tfds.testing.mock_data(num_examples=40):
        a = load_dataset("cifar10", train_subset=10, test_subset=5, seed=0)
        b = load_dataset("cifar10", train_subset=10, test_subset=5, seed=0)
        c = load_dataset("cifar10", train_subset=10, test_subset=5, seed=1)
        (xa, ya), (xb, _), (xc, _) = arrays(a.train), arrays(b.train), arrays(c.train)
        xt, yt = arrays(a.test)
    assert xa.shape == (10, 32, 32, 3) and xa.dtype == np.float32 and ya.dtype == np.int32
    assert 0.0 <= xa.min() and xa.max() <= 1.0 and xa.max() > 0.5
    assert xt.shape == (5, 32, 32, 3) and set(yt.tolist()) <= set(range(10))
    np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(xa, xc)
    assert a.sizes == {"train": 10, "validation": 0, "test": 5}
    assert a.info.source.startswith("tfds:cifar10/") and a.info.natural_images
    assert a.info.class_names[0] == "airplane" and a.fingerprint["dataset"] == "cifar10"


def test_mnist_and_imagenette_resize():
    with tfds.testing.mock_data(num_examples=6):
        mnist = load_dataset("mnist", image_size=16)
        imagenette = load_dataset("imagenette", image_size=24, test_subset=3)
        xm, _ = arrays(mnist.train)
        xi, yi = arrays(imagenette.test)
    assert xm.shape == (6, 16, 16, 1) and mnist.info.image_shape == (16, 16, 1)
    assert xi.shape == (3, 24, 24, 3) and 0.0 <= xi.min() and xi.max() <= 1.0
    assert imagenette.info.image_shape == (24, 24, 3) and imagenette.info.num_classes == 10


def test_missing_data_without_download_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"cifar10 is not in .*tfds build cifar10.*--data-dir"):
        load_dataset("cifar10", data_dir=str(tmp_path), download=False)


def test_failed_download_is_a_user_error(tmp_path, monkeypatch):
    def offline(self, *args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    with pytest.raises(UserError, match="download failed: ConnectionError: no route to host"):
        load_dataset("imagenette", data_dir=str(tmp_path))


def test_listing_is_offline_and_reports_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", None)  # must not be called
    rows = {r["name"]: r for r in list_datasets(data_dir=str(tmp_path))}
    assert {"cifar10", "mnist", "imagenette", "imagenet9", "digits", "fashion_mnist"} <= set(rows)
    assert not rows["cifar10"]["available"] and str(tmp_path) in rows["cifar10"]["where"]
    assert rows["digits"]["available"]
