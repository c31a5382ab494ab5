"""The public surface is pinned, and the sync and async twins match."""

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import dmr_presence
import luathrottle
from luathrottle import AsyncLimiter, Limiter, Outcome, Reason
from luathrottle.backends.redis import AsyncRedis, SyncRedis

#: Every public module and its ``__all__``; every other module is private
#: (its name starts with ``_``), or is ``luathrottle.cli`` and
#: ``luathrottle.django.apps``, which Python and Django load by name.
PUBLIC = {
    "luathrottle": [
        "AsyncConcurrencyLimiter",
        "AsyncLimiter",
        "AsyncReservation",
        "BackendError",
        "BaseThrottleAlgorithm",
        "CircuitBreaker",
        "CircuitOpenError",
        "ConcurrencyLimiter",
        "Decision",
        "DecisionEvent",
        "LeakyBucket",
        "Limit",
        "LimitDecision",
        "Limiter",
        "LuathrottleError",
        "Outcome",
        "PoolExhaustedError",
        "Rate",
        "RateLimited",
        "Reason",
        "Reservation",
        "ScriptError",
        "SimpleRate",
        "SlidingWindow",
        "TokenBucket",
        "__version__",
        "add_observer",
        "remove_observer",
    ],
    "luathrottle.asgi": ["RateLimitMiddleware", "client_address"],
    "luathrottle.drf": [
        "AnonRateThrottle",
        "BaseThrottle",
        "RateLimitHeadersMixin",
        "ScopedRateThrottle",
        "SimpleRateThrottle",
        "StoreUnavailable",
        "UserRateThrottle",
        "exception_handler",
        "rate_limit_headers",
    ],
    "luathrottle.dmr": [
        "AsyncDjangoCache",
        "AsyncRedis",
        "AsyncThrottle",
        "BaseResponseHeadersProvider",
        "BaseThrottleAlgorithm",
        "BaseThrottleAsyncBackend",
        "BaseThrottleCacheKey",
        "BaseThrottleSyncBackend",
        "CountWhenMiddleware",
        "JwtToken",
        "LeakyBucket",
        "MemoryBackend",
        "Rate",
        "RateLimitIETFDraft",
        "RemoteAddr",
        "RetryAfter",
        "SimpleRate",
        "SyncDjangoCache",
        "SyncOrAsyncThrottle",
        "SyncRedis",
        "SyncThrottle",
        "ThrottlingReport",
        "UnsafeCacheBackendWarning",
        "UserPk",
        "XRateLimit",
    ],
    "luathrottle.fastapi": [
        "CountWhenMiddleware",
        "SyncThrottle",
        "Throttle",
        "add_problem_handler",
        "client_host",
    ],
    "luathrottle.flask": ["Throttle", "remote_address"],
    "luathrottle.otel": ["OtelObserver"],
    "luathrottle.prometheus": ["PrometheusObserver"],
    "luathrottle.rates": [
        "MAX_DURATION",
        "MAX_LIMITS",
        "MAX_NAME",
        "MAX_REQUESTS",
        "Limit",
        "Rate",
    ],
    "luathrottle.django.algorithms": [
        "BaseThrottleAlgorithm",
        "LeakyBucket",
        "SimpleRate",
        "SlidingWindow",
        "TokenBucket",
    ],
    "luathrottle.django.backends": [
        "AsyncBackend",
        "AsyncDjangoCache",
        "BaseThrottleAsyncBackend",
        "BaseThrottleSyncBackend",
        "SyncBackend",
        "SyncDjangoCache",
    ],
    "luathrottle.django.backends.django_cache": [
        "AsyncDjangoCache",
        "SyncDjangoCache",
        "UnsafeCacheBackendWarning",
    ],
    "luathrottle.django.backends.redis": ["AsyncRedis", "SyncRedis"],
    "luathrottle.django.cache_keys": [
        "BaseThrottleCacheKey",
        "JwtToken",
        "ProxiedRemoteAddr",
        "RemoteAddr",
        "UserPk",
    ],
    "luathrottle.django.checks": [
        "E001",
        "E002",
        "E003",
        "E004",
        "E005",
        "E006",
        "VIEW_ATTRIBUTES",
        "W001",
        "W002",
        "check_caches",
        "check_settings",
        "check_views",
    ],
    "luathrottle.django.headers": [
        "BaseResponseHeadersProvider",
        "RateLimitIETFDraft",
        "RetryAfter",
        "XRateLimit",
    ],
    "luathrottle.dmr.algorithms": [
        "BaseThrottleAlgorithm",
        "LeakyBucket",
        "SimpleRate",
        "SlidingWindow",
        "TokenBucket",
    ],
    "luathrottle.dmr.backends": [
        "AsyncBackend",
        "AsyncDjangoCache",
        "BaseThrottleAsyncBackend",
        "BaseThrottleSyncBackend",
        "SyncBackend",
        "SyncDjangoCache",
    ],
    "luathrottle.dmr.backends.django_cache": [
        "AsyncDjangoCache",
        "SyncDjangoCache",
        "UnsafeCacheBackendWarning",
    ],
    "luathrottle.dmr.backends.redis": ["AsyncRedis", "SyncRedis"],
    "luathrottle.dmr.cache_keys": [
        "BaseThrottleCacheKey",
        "JwtToken",
        "RemoteAddr",
        "UserPk",
    ],
    "luathrottle.dmr.headers": [
        "BaseResponseHeadersProvider",
        "RateLimitIETFDraft",
        "RetryAfter",
        "XRateLimit",
    ],
    "luathrottle.algorithms": [
        "BaseThrottleAlgorithm",
        "LeakyBucket",
        "SimpleRate",
        "SlidingWindow",
        "TokenBucket",
    ],
    "luathrottle.backends": [
        "AsyncBackend",
        "AsyncDjangoCache",
        "AsyncRedis",
        "MemoryBackend",
        "SyncBackend",
        "SyncDjangoCache",
        "SyncRedis",
    ],
    "luathrottle.backends.base": [
        "AsyncBackend",
        "ScriptCall",
        "StoreTraits",
        "SyncBackend",
    ],
    "luathrottle.backends.django_cache": [
        "AsyncDjangoCache",
        "SyncDjangoCache",
        "UnsafeCacheBackendWarning",
    ],
    "luathrottle.backends.memory": ["MemoryBackend"],
    "luathrottle.backends.redis": [
        "AsyncClient",
        "AsyncRedis",
        "SyncClient",
        "SyncRedis",
    ],
    "luathrottle.concurrency": [
        "AsyncConcurrencyLimiter",
        "AsyncLease",
        "ConcurrencyLimiter",
        "Lease",
    ],
    "luathrottle.decision": ["Decision", "LimitDecision", "Reason"],
    "luathrottle.django": [
        "AsyncConcurrencyThrottle",
        "AsyncThrottle",
        "ConcurrencyThrottle",
        "Rate",
        "SyncThrottle",
        "ThrottledView",
        "ThrottlingReport",
        "UnsafeCacheBackendWarning",
        "throttle",
    ],
    "luathrottle.django.auth": [
        "BaseAsyncAuth",
        "BaseSyncAuth",
        "DjangoSessionAsyncAuth",
        "DjangoSessionSyncAuth",
    ],
    "luathrottle.django.concurrency": [
        "AsyncConcurrencyThrottle",
        "BaseConcurrencyThrottle",
        "ConcurrencyThrottle",
    ],
    "luathrottle.django.signals": ["request_throttled", "store_failed"],
    "luathrottle.django.throttles": [
        "AsyncThrottle",
        "BaseThrottle",
        "SyncThrottle",
        "ThrottlingReport",
    ],
    "luathrottle.django.views": ["ThrottledView", "throttle"],
    "luathrottle.exceptions": [
        "BackendError",
        "CircuitOpenError",
        "LuathrottleError",
        "PoolExhaustedError",
        "RateLimited",
        "ScriptError",
    ],
    "luathrottle.headers": [
        "BaseResponseHeadersProvider",
        "RateLimitIETFDraft",
        "RetryAfter",
        "XRateLimit",
        "collect_headers",
    ],
    "luathrottle.limiter": ["AsyncLimiter", "Limiter"],
    "luathrottle.scripts": [
        "LIBRARY_PREFIX",
        "Library",
        "Script",
        "all_scripts",
        "get_script",
    ],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_modules_export_exactly_the_pinned_names(module):
    if module.startswith("luathrottle.dmr") and not dmr_presence.INSTALLED:
        with dmr_presence.refused(module):
            importlib.import_module(module)
        return
    imported = importlib.import_module(module)
    assert sorted(imported.__all__) == sorted(PUBLIC[module])
    for name in imported.__all__:
        value = getattr(imported, name)
        # Constants and check messages document themselves by their value.
        if callable(value):
            assert value.__doc__, f"{module}.{name} has no docstring"


def test_top_level_exports_are_pinned():
    assert luathrottle.__all__ == PUBLIC["luathrottle"]


#: Modules Python and Django load by name, with nothing to import from them.
_LOADED_BY_NAME = {"luathrottle.__main__", "luathrottle.cli", "luathrottle.django.apps"}


def test_every_public_module_is_pinned():
    found = set()
    for module in pkgutil.walk_packages(luathrottle.__path__, "luathrottle."):
        if not any(part.startswith("_") for part in module.name.split(".")):
            found.add(module.name)
    pinned = set(PUBLIC) - {"luathrottle"}
    if not dmr_presence.INSTALLED:
        # The walk finds luathrottle.dmr, whose import fails without dmr,
        # and so nothing under it.
        pinned = {name for name in pinned if not name.startswith("luathrottle.dmr.")}
    assert found - _LOADED_BY_NAME == pinned


def test_reasons_are_strings_too():
    assert Reason.LIMIT_EXCEEDED == "limit_exceeded"
    assert Reason.COST_EXCEEDS_LIMIT == "cost_exceeds_limit"
    assert Reason.STORE_UNAVAILABLE == "store_unavailable"
    assert [item.value for item in Reason] == [
        "limit_exceeded",
        "cost_exceeds_limit",
        "store_unavailable",
        "shadow_denied",
        "disabled",
    ]
    decision = Limiter(1, 60, prefix="reasons").peek("k", cost=2)
    assert decision.reason is Reason.COST_EXCEEDS_LIMIT
    assert decision.reason == "cost_exceeds_limit"


def run_python(program):
    return subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()


# An audit hook sees every file Python opens, so a Lua file read at import
# cannot hide; the same program then hits a limiter, which must read them.
IMPORT_PROBE = """
import sys
opened = []
sys.addaudithook(
    lambda event, args: event == "open"
    and str(args[0]).endswith(".lua")
    and opened.append(str(args[0]))
)
import luathrottle
import luathrottle.backends
print("lupa" in sys.modules, len(opened))
limiter = luathrottle.Limiter(1, 60)
print("built", len(opened))
print(limiter.hit("k").allowed, "lupa" in sys.modules, len(opened))
"""


def test_importing_luathrottle_reads_no_lua_and_starts_no_runtime():
    output = run_python(IMPORT_PROBE)
    imported, built, hit = output[0:2], output[2:4], output[4:7]
    assert imported == ["False", "0"]
    # Building a limiter reads the scripts (the registry's files in lua/)...
    scripts = int(built[1])
    assert scripts >= 2
    # ...and only its first hit starts the embedded runtime, which reads the
    # prelude and the keyspace in lua/embedded/.
    assert hit == ["True", "True", str(scripts + 2)]


def test_importing_backends_imports_no_django_and_no_redis():
    program = (
        "import sys, luathrottle.backends as b\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'redis', 'lupa') or 'django_cache' in m) or 'none')\n"
        "b.MemoryBackend\n"
        "print('lupa' in sys.modules, 'django' in sys.modules)\n"
        "b.SyncDjangoCache\n"
        "print('luathrottle.backends.django_cache' in sys.modules)\n"
    )
    assert run_python(program) == ["none", "False", "False", "True"]


def test_importing_the_django_layer_starts_no_lua_runtime():
    # The runtime changes the process's dlopen flags while it loads: a web
    # process that never runs an embedded script should not pay for it.
    # Without dmr, luathrottle.dmr cannot be imported at all.
    layers = ["luathrottle.django", "luathrottle.drf"]
    layers += ["luathrottle.dmr"] if dmr_presence.INSTALLED else []
    program = (
        "import sys, django\n"
        "from django.conf import settings\n"
        "settings.configure()\n"
        "flags = sys.getdlopenflags()\n"
        f"import {', '.join(layers)}\n"
        "print('lupa' in sys.modules, sys.getdlopenflags() == flags)\n"
    )
    assert run_python(program) == ["False", "True"]


def public_methods(cls):
    return {
        name
        for name, _ in inspect.getmembers(cls, callable)
        if not name.startswith("_")
    }


def test_limiter_twins_expose_the_same_methods():
    assert (
        public_methods(Limiter)
        == public_methods(AsyncLimiter)
        == {"hit", "limit", "peek", "refund", "reserve", "reset", "state_keys", "wait"}
    )
    assert not inspect.iscoroutinefunction(AsyncLimiter.state_keys)
    for name in ("hit", "peek", "reset", "wait"):
        assert inspect.iscoroutinefunction(getattr(AsyncLimiter, name))
        assert inspect.signature(getattr(Limiter, name)) == inspect.signature(
            getattr(AsyncLimiter, name)
        )


def test_redis_twins_expose_the_same_methods():
    sync_names = public_methods(SyncRedis)
    async_names = {
        name if name == "from_url" else name.removeprefix("a")
        for name in public_methods(AsyncRedis)
    }
    assert sync_names == async_names
    assert sync_names == {
        "check",
        "delete_keys",
        "from_url",
        "initialize_algorithm",
        "load_script",
        "run_script",
        "run_scripts",
        "traits",
    }


TESTS = Path(__file__).resolve().parent


def private_imports(source: str) -> list[str]:
    """Each private luathrottle module or name that ``source`` imports, with
    its line: one whose dotted name has a part that starts with ``_``, in
    the module imported from or in the name imported (``luathrottle._keys``,
    ``luathrottle.backends._staged``, ``_check_scope`` from a public module)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "luathrottle" and any(p.startswith("_") for p in parts):
                found.append(f"{node.lineno}: {name}")
    return found


def test_the_private_import_check_finds_every_form():
    source = "\n".join(
        [
            "import luathrottle._keys",
            "import luathrottle.backends._staged as staged",
            "from luathrottle._keys import state_keys",
            "from luathrottle.backends import _staged",
            "from luathrottle.django.throttles import BaseThrottle, _check_scope",
            "from luathrottle._denials import *",
            "def later():",
            "    from luathrottle import Limiter, _engine",
            # Public names, and private names of other packages: none found.
            "import luathrottle, luathrottle.backends.redis",
            "from luathrottle import Limiter",
            "from luathrottle.django.throttles import BaseThrottle",
            "from states import _store",
            "import _pytest",
        ]
    )
    assert private_imports(source) == [
        "1: luathrottle._keys",
        "2: luathrottle.backends._staged",
        "3: luathrottle._keys.state_keys",
        "4: luathrottle.backends._staged",
        "5: luathrottle.django.throttles._check_scope",
        "6: luathrottle._denials.*",
        "8: luathrottle._engine",
    ]


def test_tests_import_only_public_luathrottle_modules_and_names():
    """Tests reach luathrottle as its users do: through public names only."""
    found = {
        str(path.relative_to(TESTS)): private
        for path in sorted(TESTS.rglob("*.py"))
        if (private := private_imports(path.read_text()))
    }
    assert found == {}


def test_outcomes_are_strings_too():
    assert [item.value for item in Outcome] == [
        "admitted",
        "near_limit",
        "denied",
        "denied_from_cache",
        "failed_open",
        "failed_closed",
        "lease_refused",
        "lease_released",
        "shadow_denied",
    ]
    assert Outcome.SHADOW_DENIED == "shadow_denied"
