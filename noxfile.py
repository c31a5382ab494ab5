"""The supported range, tested at both ends.

``nox -s lowest`` runs the tests on Python 3.11 with every library at the
lower bound pyproject.toml declares (constraints/lowest.txt); ``nox -s
newest`` runs them on the newest Python found here with the newest releases.
Both pin the test tools with constraints/dev.txt. By default each runs the
version-dependent tests (``VERSION_TESTS``), which scripts/test.sh's run in
.venv leaves to them: a whole suite at each end would take CI past its 20
minutes. ``nox -s lowest -- tests`` runs the whole suite at the lowest end.
"""

import glob
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEV_CONSTRAINTS = "constraints/dev.txt"
LOWEST_CONSTRAINTS = "constraints/lowest.txt"

nox.options.sessions = ["newest", "lowest"]
nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True

#: Extras the sessions leave out of luathrottle's own install: the dev and
#: bench tools are installed as tools, and dmr is added by the session whose
#: Django it accepts.
_NOT_RUNTIME = {"dev", "bench", "dmr"}
#: The linters: they check the source against the newest libraries, in
#: scripts/test.sh's .venv, and no test runs them.
_LINTERS = {"ruff", "mypy", "django-stubs"}
#: Dev tools that package or build the docs: the whole suite's release, docs
#: and range tests need them, the version-dependent tests do not.
_NOT_VERSION_TOOLS = _LINTERS | {
    "nox",
    "build",
    "hatchling",
    "twine",
    "mkdocs-material",
    "mkdocstrings",
}
#: django-modern-rest 0.16 requires Django >= 5, so the lowest session, on
#: Django 4.2, cannot install it; tests/conftest.py leaves its files out there.
_DMR = "django-modern-rest"


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()


def _minor(version: str) -> int:
    return int(version.split(".")[1])


def newest_python() -> str:
    """The newest CPython 3 that runs here: on PATH, or built by pyenv.

    pyenv's shims are on PATH for every version but run only the active ones,
    hence each candidate is run once before it is chosen.
    """
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    floor = _minor(PYPROJECT["project"]["requires-python"].removeprefix(">="))
    for minor in range(30, floor - 1, -1):
        candidates = [shutil.which(f"python3.{minor}")]
        candidates += sorted(
            glob.glob(str(pyenv / f"versions/3.{minor}.*/bin/python3.{minor}")),
            reverse=True,
        )
        for path in filter(None, candidates):
            ran = subprocess.run([path, "-c", ""], capture_output=True, check=False)
            if ran.returncode == 0:
                return path
    return f"python3.{floor}"


LOWEST_PYTHON = PYPROJECT["project"]["requires-python"].removeprefix(">=")


def _tools(extras: tuple[str, ...], leave_out: set[str]) -> list[str]:
    """The requirements of ``extras`` whose names are not in ``leave_out``."""
    declared = PYPROJECT["project"]["optional-dependencies"]
    return [
        requirement
        for extra in extras
        for requirement in declared[extra]
        if _name(requirement) not in leave_out
    ]


def _runtime_extras() -> str:
    extras = PYPROJECT["project"]["optional-dependencies"]
    return ",".join(sorted(set(extras) - _NOT_RUNTIME))


#: The test modules that depend on those versions: the store clients and
#: their pools and retry policies, the embedded Lua runtimes, the Django
#: integration, every door's framework and the metrics libraries. Both
#: sessions run these by default. Patterns of pytest's ``python_files``, so
#: that tests/conftest.py's ``collect_ignore`` applies.
VERSION_TESTS = (
    "test_adapter_imports.py",
    "test_asgi.py",
    "test_backend_errors.py",
    "test_bad_keys_and_the_breaker.py",
    "test_breaker_cancellation.py",
    "test_cluster.py",
    "test_coalescing.py",
    "test_concurrency_limiter.py",
    "test_count_when*.py",
    "test_django_*.py",
    "test_dmr.py",
    "test_drf*.py",
    "test_embedded_runtimes.py",
    "test_every_door.py",
    "test_flask.py",
    "test_functions.py",
    "test_ietf_headers.py",
    "test_lease_cancellation.py",
    "test_limiter.py",
    "test_memory_backend.py",
    "test_otel.py",
    "test_penalty*.py",
    "test_pipelines.py",
    "test_prometheus.py",
    "test_refunds.py",
    "test_spikes.py",
    "test_store_stalls.py",
    # DRF's own throttling suite, vendored in tests/drf_suite.
    "test_throttling.py",
    "test_topologies.py",
    "test_valkey*.py",
    "test_wait*.py",
)


def _pytest(session: nox.Session) -> None:
    """pytest with the arguments given after ``--``, else on the
    version-dependent tests."""
    session.run("python", "-c", "import sys; print(sys.version)")
    default = ["tests", "-o", f"python_files={' '.join(VERSION_TESTS)}"]
    session.run("python", "-m", "pytest", *(session.posargs or default))


@nox.session(python=LOWEST_PYTHON)
def lowest(session: nox.Session) -> None:
    """Python 3.11 and each library at its declared lower bound; no dmr.
    The bench peers are installed too, and the packaging and docs tools, so
    that ``-- tests`` runs the whole suite here."""
    session.install(
        "-c",
        DEV_CONSTRAINTS,
        "-c",
        LOWEST_CONSTRAINTS,
        "-e",
        f".[{_runtime_extras()}]",
        *_tools(("dev", "bench"), leave_out=_LINTERS | {_DMR}),
    )
    session.run("python", "-m", "pip", "list", "--format=freeze")
    _pytest(session)


@nox.session(python=newest_python())
def newest(session: nox.Session) -> None:
    """The newest Python here and the newest release of every library.

    The venv is made anew on each run, so it takes what was released last.
    """
    session.install(
        "-c",
        DEV_CONSTRAINTS,
        "-e",
        f".[{_runtime_extras()},dmr]",
        *_tools(("dev",), leave_out=_NOT_VERSION_TOOLS),
    )
    session.run("python", "-m", "pip", "list", "--format=freeze")
    _pytest(session)
