"""The ``luathrottle`` command: script operations and the demo.

``luathrottle scripts list|load|check`` preloads and checks the Lua scripts
on a server, for deploys, both as scripts (EVALSHA) and as function
libraries, one per script (FCALL, Redis 7+), and ``luathrottle scripts
prune`` deletes the libraries of other builds; ``luathrottle demo``
shows a limiter at work, and ``luathrottle demo --seed`` replays the Django
seed's sessions against the example project.

Every failure is one line on standard error, ``luathrottle: error: ...``,
and its exit status says what kind it is (see ``EXIT_STATUS``), so that a
health check can tell a missing script from a server it cannot reach.
"""

import argparse
import functools
import importlib
import os
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

import redis
import redis.cluster
import redis.connection
import redis.exceptions
import redis.sentinel

from luathrottle._cli_parser import EXIT_STATUS, build_parser, one_line
from luathrottle.backends._redis_calls import load_failure
from luathrottle.backends.base import SyncBackend
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis
from luathrottle.exceptions import BackendError
from luathrottle.headers import RetryAfter, XRateLimit, collect_headers
from luathrottle.limiter import Limiter
from luathrottle.scripts import LIBRARY_PREFIX, Library, Script, all_scripts

__all__ = ["EXIT_STATUS", "main"]


Runner = Callable[..., Any]

_VALKEY_SCHEMES = {"valkey://": "redis://", "valkeys://": "rediss://"}


class _UsageError(Exception):
    """A bad argument found after parsing; exit status 2."""


def _check_url(option: str, url: str) -> str:
    """Reject what is no Redis URL before any connection is tried; return
    it for redis-py, a valkey:// or valkeys:// URL as redis:// or rediss://
    (a Valkey server speaks the protocol redis-py does)."""
    for valkey_scheme, redis_scheme in _VALKEY_SCHEMES.items():
        if url.startswith(valkey_scheme):
            return _check_url(option, redis_scheme + url.removeprefix(valkey_scheme))
    try:
        redis.connection.parse_url(url)
    except ValueError as exc:
        raise _UsageError(f"{option} {url!r}: {exc}") from exc
    return url


def _timeouts(args: argparse.Namespace) -> dict[str, float]:
    """How long to wait to connect, and for each reply: ``--timeout``."""
    return {"socket_timeout": args.timeout, "socket_connect_timeout": args.timeout}


def _connect(url: str, args: argparse.Namespace) -> redis.Redis:
    return redis.Redis.from_url(url, **_timeouts(args))


