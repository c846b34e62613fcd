"""Split rows on disk (advtf.data.rows) return the loader's float32 bits, read in any order."""

import numpy as np
import pytest
import tensorflow as tf

from advtf.data.rows import SplitRows, split_rows, write_split_rows


def _pairs(images, labels):
    return tf.data.Dataset.from_tensor_slices((images, labels))


def test_quantised_images_are_stored_as_uint8_and_read_back_bit_identical(tmp_path):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (37, 5, 4, 3), dtype=np.uint8)
    images = tf.cast(codes, tf.float32) / 255.0  # the idx loader's own conversion, in TensorFlow
    labels = rng.integers(0, 10, 37).astype(np.int32)
    rows = write_split_rows(_pairs(images, labels), 37, tmp_path / "r", batch_size=8)
    assert rows.dtype == np.uint8 and len(rows) == 37
    assert np.load(tmp_path / "r" / "images.npy", mmap_mode="r").dtype == np.uint8  # a plain .npy file
    expected = images.numpy()
    order = rng.permutation(37)
    for index in (np.arange(37), order, np.array([5, 5, 0]), np.arange(10, 20), np.array([], int)):
        got = rows[index]
        assert got.dtype == np.float32 and got.shape == (len(index), 5, 4, 3)
        assert np.array_equal(got.view(np.uint32), expected[index].view(np.uint32))
    assert np.array_equal(rows.labels, labels)
    with pytest.raises(IndexError):
        rows[np.array([37])]


def test_unquantised_images_fall_back_to_float32_exactly(tmp_path):
    rng = np.random.default_rng(1)
    images = (rng.integers(0, 256, (20, 3, 3, 1)) / 255.0).astype(np.float32)
    images[13, 0, 0, 0] = 0.123456789  # one pixel in the third batch is not k/255
    images[2, 1, 1, 0] = -0.0  # and -0.0 is not +0.0 bit for bit
    rows = write_split_rows(_pairs(images, np.zeros(20, np.int32)), 20, tmp_path / "r", batch_size=6)
    assert rows.dtype == np.float32
    assert np.array_equal(rows[np.arange(20)[::-1]].view(np.uint32), images[::-1].view(np.uint32))


def test_a_count_other_than_the_split_is_refused_and_leaves_no_file(tmp_path):
    ds = _pairs(np.zeros((5, 2, 2, 1), np.float32), np.zeros(5, np.int32))
    for n in (4, 6):
        with pytest.raises(ValueError, match="expected"):
            write_split_rows(ds, n, tmp_path / f"r{n}", batch_size=2)
        assert not (tmp_path / f"r{n}" / "images.npy").exists()


def test_split_rows_is_written_once_per_run_and_reused(tmp_path):
    ds = _pairs(np.full((4, 2, 2, 1), 0.5, np.float32), np.arange(4, dtype=np.int32))
    first = split_rows(ds, 4, tmp_path / "rows")
    assert first.dtype == np.float32  # 0.5 is no k/255
    empty = tf.data.Dataset.from_tensor_slices((np.zeros((0, 2, 2, 1), np.float32), np.zeros(0, np.int32)))
    again = split_rows(empty, 0, tmp_path / "rows")
    assert len(again) == 4 and isinstance(again, SplitRows)  # the finished file, not the new stream
    assert np.array_equal(again.labels, np.arange(4))


@pytest.mark.parametrize("name", ["digits", "fashion_mnist"])
def test_a_registered_split_reads_back_as_the_loader_yields_it(name, tmp_path):
    from advtf.data import load_dataset

    try:
        splits = load_dataset(name, test_subset=300, seed=3)
    except Exception as e:  # Fashion-MNIST's idx files are an optional system package
        pytest.skip(f"{name} unavailable: {e}")
    expected = [(x.numpy(), y.numpy()) for x, y in splits.test.batch(1000)][0]
    rows = write_split_rows(splits.test, splits.sizes["test"], tmp_path / "r", batch_size=64)
    order = np.random.default_rng(0).permutation(len(rows))
    assert np.array_equal(rows[order].view(np.uint32), expected[0][order].view(np.uint32))
    assert np.array_equal(rows.labels, expected[1])
    print(name, rows.dtype)


def test_writers_sharing_a_directory_and_a_process_id_do_not_collide(tmp_path):
    """Cluster workers on several hosts write the same rows into one shared directory; process ids
    can coincide there. Threads of one process share theirs, which makes the case reproducible."""
    import threading

    rng = np.random.default_rng(2)
    images = (rng.integers(0, 256, (400, 6, 6, 3)) / 255.0).astype(np.float32)
    labels = rng.integers(0, 10, 400).astype(np.int32)
    errors, start = [], threading.Barrier(4)

    def write():
        try:
            start.wait()
            write_split_rows(_pairs(images, labels), 400, tmp_path / "r", batch_size=16)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = SplitRows(tmp_path / "r")
    assert np.array_equal(rows[np.arange(400)].view(np.uint32), images.view(np.uint32))
    assert np.array_equal(rows.labels, labels)
    assert not [p.name for p in (tmp_path / "r").iterdir() if p.name.startswith(".")]  # no temporary left
