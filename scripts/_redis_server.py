"""A throwaway redis-server for the scripts that need one when given no --url."""

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import redis

#: Long enough for a server started under valgrind on a loaded machine.
_STARTUP_SECONDS = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, process: "subprocess.Popen[bytes]") -> None:
    client = redis.Redis.from_url(url, socket_timeout=1)
    deadline = time.monotonic() + _STARTUP_SECONDS
    try:
        while True:
            try:
                client.ping()
                return
            # A server under valgrind may accept before it answers in time.
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit(f"redis-server did not start on {url}") from exc
                time.sleep(0.05)
    finally:
        client.close()


@contextmanager
def redis_url(
    url: str | None, wrapper: Sequence[str] = (), options: Sequence[str] = ()
) -> Iterator[str]:
    """Yield ``url``, or, when it is None, the URL of a redis-server started on
    a free loopback port with no persistence and stopped on exit.

    Args:
        url: an existing server's, or None to start one.
        wrapper: the command that runs the server (``valgrind ...``), if any.
        options: more of the server's own options.

    Raises:
        SystemExit: redis-server is not installed or does not start.
    """
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed; pass --url")
    port = _free_port()
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen(
            [
                *(*wrapper, binary, "--port", str(port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", directory),
                *options,
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            _wait_for(url, process)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)
