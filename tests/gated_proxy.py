"""An asyncio TCP proxy on loopback whose replies wait at a gate.

It runs in the test's own event loop, so a test parks a store call exactly
where it wants it, with events rather than sleeps: ``arrived`` is set when
a client's bytes reach the proxy (and go on to the server at once); while
the gate is shut (``hold``), the server's replies wait until ``release``
lets some through or ``open`` lets all. ``kill`` closes every connection
and refuses new ones: a store that died.
"""

import asyncio
import contextlib


class GatedProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.arrived = asyncio.Event()
        self._gate = asyncio.Condition()
        self._holding = False
        self._passes = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> "GatedProxy":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def hold(self) -> None:
        """Shut the gate: replies wait from now on."""
        async with self._gate:
            self._holding, self._passes = True, 0

    async def release(self, chunks: int) -> None:
        """Let the next ``chunks`` replies (as the server wrote them) by."""
        async with self._gate:
            self._passes += chunks
            self._gate.notify_all()

    async def open(self) -> None:
        """Open the gate: every reply goes by."""
        async with self._gate:
            self._holding = False
            self._gate.notify_all()

    async def kill(self) -> None:
        """Close every connection, and refuse new ones."""
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for pump in self._pumps:
            pump.cancel()

    async def close(self) -> None:
        await self.kill()
        assert self._server is not None
        await self._server.wait_closed()

    async def _serve(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        server_reader, server_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        self._writers += [client_writer, server_writer]
        pumps = [
            asyncio.create_task(self._up(client_reader, server_writer)),
            asyncio.create_task(self._down(server_reader, client_writer)),
        ]
        self._pumps.update(pumps)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pumps)
        for writer in (client_writer, server_writer):
            writer.close()

    async def _up(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError):
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
                self.arrived.set()
        writer.close()

    async def _down(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError):
            while chunk := await reader.read(65536):
                async with self._gate:
                    await self._gate.wait_for(
                        lambda: not self._holding or self._passes > 0
                    )
                    if self._holding:
                        self._passes -= 1
                writer.write(chunk)
                await writer.drain()
        writer.close()
