"""The chunked work on the resume store: round trip, resume, streamed dataset."""

import numpy as np
import pytest

from advtf.errors import UserError
from advtf.runs.chunks import ChunkStore, chunk_ranges, chunks_dataset


def test_chunks_round_trip_and_resume(tmp_path):
    store = ChunkStore(tmp_path)
    assert not (tmp_path / "resume").exists()  # nothing on disk before the first finished chunk
    store.save(1, {"image": np.ones((2, 2, 2, 1), np.float32), "label": np.array([3, 4], np.int32)})
    again = ChunkStore(tmp_path)  # a resumed job reads what the first one finished
    assert again.done == {1} and again.is_done(1) and not again.is_done(0)
    again.save(0, {"image": np.zeros((1, 2, 2, 1), np.float32), "label": np.array([5], np.int32)})
    elements = list(chunks_dataset(again, 2, ["image", "label"]).as_numpy_iterator())
    assert [int(e["label"]) for e in elements] == [5, 3, 4]
    assert elements[1]["image"].shape == (2, 2, 1) and elements[1]["image"].sum() == 4


def test_a_chunk_whose_files_are_written_but_not_marked_is_not_done(tmp_path):
    store = ChunkStore(tmp_path)
    store.store.save_arrays("chunk_00000", {"label": np.array([1])}, done=False)  # killed before marking
    assert not ChunkStore(tmp_path).is_done(0)
    with pytest.raises(KeyError):
        ChunkStore(tmp_path).load(0, ["label"])


def test_chunk_ranges_cover_everything_once():
    assert chunk_ranges(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert chunk_ranges(0, 3) == []
    with pytest.raises(UserError, match="chunk"):
        chunk_ranges(5, 0)
