"""How many requests django-modern-rest (the seed's reference) admits next to
luathrottle: P spawned processes x T threads x H requests from one REMOTE_ADDR
through a real view (RequestFactory), one throttle of L per minute on its
default Django-cache backend over Django's RedisCache on database --db, flushed
before each case. dmr is imported by name; when missing, its case is skipped.
"""

import argparse
import importlib
import importlib.util
import json
import multiprocessing
import threading
import time
import traceback
import types
import urllib.parse
from collections import Counter
from typing import Any

import redis
from django.test import RequestFactory

from _redis_server import redis_url

ADDRESS = "10.9.9.9"
CASES = ("dmr", "luathrottle")
_DMR_MODULES = ("dmr", "msgspec")
ROW = (
    "{case:12} admitted {admitted:5} of limit {limit} (ratio {ratio:.2f}), "
    "{attempts} attempts, {wall_s:.2f} s, other statuses {other}"
)


def _class(name: str, base: Any, body: dict[str, Any]) -> Any:
    cls: Any = types.new_class(name, (base,), exec_body=lambda ns: ns.update(body))
    return cls.as_view()


def _luathrottle_view(limit: int) -> Any:
    from django.http import HttpResponse

    from luathrottle.django import Rate, SyncThrottle, ThrottledView

    def get(self: Any, request: Any) -> HttpResponse:
        return HttpResponse(b'"inside"', content_type="application/json")

    throttling = (SyncThrottle(limit, Rate.minute),)
    return _class("SeedLt", ThrottledView, {"throttling": throttling, "get": get})


def _dmr_view(limit: int) -> Any:
    dmr = importlib.import_module("dmr")
    throttling = importlib.import_module("dmr.throttling")
    serializer = importlib.import_module("dmr.plugins.msgspec").MsgspecSerializer

    def get(self: Any) -> str:
        return "inside"

    throttles = (throttling.SyncThrottle(limit, throttling.Rate.minute),)
    body = {"throttling": throttles, "get": get}
    return _class("SeedDmr", dmr.Controller[serializer], body)


def child(
    case: str, url: str, args: argparse.Namespace, barrier: Any, out: Any
) -> None:
    """A spawned process: configure Django, then T threads send H requests each."""
    try:
        import django
        from django.conf import settings

        apps = ["django.contrib.contenttypes", "django.contrib.auth"]
        apps += ["luathrottle.django", *(["dmr"] if case == "dmr" else [])]
        backend = "django.core.cache.backends.redis.RedisCache"
        settings.configure(
            DEBUG=False,
            SECRET_KEY="seed-reference",
            ALLOWED_HOSTS=["*"],
            INSTALLED_APPS=apps,
            CACHES={"default": {"BACKEND": backend, "LOCATION": url}},
            LUATHROTTLE={"allow_unsafe_cache": None},
        )
        django.setup()
        view = (_dmr_view if case == "dmr" else _luathrottle_view)(args.limit)
        factory = RequestFactory()
        view(factory.get("/seed/", REMOTE_ADDR="10.0.0.1"))  # warm up, other key
        statuses: Counter[int] = Counter()
        times: list[float] = []
        lock = threading.Lock()

        def run() -> None:
            barrier.wait(timeout=120)
            times.append(time.monotonic())
            seen = [
                view(factory.get("/seed/", REMOTE_ADDR=ADDRESS)).status_code
                for _ in range(args.hits)
            ]
            with lock:
                times.append(time.monotonic())
                statuses.update(seen)

        threads = [threading.Thread(target=run) for _ in range(args.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        out.put((dict(statuses), min(times), max(times)))
    except BaseException:
        barrier.abort()
        out.put((traceback.format_exc(), 0.0, 0.0))


def run_case(case: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Flush the database, run the processes, and sum what they saw."""
    missing = [m for m in _DMR_MODULES if importlib.util.find_spec(m) is None]
    if case == "dmr" and missing:
        return {"case": case, "skipped": f"not installed: {', '.join(missing)}"}
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(args.processes * args.threads)
    out = context.Queue()
    procs = [
        context.Process(target=child, args=(case, url, args, barrier, out))
        for _ in range(args.processes)
    ]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    statuses: Counter[int] = Counter()
    for seen, _, _ in results:
        if isinstance(seen, str):
            raise SystemExit(f"{case}: a child failed:\n{seen}")
        statuses.update(seen)
    admitted, denied = statuses.pop(200, 0), statuses.pop(429, 0)
    return {
        "case": case,
        "admitted": admitted,
        "denied": denied,
        "other": {str(status): n for status, n in sorted(statuses.items())},
        "limit": args.limit,
        "ratio": round(admitted / args.limit, 3),
        "attempts": args.processes * args.threads * args.hits,
        "wall_s": round(max(r[2] for r in results) - min(r[1] for r in results), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("processes", 4), ("threads", 4), ("hits", 50)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--limit", type=int, default=100, help="per minute")
    parser.add_argument("--db", type=int, default=13)
    parser.add_argument("--url", help="a Redis URL; default: a throwaway server")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with redis_url(args.url) as server:
        url = urllib.parse.urlsplit(server)._replace(path=f"/{args.db}").geturl()
        rows = [run_case(case, url, args) for case in CASES]
    if args.json:
        setup = {k: getattr(args, k) for k in ("processes", "threads", "hits", "limit")}
        print(json.dumps({"setup": setup, "cases": rows}, indent=2))
        return
    print(f"{args.processes} processes x {args.threads} threads x {args.hits} hits")
    for row in rows:
        skipped = "{case:12} skipped ({skipped})"
        print((skipped if "skipped" in row else ROW).format(**row))


if __name__ == "__main__":
    main()
