"""The requests of the seed's "Run result" blocks, on this project's paths.

``luathrottle demo --seed`` replays them and prints each the way the seed
does: ``curl ... -D -`` steps show the status line and headers, then every
step shows the body. Sessions marked ``in_seed=False`` show examples whose
seed section has no "Run result".
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Step:
    """One curl command.

    Attributes:
        path: the path and query string.
        method: the HTTP method, ``-X``.
        show_headers: ``-D -``: print the status line and the headers.
    """

    path: str
    method: str = "GET"
    show_headers: bool = False


@dataclass(frozen=True, slots=True)
class Session:
    """One "Run result" block.

    Attributes:
        title: the seed's section and example.
        steps: the requests, in order.
        in_seed: whether the seed prints this session.
    """

    title: str
    steps: tuple[Step, ...]
    in_seed: bool = True


def _denied_at(path: str, allowed: int, method: str = "GET") -> tuple[Step, ...]:
    """``allowed`` plain requests, then one more with ``-D -``."""
    plain = Step(path, method)
    return (*([plain] * allowed), Step(path, method, show_headers=True))


SESSIONS: tuple[Session, ...] = (
    Session(
        "Defining throttling: method level, sync",
        _denied_at("/api/method-level/sync/", 1),
    ),
    Session(
        "Defining throttling: class level, async",
        _denied_at("/api/class-level/async/", 1),
    ),
    Session(
        "Defining throttling: settings level (100 per minute), sync",
        (
            Step("/api/settings-level/sync/", show_headers=True),
            Step("/api/settings-level/sync/", show_headers=True),
        ),
        in_seed=False,
    ),
    Session(
        "Defining throttling: settings level (100 per minute), async",
        (
            Step("/api/settings-level/async/", show_headers=True),
            Step("/api/settings-level/async/", show_headers=True),
        ),
        in_seed=False,
    ),
    Session(
        "Defining throttling: class and method levels joined",
        _denied_at("/api/joined-levels/sync/", 1),
    ),
    Session(
        "Rates: 5 requests per 10 seconds",
        _denied_at("/api/custom-seconds/sync/", 5),
        in_seed=False,
    ),
    Session(
        "Backends: the 'throttling' Django cache",
        _denied_at("/api/cache-name/sync/", 1),
    ),
    Session(
        "Backends: a Redis client of your own",
        _denied_at("/api/redis-client/sync/", 1),
        in_seed=False,
    ),
    # The seed shows this example's first request only.
    Session("Algorithms: LeakyBucket", (Step("/api/leaky-bucket/sync/"),)),
    Session(
        "Algorithms: LeakyBucket on a login endpoint",
        _denied_at("/api/login/sync/", 5, method="POST"),
        in_seed=False,
    ),
    Session(
        "Throttling execution: after auth, sync",
        (Step("/api/after-auth/sync/"), Step("/api/after-auth/sync/")),
    ),
    Session(
        "Throttling execution: after auth, async",
        (Step("/api/after-auth/async/"), Step("/api/after-auth/async/")),
        in_seed=False,
    ),
    Session(
        "Headers: no Retry-After",
        _denied_at("/api/no-retry-after/async/", 1),
    ),
    Session(
        "Headers: RateLimitIETFDraft",
        _denied_at("/api/ietf-draft/sync/", 1),
    ),
    Session(
        "Throttling reports: ThrottlingReport, async",
        (Step("/api/report/async/", show_headers=True),),
    ),
    Session(
        "Throttling reports: headers on error responses, sync",
        (
            Step("/api/error-response/sync/?number=1", show_headers=True),
            Step("/api/error-response/sync/?number=a", show_headers=True),
        ),
    ),
    Session(
        "Throttling reports: headers on error responses, async",
        (
            Step("/api/error-response/async/?number=1", show_headers=True),
            Step("/api/error-response/async/?number=a", show_headers=True),
        ),
        in_seed=False,
    ),
)
