"""The throttling chapter ports by one rename: ``dmr.throttling`` becomes
``luathrottle.django`` and ``dmr.security.django_session`` becomes
``luathrottle.django.auth``, and every name the chapter imports, or documents
in its API reference, is then found.

The chapter's import lines and API names are committed below, so that these
tests never depend on a file outside the repository; one more test checks
them against the chapter itself (``../shared/seed/throttling.txt`` beside the
repository), so they cannot drift from it. That test skips when the chapter
is absent on a developer's machine, and fails under CI, which always has it.
"""

import ast
import importlib
import os
import re
from pathlib import Path

import pytest

import dmr_presence
import luathrottle.algorithms
import luathrottle.backends.base
import luathrottle.backends.django_cache
import luathrottle.backends.redis
import luathrottle.django.algorithms
import luathrottle.django.backends
import luathrottle.django.backends.django_cache
import luathrottle.django.backends.redis
import luathrottle.django.headers
import luathrottle.headers

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT.parent / "shared" / "seed" / "throttling.txt"
EXAMPLES = ROOT / "examples" / "seed_project"

#: Every ``dmr.throttling`` and ``dmr.security.django_session`` import line
#: of the chapter's examples, in the chapter's order.
CHAPTER_IMPORTS = (
    "from dmr.throttling import Rate, SyncThrottle",
    "from dmr.throttling import AsyncThrottle, Rate",
    "from dmr.throttling import SyncThrottle, Rate",
    "from dmr.throttling import Rate, SyncThrottle",
    "from dmr.throttling import SyncThrottle",
    "from dmr.throttling import Rate, SyncThrottle",
    "from dmr.throttling.backends import SyncDjangoCache",
    "from dmr.throttling import Rate, SyncThrottle",
    "from dmr.throttling.backends.redis import SyncRedis",
    "from dmr.throttling import Rate, SyncThrottle",
    "from dmr.throttling.algorithms import LeakyBucket",
    "from dmr.throttling import Rate, SyncThrottle",
    "from dmr.throttling.algorithms import LeakyBucket",
    "from dmr.security.django_session import DjangoSessionSyncAuth",
    "from dmr.throttling import Rate, SyncThrottle",
    "from dmr.throttling.cache_keys import RemoteAddr",
    "from dmr.throttling import AsyncThrottle, Rate",
    "from dmr.throttling.headers import XRateLimit",
    "from dmr.throttling import Rate, SyncThrottle",
    "from dmr.throttling.headers import RateLimitIETFDraft",
    "from dmr.throttling import AsyncThrottle, Rate, ThrottlingReport",
    "from dmr.throttling.cache_keys import RemoteAddr",
    "from dmr.throttling.headers import RateLimitIETFDraft",
    "from dmr.throttling import Rate, SyncThrottle, ThrottlingReport",
    "from dmr.throttling.cache_keys import RemoteAddr",
    "from dmr.throttling.headers import RateLimitIETFDraft",
)

#: The classes of the chapter's API reference, by dotted name.
CHAPTER_API = (
    "dmr.throttling.SyncThrottle",
    "dmr.throttling.AsyncThrottle",
    "dmr.throttling.Rate",
    "dmr.throttling.ThrottlingReport",
    "dmr.throttling.backends.CachedRateLimit",
    "dmr.throttling.backends.BaseThrottleSyncBackend",
    "dmr.throttling.backends.BaseThrottleAsyncBackend",
    "dmr.throttling.backends.SyncDjangoCache",
    "dmr.throttling.backends.AsyncDjangoCache",
    "dmr.throttling.backends.django_cache.UnsafeCacheBackendWarning",
    "dmr.throttling.backends.redis.SyncRedis",
    "dmr.throttling.backends.redis.AsyncRedis",
    "dmr.throttling.algorithms.BaseThrottleAlgorithm",
    "dmr.throttling.algorithms.SimpleRate",
    "dmr.throttling.algorithms.LeakyBucket",
    "dmr.throttling.cache_keys.BaseThrottleCacheKey",
    "dmr.throttling.cache_keys.RemoteAddr",
    "dmr.throttling.cache_keys.UserPk",
    "dmr.throttling.cache_keys.JwtToken",
    "dmr.throttling.headers.BaseResponseHeadersProvider",
    "dmr.throttling.headers.XRateLimit",
    "dmr.throttling.headers.RetryAfter",
)

#: API names with no counterpart, as the docs' porting table says.
NOT_PORTED = {"dmr.throttling.backends.CachedRateLimit"}

RENAMES = (
    ("dmr.security.django_session", "luathrottle.django.auth"),
    ("dmr.throttling", "luathrottle.django"),
)
#: On dmr controllers, only the throttling package is renamed: dmr's own
#: authentication stays.
DMR_RENAMES = (("dmr.throttling", "luathrottle.dmr"),)

_IMPORT_LINE = re.compile(
    r"^\d+(?:>>> )?(from dmr\.(?:throttling|security\.django_session)\b.*)$"
)
_API_LINE = re.compile(r"^- (?:final )?class (dmr\.throttling[\w.]*)[(\[]")


def port(text: str, renames=RENAMES) -> str:
    """The porting table's rename, applied mechanically."""
    for old, new in renames:
        text = re.sub(rf"\b{re.escape(old)}\b", new, text)
    return text


