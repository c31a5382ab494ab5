"""The docs site builds with ``--strict`` (a broken link, a missing anchor or
an API reference that names nothing fails it), every public module has its
API reference page, and the README stays a front page: short, with an
Install section and no internal references."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from test_public_api import PUBLIC

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text(encoding="utf-8")


def mkdocs(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", *args, "--config-file", ROOT / "mkdocs.yml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_the_docs_build_strictly(tmp_path):
    site = tmp_path / "site"
    built = mkdocs("build", "--strict", "--site-dir", str(site))
    assert built.returncode == 0, built.stdout + built.stderr
    # The API reference is rendered from the docstrings.
    limiter = (site / "api" / "luathrottle.limiter" / "index.html").read_text()
    assert "Limits how often each key may act" in limiter
    assert (site / "algorithms.png").read_bytes()[:4] == b"\x89PNG"
    assert (site / "benchmarks" / "chart.png").read_bytes()[:4] == b"\x89PNG"
    changelog = (site / "changelog" / "index.html").read_text()
    assert "Keep a Changelog" in changelog


class _Loader(yaml.SafeLoader):
    """Reads mkdocs.yml, whose ``!relative`` tags only mkdocs resolves."""


_Loader.add_constructor("!relative", lambda loader, node: node.value)


def nav_pages() -> list[str]:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Loader)

    def walk(items: list[object]) -> list[str]:
        pages: list[str] = []
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            pages += walk(value) if isinstance(value, list) else [str(value)]
        return pages

    return walk(config["nav"])


def test_every_public_module_has_an_api_page_in_the_nav():
    pages = nav_pages()
    for module in PUBLIC:
        page = f"api/{module}.md"
        assert f"::: {module}\n" in (DOCS / page).read_text(encoding="utf-8")
        assert page in pages, module
    for page in pages:
        assert (DOCS / page).is_file(), page


def test_scripts_docs_serves_with_the_given_python():
    served = subprocess.run(
        ["bash", "scripts/docs.sh", "--help"],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert served.returncode == 0, served.stderr
    assert "Run the builtin development server" in served.stdout
    missing = subprocess.run(
        ["bash", "scripts/docs.sh"],
        cwd=ROOT,
        env={**os.environ, "PYTHON": "/bin/false"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1
    assert "install the dev extra" in missing.stderr


def test_the_readme_is_a_front_page_with_an_install_section():
    assert len(README.splitlines()) <= 300
    install = README.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    assert 'pip install "luathrottle[django]"' in install


def test_the_readme_has_no_issue_references():
    found = re.findall(r"#\d+\b|\bissues? \d+", README, flags=re.IGNORECASE)
    assert found == []


def test_the_readme_links_resolve():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        if not re.match(r"[a-z]+://", target):
            assert (ROOT / target).exists(), target
