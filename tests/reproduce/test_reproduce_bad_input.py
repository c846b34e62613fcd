"""Bad input to ``advtf reproduce``: one line, exit 2, nothing left in --out."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import advtf.jobs.reproduce.preset as preset_module
from advtf.cli.main import advtf


def _run(args):
    return CliRunner().invoke(advtf, ["reproduce", *args], catch_exceptions=False)


def _assert_one_line_error(result, out, *fragments):
    text = result.output  # stdout and stderr together
    assert result.exit_code == 2, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3 and "Traceback" not in text, text
    for fragment in fragments:
        assert fragment in text, text
    for leftover in (out, out.with_name(out.name + ".partial"), out.with_name(out.name + ".lock")):
        assert not leftover.exists(), leftover


@pytest.mark.parametrize("args, fragments", [
    (["springer2020"], ["springer2020", "springer2021"]),
    (["springer2021", "--budget", "huge"], ["huge", "smoke"]),
    (["springer2021", "--budget", "paper"], ["cifar10", "tfds build cifar10", "--data-dir"]),
    (["siddiqui2021", "--budget", "paper"], ["imagenette", "tfds build imagenette"]),
    (["all", "--budget", "paper"], ["cifar10", "tfds build"]),
    (["springer2021", "--resume"], ["nothing to resume"]),
    (["springer2021", "--resume", "--overwrite", "--budget", "paper", "--dry-run"], []),
])
def test_unknown_paper_or_budget_or_a_missing_dataset(tmp_path, args, fragments):
    out = tmp_path / "repro"
    result = _run([*args, "--out", str(out)])
    if "--dry-run" in args:  # a dry run never fails on run-control flags or absent datasets
        assert result.exit_code == 0 and not out.exists()
        return
    _assert_one_line_error(result, out, *fragments)


MALFORMED = {
    "not toml": ("paper = \"springer2021\"\n[[steps]\n", "not valid TOML"),
    "no steps": ("paper = \"springer2021\"\n", "no [[steps]]"),
    "unknown job": ("paper = \"springer2021\"\n[[steps]]\nid = \"a\"\njob = \"trian\"\n", "no job 'trian'"),
    "unknown option": ("paper = \"springer2021\"\n[[steps]]\nid = \"a\"\njob = \"train\"\noptions = { epochz = 3 }\n",
                       "has no option epochz"),
    "bad value": ("paper = \"springer2021\"\n[[steps]]\nid = \"a\"\njob = \"train\"\noptions = { lr = -1.0 }\n",
                  "--lr"),
    "nan value": ("paper = \"springer2021\"\n[[steps]]\nid = \"a\"\njob = \"train\"\noptions = { lr = nan }\n",
                  "--lr"),
    "bad rule": ("paper = \"springer2021\"\n[[steps]]\nid = \"a\"\njob = \"train\"\n[[claims]]\nid = \"c\"\n"
                 "statement = \"s\"\npaper_value = \"1\"\nwhere = \"Table 1\"\nmeasure = \"a:x\"\nholds = \"bigger\"\n",
                 "a rule is a comparison"),
    "claim on no step": ("paper = \"springer2021\"\n[[steps]]\nid = \"a\"\njob = \"train\"\n[[claims]]\nid = \"c\"\n"
                         "statement = \"s\"\npaper_value = \"1\"\nwhere = \"T\"\nmeasure = \"b:x\"\nholds = \"> 0\"\n",
                         "reads step 'b'"),
    "unknown var": ("paper = \"springer2021\"\n[[steps]]\nid = \"a\"\njob = \"train\"\nsmoke = { data = \"$nodata\" }\n",
                    "'$nodata' names no entry"),
    "wrong paper": ("paper = \"xu2019\"\n[[steps]]\nid = \"a\"\njob = \"train\"\n", "named for 'springer2021'"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_preset_is_one_line(tmp_path, monkeypatch, case):
    text, fragment = MALFORMED[case]
    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "springer2021.toml").write_text(text)
    monkeypatch.setattr(preset_module, "preset_directory", lambda: folder)
    out = tmp_path / "repro"
    _assert_one_line_error(_run(["springer2021", "--out", str(out)]), out, fragment, "springer2021.toml")


def test_an_existing_folder_that_is_no_reproduction_is_left_alone(tmp_path, monkeypatch):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = _run(["springer2021", "--out", str(out), "--overwrite"])
    assert result.exit_code == 2 and "no advtf reproduction" in result.output
    assert (out / "notes.txt").read_text() == "keep me"
