"""Live preview relay: the pusher's fMP4 fragments → every watching browser.

The pusher worker muxes the H.264 packets it already encoded into fragmented MP4 (one
fragment per frame, no second encode; `media/preview.py`) and writes them to a Unix socket
this hub listens on. The hub asks the supervisor to switch that tap on when the first viewer
connects and off when the last one leaves, so an unwatched box pays nothing.

Wire format on the socket and on each WebSocket (binary messages): one kind byte, then the
payload. `I` an init segment (ftyp+moov; a new one after a size change), `K` a fragment
starting with a key frame, `F` any other fragment. A new viewer gets the latest init segment
and then fragments from the next key frame on; a viewer that falls behind (its queue full)
skips to the next key frame instead of growing a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger(__name__)

HEADER = struct.Struct(">cI")  # kind, payload length
MAX_CHUNK = 4 * 1024 * 1024
VIEWER_QUEUE = 90  # fragments (3 s at 30 fps) before a slow viewer skips ahead
INIT, KEY, FRAGMENT = b"I", b"K", b"F"

TapSwitch = Callable[[str | None], Awaitable[None]]
"""Asks the pusher to write to this socket path (str) or to stop (None)."""


class Viewer:
    """One browser's queue of wire messages."""

    def __init__(self, init: bytes | None) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(VIEWER_QUEUE)
        self._keyed = False
        if init is not None:
            self.queue.put_nowait(init)

    def offer(self, message: bytes) -> None:
        kind = message[:1]
        if kind == INIT:
            self._keyed = False
        elif kind == KEY:
            self._keyed = True
        elif not self._keyed:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self._keyed = False  # resume at the next key frame
            if kind == INIT:  # never lose a size change
                self._drain()
                self.queue.put_nowait(message)

    def _drain(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()


class PreviewHub:
    def __init__(self, socket_path: Path, switch_tap: TapSwitch) -> None:
        self.socket_path = socket_path
        self._switch_tap = switch_tap
        self._viewers: set[Viewer] = set()
        self._init: bytes | None = None
        self._server: asyncio.Server | None = None
        self._taps: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}
        self._switching = asyncio.Lock()

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._server = await asyncio.start_unix_server(self._on_tap, path=str(self.socket_path))
        self.socket_path.chmod(0o600)

    async def close(self) -> None:
        """Stop the tap and the socket; safe twice."""
        if self._viewers:
            self._viewers.clear()
            with contextlib.suppress(Exception):
                await self._switch_tap(None)
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
        # an open tap connection ends by itself (EOF), not cancelled with the loop: Python
        # up to 3.11.7 logs a cancelled connection handler as an unhandled exception
        taps, self._taps = self._taps, {}
        for writer in taps:
            writer.close()
        await asyncio.gather(*taps.values(), return_exceptions=True)

    async def join(self) -> Viewer:
        viewer = Viewer(self._init)
        self._viewers.add(viewer)
        if len(self._viewers) == 1:
            await self._switch(str(self.socket_path))
        return viewer

    async def leave(self, viewer: Viewer) -> None:
        self._viewers.discard(viewer)
        if not self._viewers:
            await self._switch(None)

    async def _switch(self, path: str | None) -> None:
        async with self._switching:
            if (path is None) == bool(self._viewers):
                return  # a viewer came or went while the last switch was in flight
            try:
                await self._switch_tap(path)
            except Exception as exc:  # the pusher may be off; its next start gets it
                log.info("preview tap %s: %s", "on" if path else "off", exc)
            if path is None:
                self._init = None

    async def _on_tap(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection from the pusher's tap (a new one after a worker restart)."""
        task = asyncio.current_task()
        if task is not None:
            self._taps[writer] = task
        try:
            while True:
                kind, length = HEADER.unpack(await reader.readexactly(HEADER.size))
                if length > MAX_CHUNK or kind not in (INIT, KEY, FRAGMENT):
                    log.warning("preview tap sent a bad chunk header; dropped")
                    break
                message = kind + await reader.readexactly(length)
                if kind == INIT:
                    self._init = message
                for viewer in self._viewers:
                    viewer.offer(message)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._taps.pop(writer, None)
            writer.close()
