"""MQTT over TLS and with credentials against a real mosquitto, and MQTT_CONNECT_FAILED.

Certificates are made here with the openssl CLI: a CA, a server certificate for 127.0.0.1,
a client certificate from the same CA, and an unrelated "rogue" CA. A box that cannot
connect keeps retrying but says so once per reason (-6027), without its password.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgelive.codes import Code
from edgelive.config.schema import MqttConfig
from edgelive.events import Event
from edgelive.fleet.agent import FleetAgent
from edgelive.fleet.operator import FleetOperator
from edgelive.fleet.session import SessionSettings
from edgelive.fleet.simulated import running, simulated_box
from tests.servers import Mosquitto
from tests.test_fleet_agent import PREFIX, box_mqtt

SESSION_LOG = "edgelive.fleet.session"
# As root, mosquitto reads certificates and password files as the `mosquitto` user, who
# cannot read pytest's tmp_path: let it keep root (ignored when not root).
AS_ME = "user root\n" if os.geteuid() == 0 else ""


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


_NEW_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _make_ca(d: Path, name: str) -> None:
    _openssl(d, "req", "-x509", *_NEW_KEY, "-keyout", f"{name}.key", "-out", f"{name}.crt",
             "-days", "2", "-subj", f"/CN=edgelive test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def _make_leaf(d: Path, name: str, usage: str) -> None:
    (d / f"{name}.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        f"extendedKeyUsage={usage}\nsubjectAltName=IP:127.0.0.1\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n")
    _openssl(d, "req", *_NEW_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}")
    _openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    _make_ca(d, "ca")
    _make_ca(d, "rogue")
    _make_leaf(d, "server", "serverAuth")
    _make_leaf(d, "client", "clientAuth")
    return Pki(ca=d / "ca.crt", server_cert=d / "server.crt", server_key=d / "server.key",
               client_cert=d / "client.crt", client_key=d / "client.key",
               rogue_ca=d / "rogue.crt")


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    """Mutual TLS: the broker only takes clients with a certificate from the CA."""
    broker = Mosquitto(tmp_path, f"cafile {pki.ca}\ncertfile {pki.server_cert}\n"
                                 f"keyfile {pki.server_key}\nrequire_certificate true\n"
                                 + AS_ME)
    broker.start()
    yield broker
    broker.stop()


BOX_USER, BOX_PASSWORD = "box-t5", "Pa55-box-t5-correct"
FLEET_USER, FLEET_PASSWORD = "fleet", "Pa55-fleet"


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), BOX_USER, BOX_PASSWORD],
                   check=True, capture_output=True)
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), FLEET_USER, FLEET_PASSWORD],
                   check=True, capture_output=True)
    broker = Mosquitto(tmp_path, f"allow_anonymous false\npassword_file {passwd}\n" + AS_ME)
    broker.start()
    yield broker
    broker.stop()


def tls_box(broker: Mosquitto, pki: Pki, ca: Path, client_cert: bool = True) -> MqttConfig:
    files = {"cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}
    return box_mqtt(broker, tls=True, ca_file=str(ca), **(files if client_cert else {}))


def operator_settings(broker: Mosquitto, **extra: object) -> SessionSettings:
    return SessionSettings(host=broker.host, port=broker.port,
                           client_id=f"test-{uuid.uuid4().hex[:8]}", **extra)


def failed_events(events: list[Event]) -> list[Event]:
    return [e for e in events if e.code == Code.MQTT_CONNECT_FAILED]


def attempts(caplog: pytest.LogCaptureFixture, reason_part: str) -> int:
    """Failed attempts the session logged with `reason_part` in the reason."""
    return sum(1 for r in caplog.records
               if r.name == SESSION_LOG and reason_part in r.getMessage())


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def disconnected(agent: FleetAgent) -> AsyncIterator[FleetAgent]:
    """Run `agent` (which is not expected to connect) for the block, then close it."""
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        await agent.close()
        async with asyncio.timeout(3):  # close() also ends the wait between retries
            await task


def test_mutual_tls_box_connects_and_round_trips_config(tls_broker: Mosquitto, pki: Pki,
                                                       tmp_path: Path) -> None:
    async def scenario() -> list[Event]:
        agent, host = simulated_box("t1", tls_box(tls_broker, pki, pki.ca), tmp_path / "t1")
        events: list[Event] = []
        host.events.subscribe(events.append)
        settings = operator_settings(tls_broker, tls=True, ca_file=str(pki.ca),
                                     cert_file=str(pki.client_cert),
                                     key_file=str(pki.client_key))
        async with running(agent), FleetOperator(settings, PREFIX) as fleet:
            assert agent.connected
            assert await fleet.wait_online(["t1"])
            [ok] = await fleet.set_config("t1", {"pusher": {"max-bitrate": 700}})
            assert (ok.rev, ok.report["applied"], ok.report["errors"]) == (1, True, [])
            assert host.store.current.pusher.max_bitrate == 700
        return events

    events = asyncio.run(scenario())
    assert [e.code for e in events].count(Code.MQTT_CONNECTED) == 1
    assert failed_events(events) == []


def test_box_without_client_certificate_is_refused(tls_broker: Mosquitto, pki: Pki,
                                                   tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=SESSION_LOG)

    async def scenario() -> list[Event]:
        mqtt = tls_box(tls_broker, pki, pki.ca, client_cert=False)
        agent, host = simulated_box("t2", mqtt, tmp_path / "t2")
        events: list[Event] = []
        host.events.subscribe(events.append)
        async with disconnected(agent):
            await until(lambda: attempts(caplog, "TLS: ") >= 2)
            assert not agent.connected
        return events

    [failed] = failed_events(asyncio.run(scenario()))
    assert "certificate required" in failed.msg, failed


def test_box_pinned_to_another_ca_reports_once_and_keeps_retrying(
        tls_broker: Mosquitto, pki: Pki, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=SESSION_LOG)

    async def scenario() -> list[Event]:
        agent, host = simulated_box("t3", tls_box(tls_broker, pki, pki.rogue_ca),
                                    tmp_path / "t3")
        events: list[Event] = []
        host.events.subscribe(events.append)
        async with disconnected(agent):
            await until(lambda: attempts(caplog, "certificate verify failed") >= 3)
            assert not agent.connected
        return events

    events = asyncio.run(scenario())
    [failed] = failed_events(events)  # three failed attempts, one event
    assert failed.msg.startswith(f"cannot connect to 127.0.0.1:{tls_broker.port}: TLS: "
                                 "certificate verify failed"), failed.msg
    assert failed.detail["host"] == "127.0.0.1" and failed.detail["port"] == tls_broker.port
    assert Code.MQTT_CONNECTED not in [e.code for e in events]


def test_right_credentials_connect(password_broker: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> list[Event]:
        mqtt = box_mqtt(password_broker, username=BOX_USER, password=BOX_PASSWORD)
        agent, host = simulated_box("t4", mqtt, tmp_path / "t4")
        events: list[Event] = []
        host.events.subscribe(events.append)
        settings = operator_settings(password_broker, username=FLEET_USER,
                                     password=FLEET_PASSWORD)
        async with running(agent), FleetOperator(settings, PREFIX) as fleet:
            assert await fleet.wait_online(["t4"])
            answer = await fleet.command("t4", "device/identify", {}, timeout=3)
            assert answer.answers["t4"]["ok"]
        return events

    events = asyncio.run(scenario())
    assert Code.MQTT_CONNECTED in [e.code for e in events]
    assert failed_events(events) == []


def test_wrong_password_is_reported_without_the_password(
        password_broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=SESSION_LOG)
    wrong = "Wr0ng-pa55word-6027"

    async def scenario() -> list[Event]:
        mqtt = box_mqtt(password_broker, username=BOX_USER, password=wrong)
        agent, host = simulated_box("t5", mqtt, tmp_path / "t5")
        events: list[Event] = []
        host.events.subscribe(events.append)
        async with disconnected(agent):
            await until(lambda: attempts(caplog, "refused") >= 2)
            assert not agent.connected
        return events

    events = asyncio.run(scenario())
    [failed] = failed_events(events)
    assert "not authorized" in failed.msg.lower(), failed.msg
    for event in events:
        assert wrong not in event.to_json() and BOX_PASSWORD not in event.to_json()
    assert wrong not in caplog.text


def test_broker_down_is_reported_again_after_a_connection(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture,
                                                          ) -> None:
    caplog.set_level(logging.INFO, logger=SESSION_LOG)
    broker = Mosquitto(tmp_path)  # not started: nothing listens on its port yet

    async def scenario() -> list[Event]:
        agent, host = simulated_box("t6", box_mqtt(broker), tmp_path / "t6")
        events: list[Event] = []
        host.events.subscribe(events.append)
        async with disconnected(agent):
            await until(lambda: attempts(caplog, "Connection refused") >= 2)
            assert len(failed_events(events)) == 1
            broker.start()
            await until(lambda: agent.connected)
            broker.kill()
            await until(lambda: attempts(caplog, "Connection refused") >= 4)
            assert not agent.connected
        return events

    try:
        events = asyncio.run(scenario())
    finally:
        broker.stop()
    codes = [e.code for e in events]
    assert codes == [Code.MQTT_CONNECT_FAILED, Code.MQTT_CONNECTED, Code.MQTT_LOST,
                     Code.MQTT_CONNECT_FAILED], [e.name for e in events]
    assert all("Connection refused" in e.msg for e in failed_events(events))
    assert failed_events(events)[0].detail == {
        "host": "127.0.0.1", "port": broker.port, "reason": "[Errno 111] Connection refused"}
