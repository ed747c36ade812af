"""A box as its own process (hung, killed), and the MQTT 3.1.1 fallback."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgelive.fleet.simulated import running, simulated_box
from tests.servers import Mosquitto
from tests.test_fleet_agent import box_mqtt, operator

CONNACK_UNSUPPORTED_PROTOCOL = b"\x20\x02\x00\x01"  # what a 3.1.1-only broker answers to v5


def test_kill_9_leaves_offline_status_by_will(mosquitto: Mosquitto, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgelive.fleet.simulated", "--port", str(mosquitto.port),
         "--id", "k1", "--state-dir", str(tmp_path / "k1"), "--keepalive", "5"])

    async def scenario() -> float:
        async with operator(mosquitto) as fleet:
            assert await fleet.wait_online(["k1"], timeout=20), "box never came online"
            os.kill(proc.pid, signal.SIGSTOP)  # hung: still online, answers nothing
            hung = await fleet.command("k1", "device/identify", {}, timeout=1)
            assert hung.missing == ["k1"] and hung.answers == {}
            os.kill(proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            await fleet.wait_until(lambda: fleet.boxes["k1"].status == "offline", 10)
            assert fleet.boxes["k1"].status == "offline"
            return time.monotonic() - killed

    try:
        elapsed = asyncio.run(scenario())
    finally:
        proc.kill()
        proc.wait()
    assert elapsed < 2.0  # the kernel closes the socket: no keepalive timeout needed


async def _v311_only_front(broker: Mosquitto) -> asyncio.Server:
    """A TCP front of the real broker that turns MQTT 5 CONNECTs away like a 3.1.1 broker."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        header = await reader.readexactly(1)
        length, shift, raw = 0, 0, b""
        while True:
            byte = await reader.readexactly(1)
            raw += byte
            length |= (byte[0] & 0x7F) << shift
            shift += 7
            if not byte[0] & 0x80:
                break
        body = await reader.readexactly(length)
        if body[6] == 5:  # protocol level after the "MQTT" name
            writer.write(CONNACK_UNSUPPORTED_PROTOCOL)
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(broker.host, broker.port)
        up_writer.write(header + raw + body)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer),
                             return_exceptions=True)

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_auto_protocol_falls_back_to_311(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        front = await _v311_only_front(mosquitto)
        port = front.sockets[0].getsockname()[1]
        mqtt = box_mqtt(mosquitto).model_copy(update={"port": port})
        agent, host = simulated_box("f1", mqtt, tmp_path / "f1")
        async with front, running(agent), operator(mosquitto) as fleet:
            assert not agent.session.is_v5
            assert await fleet.wait_online(["f1"])
            outcome = await fleet.command("f1", "pusher/start", {}, timeout=3)
            assert outcome.answers["f1"]["ok"] and host.pusher == "pushing"

    asyncio.run(scenario())