def _address(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return str(kwargs.get("path") or f"{kwargs['host']}:{kwargs['port']}")


def _primaries(args: argparse.Namespace) -> list[tuple[str, Runner]]:
    """Each primary the scripts must be on, with a way to run commands there.

    ``--cluster``: every primary of the cluster ``--url`` belongs to.
    ``--sentinel NAME``: the primary the Sentinel at ``--url`` names NAME.
    Otherwise: the one server at ``--url``.
    """
    if args.cluster:
        cluster = redis.cluster.RedisCluster.from_url(args.url, **_timeouts(args))
        return [
            (node.name, functools.partial(cluster.execute_command, target_nodes=node))
            for node in sorted(cluster.get_primaries(), key=lambda node: node.name)
        ]
    if args.sentinel:
        return [_sentinel_primary(args.url, args.sentinel, _timeouts(args))]
    client = _connect(args.url, args)
    return [(_address(client), client.execute_command)]


def _sentinel_primary(
    url: str, name: str, timeouts: dict[str, float]
) -> tuple[str, Runner]:
    address = urllib.parse.urlsplit(url)
    if not address.hostname:
        raise _UsageError(f"--url {url!r}: a Sentinel URL needs a host")
    where = f"{address.hostname}:{address.port or 26379}"
    sentinel = redis.sentinel.Sentinel(
        [(address.hostname, address.port or 26379)], sentinel_kwargs=timeouts
    )
    try:
        # discover_master() hides why it failed: ask the one Sentinel directly.
        masters = _primary_names(sentinel.sentinels[0].sentinel_masters())
    except redis.ConnectionError as exc:
        raise _UsageError(f"cannot reach the Sentinel at {where}: {exc}") from exc
    except redis.ResponseError as exc:
        raise _UsageError(f"{where} is not a Sentinel: {exc}") from exc
    if name not in masters:
        known = ", ".join(sorted(masters)) or "none"
        raise _UsageError(
            f"the Sentinel at {where} knows no primary named {name!r} "
            f"(it knows: {known})"
        )
    host, port = sentinel.discover_master(name)
    primary = sentinel.master_for(
        name,
        socket_timeout=timeouts["socket_timeout"],
        socket_connect_timeout=timeouts["socket_connect_timeout"],
    )
    return (f"{host}:{port}", primary.execute_command)


def _primary_names(masters: object) -> list[str]:
    """The primaries a Sentinel names: SENTINEL MASTERS is a dict by name
    over RESP2, and a list of each primary's fields over RESP3."""
    if isinstance(masters, dict):
        return list(masters)
    return [str(primary["name"]) for primary in cast(list[Any], masters)]


def _scripts_list(args: argparse.Namespace, out: TextIO) -> int:
    for script in all_scripts():
        print(f"{script.name}\tv{script.version}\t{script.sha}", file=out)
    for script in all_scripts():
        for function in script.library.functions:
            print(f"library\t{script.library.name}\t{function}", file=out)
    return 0


def _without_functions(error: redis.RedisError) -> str | None:
    """Why a server cannot have the libraries, when ``error`` says it
    cannot: it has no functions (before Redis 7), or the ACL forbids them."""
    if isinstance(error, redis.exceptions.NoPermissionError):
        return "forbidden by the ACL"
    if isinstance(error, redis.ResponseError) and str(error).startswith(
        "unknown command"
    ):
        return "no functions on this server"
    return None


def _load_library(run: Runner, library: Library) -> str:
    """FUNCTION LOAD ``library``, never REPLACE: a library of its name is
    this very code, as names are by content. Returns the line's last
    fields."""
    line = f"library\t{library.name}"
    try:
        run("FUNCTION LOAD", library.code)
    except redis.RedisError as exc:
        if load_failure(exc) == "present":
            return f"present\t{line}"
        why = _without_functions(exc)
        if why is None:
            raise
        return f"skipped\t{line}\t{why}"
    return f"loaded\t{line}"


def _scripts_load(args: argparse.Namespace, out: TextIO) -> int:
    for node, run in _primaries(args):
        for script in all_scripts():
            sha = run("SCRIPT LOAD", script.source)
            sha = sha.decode() if isinstance(sha, bytes) else sha
            print(f"{node}\tloaded\t{script.name}\tv{script.version}\t{sha}", file=out)
        for script in all_scripts():
            print(f"{node}\t{_load_library(run, script.library)}", file=out)
    return 0


def _libraries(run: Runner) -> tuple[list[str], str | None]:
    """The name of every luathrottle library on the server, of any build;
    or none, and why the server cannot have them."""
    try:
        reply = run("FUNCTION LIST", "LIBRARYNAME", f"{LIBRARY_PREFIX}*")
    except redis.RedisError as exc:
        why = _without_functions(exc)
        if why is None:
            raise
        return [], why
    names = []
    for entry in cast(list[Any], reply):
        # A dict over RESP3, a flat list of fields and values over RESP2.
        fields = (
            entry
            if isinstance(entry, dict)
            else dict(zip(entry[::2], entry[1::2], strict=True))
        )
        # Text rather than bytes with ?decode_responses=true in the URL.
        name = fields.get(b"library_name", fields.get("library_name"))
        names.append(name.decode() if isinstance(name, bytes) else str(name))
    # The pattern matches more than luathrottle's own names.
    ours = [
        name
        for name in names
        if name == LIBRARY_PREFIX or name.startswith(f"{LIBRARY_PREFIX}_")
    ]
    return ours, None


def _library_state(library: Library, libraries: list[str], why: str | None) -> str:
    """``ok``, ``MISSING``, or ``skipped`` and why the server cannot have
    it, as the line's last fields."""
    line = f"library\t{library.name}"
    if why is not None:
        return f"skipped\t{line}\t{why}"
    return f"{'ok' if library.name in libraries else 'MISSING'}\t{line}"


def _scripts_check(args: argparse.Namespace, out: TextIO) -> int:
    scripts = all_scripts()
    missing = 0
    for node, run in _primaries(args):
        present = run("SCRIPT EXISTS", *(script.sha for script in scripts))
        libraries, why = _libraries(run)
        for script, exists in zip(scripts, present, strict=True):
            library = _library_state(script.library, libraries, why)
            print(f"{node}\t{_script_state(script, exists, library)}", file=out)
            print(f"{node}\t{library}", file=out)
            missing += library.startswith("MISSING")
            missing += not exists and not library.startswith("ok")
    if not missing:
        return 0
    print(
        f"luathrottle: error: {missing} script(s) or librar(ies) missing; run "
        "luathrottle scripts load with the same options",
        file=sys.stderr,
    )
    return 1


def _script_state(script: Script, exists: bool, library: str) -> str:
    """``ok``; ``unneeded`` when the server serves the script from its
    function library (a restart or SCRIPT FLUSH empties the script cache,
    not the libraries); else ``MISSING``."""
    line = f"{script.name}\t{script.sha}"
    if exists:
        return f"ok\t{line}"
    if library.startswith("ok"):
        return f"unneeded\t{line}\tserved by library {script.library.name}"
    return f"MISSING\t{line}"


def _scripts_prune(args: argparse.Namespace, out: TextIO) -> int:
    ours = {script.library.name for script in all_scripts()}
    for node, run in _primaries(args):
        libraries, why = _libraries(run)
        if why is not None:
            print(f"{node}\tskipped\tlibraries\t{why}", file=out)
        for name in sorted(set(libraries) - ours):
            run("FUNCTION DELETE", name)
            print(f"{node}\tdeleted\tlibrary\t{name}", file=out)
    return 0


def _demo(args: argparse.Namespace, out: TextIO) -> int:
    if args.seed:
        return _demo_seed(args, out)
    if args.redis:
        url = _check_url("--redis", args.redis)
        backend: SyncBackend = SyncRedis(_connect(url, args))
        label = f"Redis at {args.redis}"
    else:
        backend, label = MemoryBackend(), "the embedded MemoryBackend"
    limiter = Limiter(3, 10, backend=backend, prefix="luathrottle-demo")
    limiter.reset("client-1")
    print(f"3 requests per 10 seconds for key 'client-1', on {label}.", file=out)
    providers = [XRateLimit(), RetryAfter()]
    for attempt in range(1, 6):
        decision = limiter.hit("client-1")
        status = "200 OK" if decision.allowed else "429 Too Many Requests"
        print(f"\nrequest {attempt}: HTTP/1.1 {status}", file=out)
        for name, value in collect_headers(providers, decision.limits).items():
            print(f"{name}: {value}", file=out)
    return 0


_SEED_HOST = "127.0.0.1:8000"
_SEED_SETTINGS = "seed_project.settings_embedded"
_RATE_LIMIT_HEADERS = frozenset(
    {
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "retry-after",
        "ratelimit-policy",
        "ratelimit",
    }
)


class _SeedError(Exception):
    """Why ``demo --seed`` cannot run; printed as it is."""


def _seed_root(project: str) -> Path:
    root = Path(project).resolve()
    if not (root / "seed_project" / "settings_embedded.py").is_file():
        raise _SeedError(
            f"no example project at {root / 'seed_project'}: run from the "
            "repository's root, or pass --project with the directory that "
            "holds seed_project/ (the repository's examples/)"
        )
    return root


def _seed_sessions(root: Path) -> Any:
    """Set Django up on the example's embedded settings; return its sessions."""
    try:
        import django
        from django.conf import settings
    except ImportError as exc:
        raise _SeedError(
            "demo --seed needs Django: pip install 'luathrottle[django]'"
        ) from exc
    if settings.configured:
        raise _SeedError(
            "demo --seed sets Django up itself, and Django is already "
            "configured in this process; run it in a process of its own"
        )
    sys.path.insert(0, str(root))
    os.environ["DJANGO_SETTINGS_MODULE"] = _SEED_SETTINGS
    django.setup()
    return importlib.import_module("seed_project.sessions").SESSIONS


def _curl(step: Any) -> str:
    url = f"http://{_SEED_HOST}{step.path}"
    if "?" in url:
        url = f"'{url}'"
    dump = " -D -" if step.show_headers else ""
    return f"$ curl {url}{dump} -X {step.method}"


def _print_response(step: Any, response: Any, out: TextIO) -> None:
    """The response as curl shows it in the seed: with ``-D -`` the status
    line and headers, rate-limit ones first; then the body."""
    if step.show_headers:
        print(f"HTTP/1.1 {response.status_code} {response.reason_phrase}", file=out)
        headers = list(response.headers.items())
        headers.sort(key=lambda item: item[0].lower() not in _RATE_LIMIT_HEADERS)
        for name, value in headers:
            print(f"{name}: {value}", file=out)
    print(response.content.decode("utf-8", "replace"), file=out)


def _demo_seed(args: argparse.Namespace, out: TextIO) -> int:
    try:
        root = _seed_root(args.project)
        sessions = _seed_sessions(root)
    except _SeedError as exc:
        raise _UsageError(str(exc)) from exc
    from django.test import Client

    client = Client(HTTP_HOST=_SEED_HOST)
    print(
        f"# The seed's sessions, replayed in-process against {root / 'seed_project'}"
        f" ({_SEED_SETTINGS}: caches in memory, no Redis; no date or server "
        "headers, as no server runs).",
        file=out,
    )
    for session in sessions:
        note = "" if session.in_seed else " (not in the seed)"
        print(f"\n# {session.title}{note}", file=out)
        for step in session.steps:
            print(_curl(step), file=out)
            _print_response(step, client.generic(step.method, step.path), out)
    return 0


_HANDLERS: dict[tuple[str, str | None], Callable[[argparse.Namespace, TextIO], int]] = {
    ("scripts", "list"): _scripts_list,
    ("scripts", "load"): _scripts_load,
    ("scripts", "check"): _scripts_check,
    ("scripts", "prune"): _scripts_prune,
    ("demo", None): _demo,
}


def _fail(text: str) -> int:
    print(f"luathrottle: error: {one_line(text)}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status (see ``EXIT_STATUS``).

    Args:
        argv: the arguments after the program name; ``sys.argv`` by default.
        out: where to print; standard output by default.

    Raises:
        SystemExit: for ``--help`` (0) and usage errors (2), as argparse does.
    """
    args = build_parser().parse_args(argv)
    handler = _HANDLERS[(args.command, getattr(args, "action", None))]
    try:
        if getattr(args, "url", None) is not None:
            args.url = _check_url("--url", args.url)
        return handler(args, sys.stdout if out is None else out)
    except _UsageError as exc:
        return _fail(str(exc))
    except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
        return _fail(str(exc) or type(exc).__name__)
    except BackendError as exc:
        # The demo's limiter wraps the store's error; its text names the cause.
        return _fail(f"{args.redis}: {exc}")
    except BrokenPipeError:
        # The reader (say, `| head`) left: stop quietly, as Unix tools do.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0


if __name__ == "__main__":
    sys.exit(main())
