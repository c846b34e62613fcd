"""The resumable chunk store: round trip, refusal of other parameters, streamed dataset."""

import numpy as np
import pytest

from advtf.analysis.chunks import ChunkStore, chunk_ranges, chunks_dataset
from advtf.errors import UserError


def test_chunks_round_trip_and_resume_with_the_same_parameters(tmp_path):
    store = ChunkStore(tmp_path, {"steps": 3, "eps": 0.5})
    assert not (tmp_path / "chunks").exists()  # nothing on disk before the first finished chunk
    store.save(1, {"image": np.ones((2, 2, 2, 1), np.float32), "label": np.array([3, 4], np.int32)})
    again = ChunkStore(tmp_path, {"eps": 0.5, "steps": 3})
    assert again.done == {1} and again.is_done(1) and not again.is_done(0)
    again.save(0, {"image": np.zeros((1, 2, 2, 1), np.float32), "label": np.array([5], np.int32)})
    elements = list(chunks_dataset(again, 2, ["image", "label"]).as_numpy_iterator())
    assert [int(e["label"]) for e in elements] == [5, 3, 4]
    assert elements[1]["image"].shape == (2, 2, 1) and elements[1]["image"].sum() == 4
    with pytest.raises(UserError, match="steps"):
        ChunkStore(tmp_path, {"steps": 4, "eps": 0.5})
    again.remove()
    assert not (tmp_path / "chunks").exists()


def test_chunk_ranges_cover_everything_once():
    assert chunk_ranges(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert chunk_ranges(0, 3) == []
    with pytest.raises(UserError, match="chunk"):
        chunk_ranges(5, 0)
