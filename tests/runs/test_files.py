"""Run directories: atomic, refuse to clobber, keep resumable partial state, hash outputs."""

import json

import pytest

from advtf.errors import UserError
from advtf.runs import RunDir, markdown_table, sha256_file, write_table


def test_run_dir_is_renamed_into_place_with_hashes(tmp_path):
    out = tmp_path / "run"
    with RunDir(out, options={"a": 1}) as run:
        assert run.path != out and not out.exists()
        (run.path / "results.json").write_text("{}")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"] == {"a": 1}
    assert manifest["outputs"]["results.json"] == sha256_file(out / "results.json")
    assert "tensorflow" in manifest["versions"]
    assert not (tmp_path / "run.partial").exists()


def test_existing_out_needs_overwrite(tmp_path):
    out = tmp_path / "run"
    with RunDir(out) as run:
        (run.path / "old").write_text("x")
    with pytest.raises(UserError, match="--overwrite"):
        with RunDir(out):
            pass
    with RunDir(out, overwrite=True) as run:
        (run.path / "new").write_text("y")
    assert (out / "new").exists() and not (out / "old").exists()


def test_failure_leaves_nothing_unless_resumable_with_finished_work(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with RunDir(out) as run:
            (run.path / "half").write_text("x")
            raise RuntimeError("boom")
    assert not out.exists() and not (tmp_path / "run.partial").exists()
    with pytest.raises(RuntimeError):
        with RunDir(out, resumable=True) as run:
            run.store.save_record("unit", {"x": 1})
            raise RuntimeError("boom")
    assert (tmp_path / "run.partial").exists() and not out.exists()
    with pytest.raises(UserError, match="--resume"):
        RunDir(out, resumable=True).check()
    with RunDir(out, resume=True, resumable=True) as run:
        assert run.resuming and run.store.is_done("unit")
    assert out.exists() and not (out / "resume").exists()  # resume state goes after the commit


def test_unwritable_parent_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="writable"):
        RunDir(blocker / "run").check()


def test_tables_are_written_as_csv_and_markdown(tmp_path):
    rows = [{"model": "a", "acc": 0.5}, {"model": "b", "acc": 0.25}]
    write_table(tmp_path, "t", rows)
    assert (tmp_path / "t.csv").read_text().splitlines() == ["model,acc", "a,0.5", "b,0.25"]
    assert "| a | 0.5000 |" in (tmp_path / "t.md").read_text()


def test_empty_markdown_tables():
    # no rows and no columns: nothing to render, not a malformed "|  |\n||" header
    assert markdown_table([]) == ""
    # columns but no rows: the header and separator stay, so the file still says what it would hold
    assert markdown_table([], ["model", "acc"]) == "| model | acc |\n|---|---|\n"
    assert markdown_table([{"a": 1}], []) == "| a |\n|---|\n| 1 |\n"  # empty columns fall back to the row keys
