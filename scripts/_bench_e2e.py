"""End to end: ``bench_app`` served by uvicorn (one worker, loopback, a free
port) and loaded by wrk, or by an asyncio HTTP/1.1 keep-alive client built
on h11 when wrk is not installed (``apt-get install -y wrk`` on Debian).
Both count the same things: a request is a whole response read, and an
error is a response whose status is not 2xx or 3xx, or a broken connection.

Each path is loaded in rounds, interleaved with the other paths; a round
gives requests per second and the p50 and p99 latency, and the Redis
server's ``INFO`` around it gives round trips and commands per request.
"""

import asyncio
import http.client
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h11
import redis

from _bench_measure import RedisStats, progress, redis_delta, snapshot

__all__ = ["PATHS", "SCRIPTS", "E2EResult", "Load", "Loader", "run_e2e", "serve"]

SCRIPTS = Path(__file__).resolve().parent
STARTUP_SECONDS = 60
CONNECTIONS = 16
#: Path: (label, throttles, backend).
PATHS = {
    "none/": ("no throttle", 0, "-"),
    "memory/1/": ("1 throttle, MemoryBackend", 1, "MemoryBackend"),
    "memory/3/": ("3 throttles, MemoryBackend", 3, "MemoryBackend"),
    "redis/1/": ("1 throttle, AsyncRedis", 1, "AsyncRedis"),
    "redis/3/": ("3 throttles, AsyncRedis", 3, "AsyncRedis"),
    "cache/3/": ("3 throttles, AsyncDjangoCache(RedisCache)", 3, "AsyncDjangoCache"),
}


@dataclass
class Load:
    """One round of load on one path."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


@dataclass
class E2EResult:
    """A path's rounds, and what Redis did for them."""

    path: str
    label: str
    throttles: int
    backend: str
    loads: list[Load] = field(default_factory=list)
    stats: RedisStats = field(default_factory=RedisStats)

    def median(self, attribute: str) -> float:
        values: list[float] = [getattr(load, attribute) for load in self.loads]
        return statistics.median(values)

    def requests(self) -> int:
        return sum(load.requests for load in self.loads)

    def errors(self) -> int:
        return sum(load.errors for load in self.loads)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _up(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/health/")
            return connection.getresponse().status == 200
        finally:
            connection.close()
    except OSError:
        return False


def _stop(process: "subprocess.Popen[bytes]") -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


@contextmanager
def serve(
    app: str, directory: Path, log: Path, env: dict[str, str] | None = None
) -> Iterator[int]:
    """Run uvicorn on ``app`` (``module:attribute``, importable from
    ``directory``) and yield its port once ``/health/`` answers 200."""
    pythonpath = os.pathsep.join(
        filter(None, [str(directory), os.environ.get("PYTHONPATH")])
    )
    env = {**os.environ, **(env or {}), "PYTHONPATH": pythonpath}
    port = _free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", app),
                *("--host", "127.0.0.1", "--port", str(port)),
                *("--log-level", "warning", "--no-access-log"),
            ],
            cwd=directory,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _up(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"uvicorn did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield port
    finally:
        _stop(process)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _latency_ms(output: str, percentile: str) -> float:
    match = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    if match is None:
        raise RuntimeError(f"no {percentile}% latency in wrk's output:\n{output}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _wrk(port: int, path: str, seconds: float) -> Load:
    duration = max(1, round(seconds))
    output = subprocess.run(
        [
            *("wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration}s", "--latency"),
            f"http://127.0.0.1:{port}/{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s)", output)
    if done is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    statuses = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
        output,
    )
    errors = int(statuses.group(1)) if statuses else 0
    if sockets:
        errors += sum(int(count) for count in sockets.groups())
    return Load(
        requests=int(done.group(1)),
        seconds=float(done.group(2)) * _UNITS[done.group(3)] / 1e3,
        p50_ms=_latency_ms(output, "50"),
        p99_ms=_latency_ms(output, "99"),
        errors=errors,
    )


def _bytes(data: bytes | None) -> bytes:
    # h11 returns None only for ConnectionClosed, which a client never sends.
    assert data is not None
    return data


async def _status(connection: h11.Connection, reader: asyncio.StreamReader) -> int:
    """Read one whole response, whatever its framing; return its status."""
    status = 0
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.EndOfMessage):
            return status
        elif isinstance(event, h11.ConnectionClosed):
            raise ConnectionError("the server closed the connection mid-response")


async def _keep_alive(
    port: int, target: str, deadline: float, latencies: list[float]
) -> int:
    """Send requests on one connection until the deadline, or until the server
    closes it; return how many answered with a status wrk counts as an error."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connection = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="GET", target=target, headers=[("Host", f"127.0.0.1:{port}")]
    )
    errors = 0
    try:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            writer.write(
                _bytes(connection.send(request))
                + _bytes(connection.send(h11.EndOfMessage()))
            )
            status = await _status(connection, reader)
            latencies.append(time.perf_counter() - start)
            errors += not 200 <= status < 400
            if connection.their_state is not h11.DONE:
                break  # the server said Connection: close
            connection.start_next_cycle()
    finally:
        writer.close()
    return errors


async def _client(
    port: int, target: str, deadline: float, latencies: list[float]
) -> int:
    """One of the loader's connections, reconnecting as wrk does; a failed
    connection or a broken response counts as one error, as a socket error
    does in wrk's output."""
    errors = 0
    while time.perf_counter() < deadline:
        try:
            errors += await _keep_alive(port, target, deadline, latencies)
        except (OSError, h11.ProtocolError):
            errors += 1
    return errors


async def _python_load(port: int, path: str, seconds: float) -> Load:
    latencies: list[float] = []
    start = time.perf_counter()
    errors = await asyncio.gather(
        *(
            _client(port, f"/{path}", start + seconds, latencies)
            for _ in range(CONNECTIONS)
        )
    )
    elapsed = time.perf_counter() - start
    if not latencies:
        raise RuntimeError(f"no response from /{path} in {seconds} s")
    latencies.sort()
    return Load(
        requests=len(latencies),
        seconds=elapsed,
        p50_ms=latencies[len(latencies) // 2] * 1e3,
        p99_ms=latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)] * 1e3,
        errors=sum(errors),
    )


