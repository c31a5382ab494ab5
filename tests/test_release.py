"""What a release ships: a wheel and an sdist that twine accepts, the wheel
with the Lua and ``py.typed``, a licence and a changelog, and one version
everywhere it is shown."""

import re
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

import luathrottle
from luathrottle.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_is_the_installed_distributions(capsys):
    assert luathrottle.__version__ == metadata.version("luathrottle")
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"luathrottle {luathrottle.__version__}\n"


def test_the_changelog_keeps_a_changelog():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "https://keepachangelog.com/" in text
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.MULTILINE)
    assert headings[0] == "Unreleased"
    assert luathrottle.__version__ in headings


def test_the_wheel_and_sdist_pass_twine_and_carry_what_they_must(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", tmp_path, ROOT],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("luathrottle-*.whl"))
    sdist = next(tmp_path.glob("luathrottle-*.tar.gz"))
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", wheel, sdist],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    names = zipfile.ZipFile(wheel).namelist()
    lua = {Path(name).name for name in names if name.startswith("luathrottle/lua/")}
    assert {path.name for path in (ROOT / "lua").glob("*.lua")} <= lua
    assert "luathrottle/py.typed" in names
    assert any(name.endswith("licenses/LICENSE") for name in names)
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    for shipped in ("LICENSE", "CHANGELOG.md", "README.md"):
        assert any(name.endswith(f"/{shipped}") for name in members), shipped
