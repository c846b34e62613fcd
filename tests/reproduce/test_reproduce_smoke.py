"""End to end: the smoke budget of Springer et al. 2021 (12 steps, ~30 s), its report in headless Chromium.

The reproduction runs once per session (module fixture). Claims are recomputed here from the steps'
results.json by hand; the HTML is opened in Debian's chromium through Selenium (no browser download).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from advtf.cli.main import advtf
from advtf.jobs.reproduce.preset import VERDICTS

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "springer"
    result = CliRunner().invoke(advtf, ["reproduce", "springer2021", "--budget", "smoke", "--out", str(out), "--quiet"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, result.output


def _results(out: Path, step: str) -> dict:
    return json.loads((out / "steps" / step / "results.json").read_text())


def test_every_claim_has_a_verdict_and_its_number_is_the_steps(smoke):
    out, output = smoke
    claims = {c["id"]: c for c in json.loads((out / "claims.json").read_text())["springer2021"]}
    table = _results(out, "table")
    acc = table["accuracy"]
    untargeted, targeted = _results(out, "transfer-untargeted")["table"], _results(out, "transfer-targeted")["table"]
    expected = {  # the preset's measures, written out by hand
        "universal-robust-features": acc["standard (indep.)"]["R_eps"] - acc["standard (indep.)"]["R_0"],
        "zero-robust-above-chance": acc["zero-robust"]["R_eps"] - 1 / 10,
        "negative-robust-above-chance": acc["negative-robust"]["R_eps"] - 1 / 10,
        "targeted-transfer-from-slightly-robust": targeted["0.25"]["indep"] - targeted["0"]["indep"],
        "untargeted-transfer-from-slightly-robust": untargeted["0.25"]["indep"] - untargeted["0"]["indep"],
    }
    assert set(claims) == set(expected)
    markdown = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for cid, value in expected.items():
        claim = claims[cid]
        assert claim["value"] == pytest.approx(value, abs=1e-12), cid
        assert claim["verdict"] in VERDICTS and claim["verdict"] != "not measured"
        shown = f"{value:.4g}"
        row = next(line for line in markdown.splitlines() if line.startswith(f"| {claim['statement']}"))
        assert f"| {shown}" in row and f"| {claim['verdict']} |" in row
        assert re.search(rf"<td>{re.escape(shown)}[^<]*</td>", page)
        assert f"{cid}" in output and claim["verdict"] in output


def test_the_html_is_self_contained(smoke):
    out, _ = smoke
    page = (out / "report.html").read_text()
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) >= 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    for name in ("Claims", "Figures", "Settings", "Provenance", "Versions"):
        assert f">{name}<" in page
    for step in ("src-eps0", "table", "transfer-targeted"):
        assert f"springer/steps/{step}" in page


def test_a_second_run_with_resume_keeps_every_step(smoke):
    out, _ = smoke
    result = CliRunner().invoke(advtf, ["reproduce", "springer2021", "--budget", "smoke", "--out", str(out), "--quiet",
                                        "--resume"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.count("(kept: finished with the same settings)") == 12


def _browser_or_skip():
    have = CHROMIUM.exists() and CHROMEDRIVER.exists() and shutil.which(str(CHROMEDRIVER))
    ci = os.environ.get("CI") or os.environ.get("__TOX_ENVIRONMENT_VARIABLE_ORIGINAL_CI")  # tox keeps CI here
    if not have:
        message = "Debian's chromium and chromium-driver are needed (./dev test installs them)"
        if ci:
            pytest.fail(message)
        pytest.skip(message)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: pip install -e '.[test]'") if ci else pytest.skip("selenium is missing")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1200,2000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def test_the_report_in_headless_chromium(smoke, tmp_path):
    out, _ = smoke
    driver = _browser_or_skip()
    try:
        driver.get((out / "report.html").as_uri())
        assert driver.title == "advtf reproduce"
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
        widths = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth]);")
        assert len(widths) >= 4 and all(done and width > 0 for done, width in widths)
        verdicts = driver.execute_script(
            "return Array.from(document.querySelectorAll('tr.claim')).map("
            "r => r.querySelector('td.verdict').innerText.trim());")
        assert len(verdicts) == 5 and all(v in VERDICTS for v in verdicts)
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()
