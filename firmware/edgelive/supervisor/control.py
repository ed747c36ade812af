"""Local status socket: `edgelive status` asks the running supervisor what it is doing.

A unix socket in the runtime directory (systemd's RuntimeDirectory, else the state dir);
each connection gets one JSON document and is closed. Read-only by design: changes go
through MQTT or the config file, where they are validated, persisted and reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

SOCKET_NAME = "status.sock"


def socket_path(state_dir: Path) -> Path:
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return (Path(runtime) if runtime else state_dir) / SOCKET_NAME


async def serve_status(path: Path, snapshot: Callable[[], dict[str, Any]]) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(json.dumps(snapshot(), default=str).encode())
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left over from a killed run
    path.parent.mkdir(parents=True, exist_ok=True)
    server = await asyncio.start_unix_server(answer, path=str(path))
    path.chmod(0o660)
    return server


def read_status(path: Path, timeout: float = 2.0) -> dict[str, Any]:
    """Blocking client for the CLI; raises OSError when no supervisor answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return json.loads(b"".join(chunks))
