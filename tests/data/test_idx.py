"""The idx reader and the loaders built on it (fashion_mnist, mnist from --data-dir)."""

import gzip

import numpy as np
import pytest

from advtf.data import fashion_mnist, load_dataset
from advtf.data.idx import IDX_FILES, IMAGES_MAGIC, LABELS_MAGIC, idx_split, read_idx_header
from advtf.errors import UserError


def _read_payload(directory, stem, header_bytes):
    gz = directory / f"{stem}.gz"
    raw = gzip.decompress(gz.read_bytes()) if gz.exists() else (directory / stem).read_bytes()
    return np.frombuffer(raw[header_bytes:], np.uint8)


def _expected(directory, split):
    images_stem, labels_stem = IDX_FILES[split]
    return _read_payload(directory, images_stem, 16).reshape(-1, 4, 3), _read_payload(directory, labels_stem, 8)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_split_matches_file_contents(tmp_path, make_idx, gz):
    directory = make_idx(tmp_path / "d", gz=gz)
    ds, count, shape = idx_split(directory, "train")
    images, labels = _expected(directory, "train")
    assert (count, shape, int(ds.cardinality())) == (5, (4, 3, 1), 5)
    got = list(ds.as_numpy_iterator())
    np.testing.assert_allclose(np.stack([x for x, _ in got])[..., 0], images / 255.0, rtol=1e-6)
    assert [int(y) for _, y in got] == labels.tolist()
    assert got[0][0].dtype == np.float32 and got[0][1].dtype == np.int32


def test_header_is_parsed(tmp_path, make_idx):
    directory = make_idx(tmp_path / "d", gz=True)
    header = read_idx_header(directory / "train-images-idx3-ubyte.gz", IMAGES_MAGIC)
    assert (header.dims, header.header_bytes, header.gzipped, header.record_bytes) == ((5, 4, 3), 16, True, 12)


def test_corrupt_magic_is_a_user_error(tmp_path, idx_writer):
    path = idx_writer(tmp_path / "x-idx1-ubyte", np.zeros(5), gz=True, magic=1234)
    with pytest.raises(UserError, match="magic number 1234, expected 2049"):
        read_idx_header(path, LABELS_MAGIC)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_file_is_a_user_error(tmp_path, idx_writer, gz):
    path = idx_writer(tmp_path / "x-idx3-ubyte", np.zeros((5, 4, 3)), gz=gz)
    data = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    path.write_bytes(gzip.compress(data[:-7]) if gz else data[:-7])
    with pytest.raises(UserError, match="implies"):
        read_idx_header(path, IMAGES_MAGIC)


def test_image_and_label_counts_must_agree(tmp_path, make_idx, idx_writer):
    directory = make_idx(tmp_path / "d", gz=True)
    idx_writer(directory / "train-labels-idx1-ubyte", np.zeros(4), gz=True)
    with pytest.raises(UserError, match="5 images but"):
        idx_split(directory, "train")


def test_fashion_mnist_prefers_data_dir_and_its_subdir(tmp_path, make_idx):
    make_idx(tmp_path / "fashion-mnist", gz=False)
    splits = load_dataset("fashion_mnist", data_dir=str(tmp_path))
    assert splits.info.source == str(tmp_path / "fashion-mnist")
    assert splits.sizes == {"train": 5, "validation": 0, "test": 3}
    assert splits.info.image_shape == (4, 3, 1) and splits.info.class_names[-1] == "Ankle boot"


def test_fashion_mnist_missing_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", (tmp_path / "nowhere",))
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist", data_dir=str(tmp_path))


def test_mnist_reads_idx_files_from_data_dir(tmp_path, make_idx):
    make_idx(tmp_path / "mnist", gz=True)
    splits = load_dataset("mnist", data_dir=str(tmp_path), image_size=8)
    x, y = next(iter(splits.test))
    assert x.shape == (8, 8, 1) and splits.info.source == str(tmp_path / "mnist")
    assert 0.0 <= float(np.min(x)) and float(np.max(x)) <= 1.0
