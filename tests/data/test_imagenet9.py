"""ImageNet-9: the nine super-classes are chosen by WordNet id, not by tensorflow-datasets label.

The expectation is built here from the label files tensorflow-datasets ships, read as plain text,
and the ranges of Springer et al. 2021 (App. A.1) written out again; never from the module's table.
"""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from advtf.data import load_dataset
from advtf.data.imagenet9 import relabel_table, tfds_wnids

_TFDS_DIR = os.path.dirname(tfds.__file__)
# Springer et al. 2021, App. A.1: standard ImageNet class indices, inclusive.
_RANGES = {
    "dog": (151, 268), "cat": (281, 285), "frog": (30, 32), "turtle": (33, 37), "bird": (80, 100),
    "primate": (365, 382), "fish": (389, 397), "crab": (118, 121), "insect": (300, 319),
}
_NAMES = list(_RANGES)


def _lines(*parts):
    with open(os.path.join(_TFDS_DIR, *parts)) as f:
        return [line.strip() for line in f if line.strip()]


@pytest.fixture(scope="module")
def resized_wnids():
    """imagenet_resized's label order, as in its shipped label file."""
    return _lines("image_classification", "imagenet_resized_labels.txt")


@pytest.fixture(scope="module")
def expected(resized_wnids):
    """tfds label -> expected super-class name (None = left out), via imagenet2012's wnid list."""
    standard = _lines("datasets", "imagenet2012", "labels.txt")  # standard order: sorted wnids
    assert len(standard) == 1000 and standard == sorted(standard)
    assert set(standard) == set(resized_wnids)
    position = {wnid: i for i, wnid in enumerate(standard)}
    out = []
    for wnid in resized_wnids:
        hits = [name for name, (lo, hi) in _RANGES.items() if lo <= position[wnid] <= hi]
        out.append(hits[0] if hits else None)
    return out


def test_tfds_wnids_are_the_shipped_label_order(resized_wnids):
    assert tfds_wnids() == resized_wnids
    assert resized_wnids[0] == "n02119789"  # kit fox; the standard order starts n01440764


def test_every_class_mapped_by_wordnet_id(resized_wnids, expected):
    table = relabel_table(tfds_wnids())
    got = [_NAMES[t] if t >= 0 else None for t in table]
    assert got == expected
    assert sum(name is not None for name in got) == 203 and got.count("dog") == 118
    by_wnid = dict(zip(resized_wnids, got))
    assert by_wnid["n01641577"] == "frog"  # bullfrog, standard index 30
    assert by_wnid["n02085620"] == "dog"  # Chihuahua, standard index 151
    assert by_wnid["n04461696"] is None  # tow truck, standard index 864 (tfds label 281)
    assert by_wnid["n04467665"] is None  # trailer truck
    assert by_wnid["n02119789"] is None and table[0] == -1  # kit fox, tfds label 0
    # The old mapping applied the ranges to tfds labels: label 30 (otterhound) was "frog".
    assert resized_wnids[30] == "n02091635" and got[30] == "dog"
    assert table[281] == -1 and got[resized_wnids.index("n01641577")] == "frog"


def test_relabel_table_follows_the_given_order():
    """Any permutation of the wnids gives the same wnid -> super-class map."""
    wnids = tfds_wnids()
    perm = np.random.default_rng(0).permutation(1000)
    shuffled = [wnids[i] for i in perm]
    np.testing.assert_array_equal(relabel_table(shuffled), relabel_table(wnids)[perm])
    with pytest.raises(ValueError):
        relabel_table(wnids[:999])


def test_imagenet9_keeps_and_relabels_superclasses(expected):
    with tfds.testing.mock_data(num_examples=500):
        raw = list(tfds.load("imagenet_resized/64x64", split="validation", as_supervised=True).as_numpy_iterator())
        splits = load_dataset("imagenet9", train_subset=5)
        test = list(splits.test.as_numpy_iterator())
        train = list(splits.train.as_numpy_iterator())
    kept = [(x, _NAMES.index(expected[y])) for x, y in raw if expected[y] is not None]
    assert len(kept) > 50 and splits.sizes["test"] == len(kept) == len(test)
    assert [y for _, y in test] == [y for _, y in kept]
    np.testing.assert_allclose(test[0][0], kept[0][0] / 255.0, rtol=1e-6)
    assert test[0][0].shape == (64, 64, 3) and test[0][0].dtype == np.float32 and test[0][1].dtype == np.int32
    assert len(train) == 5 and list(splits.info.class_names) == _NAMES and splits.info.num_classes == 9