class Loader:
    """wrk when it is installed, else the asyncio client; ``name`` says which."""

    def __init__(self, choice: str = "auto") -> None:
        has_wrk = shutil.which("wrk") is not None
        if choice == "wrk" and not has_wrk:
            raise SystemExit("wrk is not installed: apt-get install -y wrk")
        use_wrk = has_wrk and choice != "python"
        self.name = (
            f"wrk (1 thread, {CONNECTIONS} connections)"
            if use_wrk
            else f"h11 keep-alive client ({CONNECTIONS} connections)"
        )
        self.note = "" if has_wrk else "wrk is not installed (apt-get install -y wrk)"
        self._wrk = use_wrk

    def load(self, port: int, path: str, seconds: float) -> Load:
        if self._wrk:
            return _wrk(port, path, seconds)
        return asyncio.run(_python_load(port, path, seconds))


def run_e2e(
    url: str, loader: Loader, seconds: float, rounds: int, log: Path
) -> list[E2EResult]:
    """Load every path for ``rounds`` rounds of ``seconds`` each."""
    results = {path: E2EResult(path, *spec) for path, spec in PATHS.items()}
    stats_client: redis.Redis = redis.Redis.from_url(url)
    try:
        env = {"BENCH_REDIS_URL": url, "DJANGO_SETTINGS_MODULE": "bench_app.settings"}
        with serve("bench_app.asgi:application", SCRIPTS, log, env) as port:
            for number, path in enumerate(PATHS, 1):
                # Warm up: imports, connections, scripts.
                progress(f"end to end {number}/{len(PATHS)}: {PATHS[path][0]}")
                loader.load(port, path, min(seconds, 1.0))
            for round_number in range(1, rounds + 1):
                progress(f"end-to-end round {round_number}/{rounds}")
                for path, result in results.items():
                    before = snapshot(stats_client)
                    result.loads.append(loader.load(port, path, seconds))
                    result.stats.add(redis_delta(before, snapshot(stats_client)))
    finally:
        stats_client.close()
    return list(results.values())
