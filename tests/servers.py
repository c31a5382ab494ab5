"""redis-server processes the tests own: plain servers and Sentinels.

Each listens on a free loopback port the harness picks, can be stopped and
started again at will, and keeps its files in a directory of its own.
"""

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server process this harness owns, stopped and started at will."""

    def __init__(self, binary: str, directory: str, *extra_args: str) -> None:
        self.binary = binary
        self.directory = directory
        self.extra_args = extra_args
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", self.directory),
            *self.extra_args,
        ]

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError as exc:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"no redis-server on {self.url}") from exc
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=15)
            self.process = None


class RedisSentinel(RedisServer):
    """A Sentinel watching one primary under the name ``name``."""

    def __init__(
        self, binary: str, directory: str, primary_port: int, name: str
    ) -> None:
        super().__init__(binary, directory)
        self.config = os.path.join(directory, "sentinel.conf")
        with open(self.config, "w") as config:
            config.write(
                f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
                f"sentinel monitor {name} 127.0.0.1 {primary_port} 1\n"
                f"sentinel down-after-milliseconds {name} 1000\n"
            )

    def command(self) -> list[str]:
        return [self.binary, self.config, "--sentinel"]


def wait_until(condition: Callable[[], object], timeout: float = 30.0) -> None:
    """Wait, at most ``timeout`` seconds, for ``condition`` to hold."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class Traffic:
    """Threads that call ``call(index)`` over and over until the block ends,
    keeping what each call returns in ``results`` and raises in ``errors``."""

    def __init__(self, call: Callable[[int], object], threads: int = 3) -> None:
        self.results: list[object] = []
        self.errors: list[BaseException] = []
        self._call = call
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(index,))
            for index in range(threads)
        ]

    def _run(self, index: int) -> None:
        while not self._stop.is_set():
            try:
                self.results.append(self._call(index))
            except Exception as exc:
                self.errors.append(exc)

    def __enter__(self) -> "Traffic":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


#: Seconds a served app may take to answer its health check, and a request.
_STARTUP_SECONDS = 60
_REQUEST_SECONDS = 30


def get(port: int, path: str) -> tuple[int, Any, bytes]:
    """One GET of ``path`` on the loopback server at ``port``: its status,
    headers and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=_REQUEST_SECONDS)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def _up(process: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + _STARTUP_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if get(port, "/health")[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@contextlib.contextmanager
def gunicorn(
    app: str, env: dict[str, str], log: Path, workers: int, *options: str
) -> Iterator[int]:
    """gunicorn serving ``app`` (``module:callable`` in tests/) with
    ``workers`` worker processes on a free loopback port, which it yields
    once ``/health`` answers; ``env`` is added to this process's, with
    tests/ and the PYTHONPATH made absolute, since gunicorn runs in tests/."""
    tests = Path(__file__).resolve().parent
    python_path = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    absolute = [str(tests), *map(os.path.abspath, filter(None, python_path))]
    env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(absolute)}
    for _attempt in range(3):
        port = free_port()
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "gunicorn", app, *options),
                    *("--bind", f"127.0.0.1:{port}", "--workers", str(workers)),
                    *("--timeout", "120", "--log-level", "warning"),
                ],
                cwd=tests,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if _up(process, port):
            break
        _stop(process)
    else:
        raise RuntimeError(f"gunicorn did not start:\n{log.read_text()}")
    try:
        yield port
    finally:
        _stop(process)
