"""A small TCP proxy on loopback that can delay or swallow replies.

Tests put it between a client and a real redis-server to make the server
look slow or unresponsive without touching it: every reply (``delay``), or
only the next few (``make_late``). It counts the chunks clients send, so a
test can tell whether a call reached the store at all.
"""

import contextlib
import socket
import threading
import time


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.delay = 0.0
        self.sent_chunks = 0
        self._late = 0
        self._late_delay = 0.0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def make_late(self, delay: float, replies: int) -> None:
        """Hold each of the next ``replies`` replies back for ``delay``
        seconds, whichever connection they answer; later ones are not."""
        with self._lock:
            self._late, self._late_delay = replies, delay

    def _hold_back(self) -> float:
        with self._lock:
            if self._late:
                self._late -= 1
                return self._late_delay
        return self.delay

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(
                target=self._pipe, args=(client, server, False), daemon=True
            ).start()
            threading.Thread(
                target=self._pipe, args=(server, client, True), daemon=True
            ).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, is_reply: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if is_reply and (pause := self._hold_back()):
                    time.sleep(pause)
                if not is_reply:
                    with self._lock:
                        self.sent_chunks += 1
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stopping.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()
