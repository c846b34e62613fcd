"""write_table streams rows (a generator of a whole split's rows) into the same CSV and Markdown as a list."""

import numpy as np

from advtf.runs import write_table


def _expected_csv(rows, columns):
    lines = [",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns) for r in rows]
    return "".join(line + "\r\n" for line in lines)  # the csv module's default line terminator


def _expected_md(rows, columns):
    cell = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def test_a_generator_of_rows_writes_the_same_files_as_a_list(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"index": i, "label": int(rng.integers(10)), "l2": round(float(rng.random()), 6), "ok": bool(i % 2)}
            for i in range(50)]
    columns = ["index", "label", "l2", "ok"]
    for name, given in (("listed", rows), ("streamed", (dict(r) for r in rows))):
        write_table(tmp_path, name, given, columns)
        assert (tmp_path / f"{name}.csv").read_bytes().decode() == _expected_csv(rows, columns)
        assert (tmp_path / f"{name}.md").read_text() == _expected_md(rows, columns)
    write_table(tmp_path, "inferred", iter(rows))  # columns from the first row
    assert (tmp_path / "inferred.csv").read_bytes() == (tmp_path / "listed.csv").read_bytes()


def test_an_empty_generator_writes_the_header_only(tmp_path):
    write_table(tmp_path, "empty", iter([]), ["a", "b"])
    assert (tmp_path / "empty.csv").read_bytes() == b"a,b\r\n"
    assert (tmp_path / "empty.md").read_text() == "| a | b |\n|---|---|\n"
