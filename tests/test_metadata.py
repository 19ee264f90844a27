"""What a registry and `taynode --version` / `--help` show: one version, plain help, the license file."""

import re
from pathlib import Path

import pytest
import tomllib

import taynode
from taynode.cli import main

ROOT = Path(__file__).resolve().parents[1]


def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_version_is_the_packages(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"taynode {taynode.__version__}" == f"taynode {project()['version']}"


def test_help_is_plain_text(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "demo" in out and "TAYNODE_NO_COMPILE_CACHE" in out
    assert "``" not in out and not re.search(r":(func|class|mod|data):", out), out


def test_license_and_changelog_are_shipped_and_declared():
    meta = project()
    assert meta["license"] == "MIT" and meta["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the taynode developers" in text
    assert f"## {meta['version']}" in (ROOT / "CHANGELOG.md").read_text()
