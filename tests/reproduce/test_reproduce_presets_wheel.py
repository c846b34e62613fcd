"""The presets ship with the package: a wheel built from the checkout holds them, and an installation
of that wheel finds all four through importlib.resources (tox tests a wheel, not the checkout)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_an_installed_wheel_finds_every_preset(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(ROOT)], capture_output=True, text=True, cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("advtf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for paper in ("springer2021", "xu2019", "local-properties", "siddiqui2021"):
        assert f"advtf/presets/{paper}.toml" in names
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    probe = ("import advtf.jobs.reproduce.preset as p; d = p.preset_directory(); "
             "print(d); print(sorted(p.load_preset(n).paper for n in p.PAPERS))")
    env = {**os.environ, "PYTHONPATH": str(target)}
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    where, papers = found.stdout.strip().splitlines()[-2:]
    assert Path(where) == target / "advtf" / "presets"
    assert papers == "['local-properties', 'siddiqui2021', 'springer2021', 'xu2019']"
