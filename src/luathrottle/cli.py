"""The ``luathrottle`` command: script operations and the demo.

``luathrottle scripts list|load|check`` preloads and checks the Lua scripts
on a server, for deploys; ``luathrottle demo`` shows a limiter at work, and
``luathrottle demo --seed`` replays the Django seed's sessions against the
example project.
"""

import argparse
import functools
import importlib
import os
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import redis
import redis.cluster
import redis.sentinel

from luathrottle.backends.base import SyncBackend
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis
from luathrottle.headers import RetryAfter, XRateLimit, collect_headers
from luathrottle.limiter import Limiter
from luathrottle.scripts import all_scripts

__all__ = ["main"]


_TIMEOUTS = {"socket_timeout": 5, "socket_connect_timeout": 5}

Runner = Callable[..., Any]


def _connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, **_TIMEOUTS)


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
        cluster = redis.cluster.RedisCluster.from_url(args.url, **_TIMEOUTS)
        return [
            (node.name, functools.partial(cluster.execute_command, target_nodes=node))
            for node in sorted(cluster.get_primaries(), key=lambda node: node.name)
        ]
    if args.sentinel:
        address = urllib.parse.urlsplit(args.url)
        sentinel = redis.sentinel.Sentinel(
            [(address.hostname, address.port or 26379)], **_TIMEOUTS
        )
        host, port = sentinel.discover_master(args.sentinel)
        primary = sentinel.master_for(args.sentinel, **_TIMEOUTS)
        return [(f"{host}:{port}", primary.execute_command)]
    client = _connect(args.url)
    return [(_address(client), client.execute_command)]


def _scripts_list(args: argparse.Namespace, out: TextIO) -> int:
    for script in all_scripts():
        print(f"{script.name}\tv{script.version}\t{script.sha}", file=out)
    return 0


def _scripts_load(args: argparse.Namespace, out: TextIO) -> int:
    for node, run in _primaries(args):
        for script in all_scripts():
            sha = run("SCRIPT LOAD", script.source)
            sha = sha.decode() if isinstance(sha, bytes) else sha
            print(f"{node}\tloaded\t{script.name}\tv{script.version}\t{sha}", file=out)
    return 0


def _scripts_check(args: argparse.Namespace, out: TextIO) -> int:
    scripts = all_scripts()
    missing = 0
    for node, run in _primaries(args):
        present = run("SCRIPT EXISTS", *(script.sha for script in scripts))
        for script, exists in zip(scripts, present, strict=True):
            state = "ok" if exists else "MISSING"
            print(f"{node}\t{state}\t{script.name}\t{script.sha}", file=out)
            missing += not exists
    return 1 if missing else 0


def _demo(args: argparse.Namespace, out: TextIO) -> int:
    if args.seed:
        return _demo_seed(args, out)
    if args.redis:
        backend: SyncBackend = SyncRedis(_connect(args.redis))
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
        print(f"luathrottle: {exc}", file=sys.stderr)
        return 2
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="luathrottle", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    scripts = commands.add_parser("scripts", help="list, load or check the Lua scripts")
    actions = scripts.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="print each script's name, version and SHA1")
    for name, text in (
        ("load", "SCRIPT LOAD every script and print the SHAs"),
        ("check", "exit 1 when any script is missing on the server"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument(
            "--url",
            required=True,
            help="redis://, rediss:// or unix:// URL of the server, of any "
            "cluster node with --cluster, or of a Sentinel with --sentinel",
        )
        topology = action.add_mutually_exclusive_group()
        topology.add_argument(
            "--cluster", action="store_true", help="act on every cluster primary"
        )
        topology.add_argument(
            "--sentinel", metavar="NAME", help="act on the primary Sentinel calls NAME"
        )

    demo = commands.add_parser(
        "demo",
        help="hit one key past its limit and show the headers",
        description="Hit one key past its limit and show the headers; with "
        "--seed, replay the sessions of the Django seed's throttling chapter "
        "against the example project instead.",
    )
    mode = demo.add_mutually_exclusive_group()
    mode.add_argument("--redis", metavar="URL", help="run against this Redis instead")
    mode.add_argument(
        "--seed",
        action="store_true",
        help='replay the seed\'s "Run result" sessions against the example '
        "project's views, in-process with Django's test client and caches in "
        "memory (no Redis, no server), printed as the seed prints them: "
        "the curl command, then with -D - the status line and headers, and "
        "the body; needs Django",
    )
    demo.add_argument(
        "--project",
        metavar="PATH",
        default="examples",
        help="with --seed: the directory that holds seed_project/, which is "
        "not part of the installed package (default: examples, relative to "
        "the current directory, so run from the repository's root)",
    )
    return parser


_HANDLERS: dict[tuple[str, str | None], Callable[[argparse.Namespace, TextIO], int]] = {
    ("scripts", "list"): _scripts_list,
    ("scripts", "load"): _scripts_load,
    ("scripts", "check"): _scripts_check,
    ("demo", None): _demo,
}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status.

    Args:
        argv: the arguments after the program name; ``sys.argv`` by default.
        out: where to print; standard output by default.
    """
    args = _parser().parse_args(argv)
    handler = _HANDLERS[(args.command, getattr(args, "action", None))]
    try:
        return handler(args, sys.stdout if out is None else out)
    except redis.RedisError as exc:
        print(f"luathrottle: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader (say, `| head`) left: stop quietly, as Unix tools do.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0


if __name__ == "__main__":
    sys.exit(main())
