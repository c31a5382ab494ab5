"""The command line's parser: its commands, help text and exit statuses.
Usage errors are one line, as every error of the command is."""

import argparse
import math
from typing import Any, NoReturn

from luathrottle import __version__

__all__ = ["EXIT_STATUS", "build_parser", "one_line"]

#: What each exit status means, as ``--help`` prints it.
EXIT_STATUS = """exit status:
  0  success (for check: every primary serves every script: from its
     function library where the server has functions, else from the
     script cache, which a restart or SCRIPT FLUSH empties)
  1  check: a function library is missing on a server that has functions,
     or a script where it has none
  2  usage or configuration error: bad arguments, a malformed --url or
     --redis, a server, cluster or Sentinel that cannot be reached, an
     unknown Sentinel name
every error is one line on standard error: luathrottle: error: ..."""

_DESCRIPTION = """Exact rate limiting with Lua scripts.

  luathrottle scripts list|load|check   preload and check the Lua scripts
  luathrottle scripts prune             delete other builds' libraries
  luathrottle demo                      a limiter at work; --seed replays
                                        the Django seed's sessions"""


def one_line(text: str) -> str:
    return " ".join(text.split())


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` and where to find help on one line; exit 2."""
        self.exit(2, f"luathrottle: error: {one_line(message)} (see {self.prog} -h)\n")


def _subparser(commands: Any, name: str, text: str, **kwargs: Any) -> Any:
    return commands.add_parser(
        name,
        help=text,
        description=kwargs.pop("description", text[0].upper() + text[1:] + "."),
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds above 0, at most 3600, got {text!r}"
        )
    return seconds


def _timeout_option(command: Any) -> None:
    command.add_argument(
        "--timeout",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="seconds to wait to connect, and for each reply (default: 5)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``luathrottle``'s arguments."""
    parser = _Parser(
        prog="luathrottle",
        description=_DESCRIPTION,
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"luathrottle {__version__}",
        help="print the installed version and exit",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    scripts = _subparser(
        commands, "scripts", "list, load, check or prune the Lua scripts"
    )
    actions = scripts.add_subparsers(dest="action", required=True)
    _subparser(
        actions,
        "list",
        "print each script's name, version and SHA1, then each function "
        "library and its functions",
    )
    for name, text in (
        (
            "load",
            "SCRIPT LOAD every script and FUNCTION LOAD its library (one "
            "already there is left as it is); print the SHAs and libraries",
        ),
        (
            "check",
            "print whether each script and its library is on the server; "
            "exit 1 if any is not",
        ),
        (
            "prune",
            "delete every luathrottle function library that is not this "
            "build's (the luathrottle library of earlier releases, and other "
            "builds' luathrottle_* libraries), printing each; run it once "
            "every process runs this build",
        ),
    ):
        action = _subparser(actions, name, text)
        action.add_argument(
            "--url",
            required=True,
            help="redis://, rediss://, valkey://, valkeys:// or unix:// URL of the "
            "server, of any "
            "cluster node with --cluster, or of a Sentinel with --sentinel",
        )
        _timeout_option(action)
        topology = action.add_mutually_exclusive_group()
        topology.add_argument(
            "--cluster", action="store_true", help="act on every cluster primary"
        )
        topology.add_argument(
            "--sentinel", metavar="NAME", help="act on the primary Sentinel calls NAME"
        )

    demo = _subparser(
        commands,
        "demo",
        "hit one key past its limit and show the headers",
        description="Hit one key past its limit and show the headers; with\n"
        "--seed, replay the sessions of the Django seed's throttling chapter\n"
        "against the example project instead.",
    )
    mode = demo.add_mutually_exclusive_group()
    mode.add_argument("--redis", metavar="URL", help="run against this Redis instead")
    _timeout_option(demo)
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
