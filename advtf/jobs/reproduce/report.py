"""The report of a reproduction: ``report.md`` and a self-contained ``report.html``.

Per paper: the claims table (claim, the paper's value and where, ours, verdict and its rule), the
figures of the steps (PNGs inlined as base64 data URIs in the HTML; relative links in the Markdown),
a settings table (ours next to the paper's) and the provenance of every step (run directory,
manifest, wall time) with the versions used. The HTML has no scripts and no external URLs.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

from advtf.jobs.reproduce.plan import Plan
from advtf.jobs.reproduce.verdict import Outcome, rule_text
from advtf.runs import MANIFEST, markdown_table, package_versions, read_json

VERDICT_STYLE = {"holds": "#1a7f37", "weaker": "#9a6700", "does not hold": "#cf222e", "not measured": "#57606a"}


@dataclass(frozen=True)
class PaperReport:
    plan: Plan
    outcomes: list[Outcome]


def number(value: float | None) -> str:
    """A measured value as shown everywhere in the report (4 significant digits)."""
    return "n/a" if value is None else f"{value:.4g}"


def claim_rows(outcomes: list[Outcome]) -> list[dict]:
    return [{"claim": o.claim.statement, "paper": f"{o.claim.paper_value} ({o.claim.where})",
             "ours": number(o.value) + (f" {o.claim.unit}" if o.claim.unit and o.value is not None else ""),
             "verdict": o.verdict, "rule": rule_text(o.claim), "id": o.claim.id,
             "measured": o.measured or o.claim.measure, "note": o.note} for o in outcomes]


def figures(plan: Plan) -> list[tuple[str, Path]]:
    """``(caption, png)`` of the preset's main figures that exist, then every other PNG of the steps."""
    out, seen = [], set()
    for fig in plan.preset.figures:
        sid, _, rel = fig["path"].partition(":")
        if any(s.id == sid for s in plan.steps):
            path = plan.step(sid).out / rel
            if path.is_file():
                out.append((fig.get("caption", f"{sid}: {rel}"), path))
                seen.add(path)
    for step in plan.steps:
        for path in sorted(step.out.glob("*.png")):
            if path not in seen:
                out.append((f"{step.id}: {path.name}", path))
    return out


def settings_rows(plan: Plan) -> list[dict]:
    return [{"setting": s.get("what", ""), "paper": s.get("reported", ""), "ours": s.get(plan.budget, "")}
            for s in plan.preset.settings]


def provenance_rows(plan: Plan) -> list[dict]:
    rows = []
    for step in plan.steps:
        try:
            manifest = read_json(step.out / MANIFEST)
        except (OSError, ValueError):
            manifest = {}
        rows.append({"step": step.id, "job": step.job, "run directory": str(step.out.relative_to(plan.out.parent)),
                     "manifest": f"{step.out.name}/{MANIFEST}" if manifest else "missing",
                     "started": manifest.get("started", ""), "wall seconds": manifest.get("wall_seconds", "")})
    return rows


def write_markdown(path: Path, reports: list[PaperReport], versions: dict) -> None:
    lines = ["# advtf reproduce", ""]
    for rep in reports:
        plan = rep.plan
        base = plan.out.relative_to(path.parent) if plan.out != path.parent else Path(".")
        lines += [f"## {plan.preset.title} (budget {plan.budget})", "", plan.preset.reference, "", "### Claims", ""]
        rows = claim_rows(rep.outcomes)
        lines.append(markdown_table(rows, ["claim", "paper", "ours", "verdict", "rule"]))
        lines += ["### Figures", ""]
        for caption, png in figures(plan):
            lines += [f"![{caption}]({(base / png.relative_to(plan.out)).as_posix()})", "", f"*{caption}*", ""]
        if plan.preset.settings:
            lines += ["### Settings", "", markdown_table(settings_rows(plan), ["setting", "paper", "ours"])]
        lines += ["### Provenance", "", markdown_table(provenance_rows(plan))]
    lines += ["## Versions", "", markdown_table([{"package": k, "version": v} for k, v in versions.items()])]
    path.write_text("\n".join(lines))


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1f2328}
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #d0d7de;padding:4px 8px;
vertical-align:top;text-align:left}th{background:#f6f8fa}.verdict{font-weight:bold;white-space:nowrap}
figure{display:inline-block;margin:0.5em;max-width:100%}figure img{max-width:100%;border:1px solid #d0d7de}
figcaption{font-size:13px;color:#57606a}code{font-size:12px}"""


def _table(rows: list[dict], columns: list[str], *, cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            text = html.escape(str(row.get(c, "")))
            if c == "verdict":
                color = VERDICT_STYLE.get(row[c], "#1f2328")
                cells.append(f'<td class="verdict" style="color:{color}">{text}</td>')
            else:
                cells.append(f"<td>{text}</td>")
        body.append(f"<tr{' class=' + chr(34) + cls + chr(34) if cls else ''}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def write_html(path: Path, reports: list[PaperReport], versions: dict) -> None:
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<title>advtf reproduce</title>", f"<style>{CSS}</style></head><body>", "<h1>advtf reproduce</h1>"]
    for rep in reports:
        plan = rep.plan
        parts.append(f"<section><h2>{html.escape(plan.preset.title)} (budget {html.escape(plan.budget)})</h2>")
        if plan.preset.reference:
            parts.append(f"<p>{html.escape(plan.preset.reference)}</p>")
        parts.append("<h3>Claims</h3>")
        parts.append(_table(claim_rows(rep.outcomes), ["claim", "paper", "ours", "verdict", "rule", "measured"],
                            cls="claim"))
        parts.append("<h3>Figures</h3>")
        for caption, png in figures(plan):
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            parts.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        if plan.preset.settings:
            parts += ["<h3>Settings</h3>", _table(settings_rows(plan), ["setting", "paper", "ours"])]
        rows = provenance_rows(plan)
        parts += ["<h3>Provenance</h3>", _table(rows, list(rows[0]) if rows else [])]
        parts.append("</section>")
    parts += ["<h2>Versions</h2>", _table([{"package": k, "version": v} for k, v in versions.items()],
                                          ["package", "version"]), "</body></html>"]
    path.write_text("\n".join(parts))


def write_report(out: Path, reports: list[PaperReport]) -> dict:
    """Writes ``out/report.md``, ``out/report.html`` and ``out/claims.json``; returns the claims per paper."""
    versions = package_versions()
    write_markdown(out / "report.md", reports, versions)
    write_html(out / "report.html", reports, versions)
    claims = {rep.plan.paper: [{"id": o.claim.id, "statement": o.claim.statement, "paper_value": o.claim.paper_value,
                                "where": o.claim.where, "measure": o.measured or o.claim.measure, "value": o.value,
                                "verdict": o.verdict, "rule": rule_text(o.claim), "note": o.note}
                               for o in rep.outcomes] for rep in reports}
    (out / "claims.json").write_text(json.dumps(claims, indent=2) + "\n")
    return claims
