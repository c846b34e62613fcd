"""Every package of the library is in setup.cfg's list, so the wheel tox installs holds all of it."""

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_listed_in_setup_cfg():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = {line.strip() for line in config["options"]["packages"].splitlines() if line.strip()}
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "advtf").rglob("__init__.py")}
    assert found - listed == set(), "add these to setup.cfg [options] packages"
    assert "advtf.cli" in listed
