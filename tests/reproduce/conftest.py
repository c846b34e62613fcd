"""Fixtures of the reproduce tests: a copied JOBS table holding the fake job, and preset writers."""

from __future__ import annotations

import textwrap

import pytest

import advtf.jobs
import fakejob


@pytest.fixture
def fake_jobs(monkeypatch):
    """JOBS with ``fake`` registered (the real table untouched); the fake's call log cleared."""
    table = advtf.jobs.JOBS.copy()
    monkeypatch.setattr(advtf.jobs, "JOBS", table)
    advtf.jobs.register("fake", "A fake job.", cli="fakejob:run", module="fakejob",
                        resumable=True)
    fakejob.CALLS.clear()
    fakejob.FAIL.clear()
    yield fakejob
    fakejob.CALLS.clear()
    fakejob.FAIL.clear()


CHAIN = """
paper = "fake"
title = "A fake paper"

[vars.smoke]
common = {{ scale = 1.0 }}
[vars.paper]
common = {{ scale = 2.0 }}

[[steps]]
id = "a"
job = "fake"
uses = ["common"]
options = {{ value = {a} }}

[[steps]]
id = "b"
job = "fake"
options = {{ value = {b}, sources = ["@a"] }}

[[steps]]
id = "c"
job = "fake"
options = {{ value = 5 }}

[[steps]]
id = "d"
job = "fake"
options = {{ value = 7, sources = ["@b", "@c"] }}

[[claims]]
id = "d-total"
statement = "d adds everything up."
paper_value = "15"
where = "Table 1"
measure = "d:total - 15"
holds = ">= 0"
weaker = "> -5"

[[claims]]
id = "list-item"
statement = "an item of a list."
paper_value = "-"
where = "Figure 1"
measure = "b:nested/list/1"
holds = "< 0"

[[claims]]
id = "missing"
statement = "a key no step writes."
paper_value = "-"
where = "nowhere"
measure = "a:no_such_key"
holds = "> 0"
"""


@pytest.fixture
def write_preset(tmp_path):
    """``write_preset(text=None, **values)``: writes fake.toml (the CHAIN preset by default); returns its folder."""
    folder = tmp_path / "presets"
    folder.mkdir()

    def write(text: str | None = None, *, a: int = 1, b: int = 2):
        body = CHAIN.format(a=a, b=b) if text is None else text
        (folder / "fake.toml").write_text(textwrap.dedent(body))
        return folder
    return write
