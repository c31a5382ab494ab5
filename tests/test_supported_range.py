"""The supported range is what the nox sessions test.

``nox -s lowest`` installs constraints/lowest.txt, whose pins must be the lower
bounds pyproject.toml declares; both sessions run the version tests unless
given pytest arguments; constraints/dev.txt pins the tools inside the dev
extra's ranges; scripts/test.sh runs both sessions.
"""

import fnmatch
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from version_tests import is_version_test, version_tests

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]
#: What the lowest session installs: every extra but the tools and dmr, whose
#: Django floor (5) is above the lowest Django.
LOWEST_EXTRAS = sorted(set(EXTRAS) - {"dev", "bench", "dmr"})


def pins(name: str) -> dict[str, Version]:
    pinned = {}
    for line in (ROOT / "constraints" / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pinned[canonicalize_name(requirement.name)] = Version(spec.version)
    return pinned


def floors(requirements: list[str]) -> dict[str, Version]:
    """The lowest ``>=`` bound given to each package in ``requirements``."""
    lowest: dict[str, Version] = {}
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        for spec in requirement.specifier:
            if spec.operator == ">=":
                bound = Version(spec.version)
                lowest[name] = min(bound, lowest.get(name, bound))
    return lowest


def nox_sessions() -> dict[str, dict[str, str]]:
    listed = subprocess.run(
        [sys.executable, "-m", "nox", "--list", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return {session["name"]: session for session in json.loads(listed.stdout)}


def test_each_lowest_pin_is_the_declared_lower_bound():
    declared = floors(
        PROJECT["dependencies"]
        + [text for extra in LOWEST_EXTRAS for text in EXTRAS[extra]]
        + EXTRAS["dev"]
    )
    lowest = pins("lowest.txt")
    assert {name: declared.get(name) for name in lowest} == lowest


def test_every_runtime_requirement_is_pinned_at_its_lowest():
    runtime = floors(
        PROJECT["dependencies"]
        + [text for extra in LOWEST_EXTRAS for text in EXTRAS[extra]]
    )
    assert set(runtime) <= set(pins("lowest.txt"))


def test_dmr_needs_a_django_above_the_lowest():
    # Why the lowest session runs without dmr: the extra says so.
    assert floors(EXTRAS["dmr"])["django"] > pins("lowest.txt")["django"]


def test_the_dev_pins_lie_in_the_dev_extra_and_cover_the_linters():
    ranges = {
        canonicalize_name(Requirement(text).name): Requirement(text).specifier
        for text in EXTRAS["dev"]
    }
    dev = pins("dev.txt")
    assert {"ruff", "mypy", "django-stubs", "pytest", "nox"} <= set(dev)
    outside = {
        name: str(version)
        for name, version in dev.items()
        if name in ranges and not ranges[name].contains(version)
    }
    assert outside == {}
    assert set(dev) - set(ranges) <= {"django-stubs-ext", "hatchling", "build"}


def test_the_sessions_run_the_lowest_python_and_a_newer_or_equal_one():
    sessions = nox_sessions()
    assert set(sessions) == {"lowest", "newest"}
    floor = PROJECT["requires-python"].removeprefix(">=")
    assert sessions["lowest"]["python"] == floor
    newest = subprocess.run(
        [sessions["newest"]["python"], "-c", "import sys; print(sys.version_info[1])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert int(newest.stdout) >= int(floor.split(".")[1])


def test_the_test_command_pins_the_tools_and_runs_both_sessions():
    script = (ROOT / "scripts" / "test.sh").read_text()
    installs = [line for line in script.splitlines() if "pip install" in line]
    assert installs
    assert all("-c constraints/dev.txt" in line for line in installs)
    lines = script.splitlines()
    (nox_line,) = [line for line in lines if line.startswith(".venv/bin/nox")]
    assert nox_line.split("-s", 1)[1].split() == ["newest", "lowest"]


def test_each_version_test_pattern_names_a_module():
    # DRF's own suite, vendored, lies deeper in tests/.
    modules = [path.name for path in (ROOT / "tests").rglob("test_*.py")]
    assert all(fnmatch.filter(modules, pattern) for pattern in version_tests())


@pytest.mark.parametrize(
    "path", sorted((ROOT / "tests").glob("test_*.py")), ids=lambda p: p.name
)
def test_the_modules_that_depend_on_redis_py_releases_run_at_both_ends(path):
    # The sessions run the version tests: a module that states what differs
    # between redis-py's releases (tests/redis_py.py) must be one.
    imports_redis_py = re.search(
        r"^(from redis_py import|import redis_py\b)", path.read_text(), re.MULTILINE
    )
    assert is_version_test(path.name) or not imports_redis_py


@pytest.mark.parametrize(
    "path", sorted((ROOT / "tests").glob("test_*.py")), ids=lambda p: p.name
)
def test_the_modules_left_out_without_dmr_are_those_that_need_it(path):
    # A module importing dmr when loaded fails to collect without it, and
    # one serving the dmr seed project has no server to test, so it must be
    # on conftest's list; one that does neither must stay collected.
    text = path.read_text()
    imports_dmr = re.search(
        r"^(from dmr\b|import dmr\b|from luathrottle import dmr\b"
        r"|from luathrottle\.dmr\b|from test_every_door\b)",
        text,
        re.MULTILINE,
    )
    serves_dmr = re.search(r"[\"']seed_dmr\.(asgi|settings)\b", text)
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    listed = re.search(r"_NEED_DMR = \[(.*?)\]", conftest, re.DOTALL)
    assert listed is not None
    assert (f'"{path.name}"' in listed.group(1)) == bool(imports_dmr or serves_dmr)


def test_the_venv_run_leaves_the_version_tests_to_nox():
    # scripts/test.sh's pytest in .venv leaves out what the sessions run at
    # both ends, and nothing else: together they run every module.
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert ".venv/bin/python -m pytest --leave-out-version-tests\n" in script
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    left = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "--leave-out-version-tests",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def modules(collected: str) -> set[str]:
        return {
            Path(line.split("::", 1)[0]).name
            for line in collected.splitlines()
            if "::" in line
        }

    everything, kept = modules(listed), modules(left)
    assert kept == {name for name in everything if not is_version_test(name)}
    assert everything - kept
    assert kept
