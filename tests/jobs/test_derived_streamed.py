"""robustify and relabel read the split by rows from disk (advtf.data.rows) and write, bit for bit, what the
computation on the split held in memory as float32 (split_arrays, the pre-streaming path) gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from advtf.data import load_dataset, load_saved_elements, split_arrays
from advtf.inputs import DataRequest
from advtf.jobs import execute

DATA = DataRequest(dataset="digits", test_subset=10, seed=5)
BATCH = 2


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from advtf.models import create_model, save_model

    path = tmp_path_factory.mktemp("model") / "model.keras"
    return save_model(create_model("test_cnn", input_shape=(16, 16, 1), num_classes=10, seed=0), path)


@pytest.fixture(scope="module")
def in_memory():
    return split_arrays(load_dataset("digits", test_subset=10, seed=5).test)


def saved(directory: Path) -> dict[str, np.ndarray]:
    rows = list(load_saved_elements(directory, "test").as_numpy_iterator())
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def test_robustify_from_rows_on_disk_equals_the_in_memory_computation(model, in_memory, tmp_path):
    from advtf.analysis.robustify import representation_model, robustify_batch, seed_indices
    from advtf.jobs.robustify import RobustifyRequest
    from advtf.models import load_model

    images, labels = in_memory
    execute("robustify", RobustifyRequest(model=str(model), data=DATA, steps=2, step_size=0.1, batch_size=BATCH,
                                          chunk_size=4, figure_examples=2), out=tmp_path / "R")
    got = saved(tmp_path / "R")
    seeds = seed_indices(len(images), DATA.seed)
    extractor = representation_model(load_model(model))
    expected = np.concatenate([robustify_batch(extractor, images[b:b + BATCH], images[seeds[b:b + BATCH]], steps=2,
                                               step_size=0.1)[0] for b in range(0, len(images), BATCH)])
    assert got["image"].tobytes() == expected.astype(np.float32).tobytes()
    assert np.array_equal(got["label"], labels) and np.array_equal(got["seed_index"], seeds)


def test_relabel_from_rows_on_disk_equals_the_in_memory_computation(model, in_memory, tmp_path):
    from advtf.analysis.relabel import relabel_batch, relabel_targets
    from advtf.jobs.relabel import RelabelRequest
    from advtf.models import load_model

    images, labels = in_memory
    request = RelabelRequest(model=str(model), data=DATA, split="test", eps=0.5, steps=2, batch_size=BATCH,
                             chunk_size=4, figure_examples=2)
    execute("relabel", request, out=tmp_path / "Z")
    got = saved(tmp_path / "Z")
    source, targets = relabel_targets(labels, 10, "zero", seed=DATA.seed, per_image="one")
    net = load_model(model)
    expected = []
    for b in range(0, len(source), BATCH):
        index = source[b:b + BATCH]
        out = relabel_batch(net, images[index], labels[index], targets[b:b + BATCH].astype(np.int32), attack="pgd",
                            threat=request.threat, options={}, seed=tf.constant([DATA.seed, b], tf.int64))
        expected.append(np.asarray(out["image"]))
    assert got["image"].tobytes() == np.concatenate(expected).astype(np.float32).tobytes()
    assert np.array_equal(got["label"], targets) and np.array_equal(got["original_label"], labels[source])
