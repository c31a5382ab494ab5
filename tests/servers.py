"""redis-server processes the tests own: plain servers and Sentinels.

Each listens on a free loopback port the harness picks, can be stopped and
started again at will, and keeps its files in a directory of its own.
"""

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable

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
