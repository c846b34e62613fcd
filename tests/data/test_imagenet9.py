"""ImageNet-9 under mock data: only the nine super-class ranges survive, relabelled 0-8."""

import numpy as np
import tensorflow_datasets as tfds

from advtf.data import load_dataset
from advtf.data.imagenet9 import SUPERCLASSES, relabel_table


def test_relabel_table_ranges():
    table = relabel_table()
    assert (table >= 0).sum() == 203
    assert table[151] == table[268] == 0 and table[150] == table[269] == -1
    assert table[30] == 2 and table[37] == 3 and table[389] == 6 and table[319] == 8
    assert [name for name, _, _ in SUPERCLASSES][:3] == ["dog", "cat", "frog"]


def test_imagenet9_keeps_and_relabels_superclasses():
    with tfds.testing.mock_data(num_examples=500):
        raw = list(tfds.load("imagenet_resized/64x64", split="validation", as_supervised=True).as_numpy_iterator())
        splits = load_dataset("imagenet9", train_subset=5)
        test = list(splits.test.as_numpy_iterator())
        train = list(splits.train.as_numpy_iterator())
    table = relabel_table()
    kept = [(x, table[y]) for x, y in raw if table[y] >= 0]
    assert len(kept) > 50 and splits.sizes["test"] == len(kept) == len(test)
    assert [y for _, y in test] == [y for _, y in kept]
    np.testing.assert_allclose(test[0][0], kept[0][0] / 255.0, rtol=1e-6)
    assert test[0][0].shape == (64, 64, 3) and test[0][0].dtype == np.float32 and test[0][1].dtype == np.int32
    assert len(train) == 5 and splits.info.class_names[-1] == "insect" and splits.info.num_classes == 9
