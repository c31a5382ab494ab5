"""The ``luathrottle`` command: script operations and the demo.

``luathrottle scripts list|load|check`` preloads and checks the Lua scripts
on a server, for deploys; ``luathrottle demo`` shows a limiter at work.
"""

import argparse
import functools
import os
import sys
import urllib.parse
from collections.abc import Callable, Sequence
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
        "demo", help="hit one key past its limit and show the headers"
    )
    demo.add_argument("--redis", metavar="URL", help="run against this Redis instead")
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