def chapter_text() -> str:
    if not CHAPTER.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide the chapter at {CHAPTER}")
        pytest.skip(f"the chapter is not at {CHAPTER}")
    return CHAPTER.read_text(encoding="utf-8")


def test_the_committed_lines_are_the_chapters():
    lines = chapter_text().splitlines()
    imports = [m[1] for m in map(_IMPORT_LINE.match, lines) if m]
    api = [m[1] for m in map(_API_LINE.match, lines) if m]
    assert tuple(imports) == CHAPTER_IMPORTS
    assert tuple(api) == CHAPTER_API


def test_port_renames_only_the_two_packages():
    assert port("from dmr.throttling.headers import X") == (
        "from luathrottle.django.headers import X"
    )
    assert port("from dmr.security.django_session import A") == (
        "from luathrottle.django.auth import A"
    )
    assert port("from dmr import Controller") == "from dmr import Controller"
    assert port("from dmr.throttlingx import A") == "from dmr.throttlingx import A"


@pytest.mark.parametrize("line", sorted(set(CHAPTER_IMPORTS)))
def test_every_chapter_import_runs_once_ported(line):
    ported = port(line)
    assert "dmr" not in ported
    namespace: dict[str, object] = {}
    exec(ported, namespace)  # the chapter's own line, renamed
    names = [name.strip() for name in line.split(" import ")[1].split(",")]
    for name in names:
        assert namespace[name] is not None


@pytest.mark.parametrize("line", sorted(set(CHAPTER_IMPORTS)))
def test_every_chapter_import_runs_once_ported_to_dmr(line):
    ported = port(line, DMR_RENAMES)
    assert "dmr.throttling" not in ported
    namespace: dict[str, object] = {}
    if not dmr_presence.INSTALLED:
        with dmr_presence.refused(ported.split()[1]):
            exec(ported, namespace)
        return
    exec(ported, namespace)  # the chapter's own line, renamed
    names = [name.strip() for name in line.split(" import ")[1].split(",")]
    for name in names:
        assert namespace[name] is not None


@pytest.mark.parametrize("renames", [RENAMES, DMR_RENAMES], ids=["django", "dmr"])
@pytest.mark.parametrize("dotted", CHAPTER_API)
def test_every_api_name_exists_once_ported(dotted, renames):
    module_name, _, name = port(dotted, renames).rpartition(".")
    if renames is DMR_RENAMES and not dmr_presence.INSTALLED:
        with dmr_presence.refused(module_name):
            importlib.import_module(module_name)
        return
    module = importlib.import_module(module_name)
    if dotted in NOT_PORTED:
        assert not hasattr(module, name)
        assert name in (module.__doc__ or "")
    else:
        assert getattr(module, name).__doc__
        assert name in module.__all__


@pytest.mark.parametrize(
    ("ported", "origin"),
    [
        (luathrottle.django.headers, luathrottle.headers),
        (luathrottle.django.algorithms, luathrottle.algorithms),
        (luathrottle.django.backends.redis, luathrottle.backends.redis),
        (luathrottle.django.backends.django_cache, luathrottle.backends.django_cache),
    ],
    ids=lambda module: module.__name__,
)
def test_reexports_are_the_objects_themselves(ported, origin):
    assert ported.__doc__
    for name in ported.__all__:
        assert getattr(ported, name) is getattr(origin, name)


def test_backend_base_classes_carry_the_chapters_names():
    backends = luathrottle.django.backends
    assert backends.BaseThrottleSyncBackend is luathrottle.backends.base.SyncBackend
    assert backends.BaseThrottleAsyncBackend is luathrottle.backends.base.AsyncBackend
    assert backends.SyncDjangoCache is luathrottle.backends.django_cache.SyncDjangoCache


def test_docs_porting_table_maps_every_chapter_module():
    page = (ROOT / "docs" / "porting" / "dmr.md").read_text(encoding="utf-8")
    section = page.split("# Porting from django-modern-rest", 1)[1]
    section = section.split("\n## ", 1)[0]
    modules = {
        line.split(" import ")[0].removeprefix("from ") for line in CHAPTER_IMPORTS
    }
    modules |= {dotted.rpartition(".")[0] for dotted in CHAPTER_API}
    for module in sorted(modules):
        assert f"`{module}` | `{port(module)}`" in section, module
        if module.startswith("dmr.throttling"):
            assert f"`{port(module, DMR_RENAMES)}`" in section, module
    for name in NOT_PORTED:
        assert f"`{name.rpartition('.')[2]}`" in section


def example_imports() -> dict[str, set[str]]:
    """Each ``luathrottle`` module the example project imports, with the files."""
    found: dict[str, set[str]] = {}
    for path in sorted(EXAMPLES.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.split(".")[0] == "luathrottle":
                    found.setdefault(node.module, set()).add(path.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "luathrottle":
                        found.setdefault(alias.name, set()).add(path.name)
    return found


def test_the_example_project_imports_only_ported_modules():
    """``test_e2e_seed`` serves this project and checks every "Run result":
    it is a project ported by the porting table alone."""
    chapter_modules = {
        line.split(" import ")[0].removeprefix("from ") for line in CHAPTER_IMPORTS
    }
    ported = {port(module) for module in chapter_modules}
    used = example_imports()
    assert used, "the example project imports nothing from luathrottle"
    assert set(used) <= ported, {m: f for m, f in used.items() if m not in ported}
