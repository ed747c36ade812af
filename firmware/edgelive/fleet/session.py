"""One MQTT connection on asyncio: paho-mqtt without its network thread.

paho does the protocol; the event loop does the waiting. The socket is watched with
`add_reader`/`add_writer` (as aiomqtt does) and `loop_misc` runs once a second for keepalive.
Only the TCP connect and TLS handshake block, so they run in the default executor.

The session reconnects forever with capped backoff, re-subscribes what it was asked to, and
calls `on_connect` each time so the owner can republish its retained topics. With
`protocol="auto"` it offers MQTT 5 and, when a broker answers "unsupported protocol
version", connects again with 3.1.1 at once. Every failed attempt (broker down, TLS refused,
CONNACK refused) goes to `on_connect_failed` with a short reason. TCP_NODELAY is set on the
socket: without it small QoS 1 exchanges wait ~40 ms for delayed ACKs (FACTS.md, MQTT).
A box's session tells an MQTT 5 broker the largest packet it takes (Maximum-Packet-Size), so
the broker drops a bigger message instead of making the box read it only to refuse it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edgelive.config.schema import MqttConfig
from edgelive.fleet.messages import MAX_DESIRED_BYTES
from edgelive.policy.reconnect import ReconnectPolicy

log = logging.getLogger(__name__)

# CONNACK codes meaning "speak an older protocol": 0x84 in MQTT 5, 1 in MQTT 3.1.1.
_UNSUPPORTED_PROTOCOL = frozenset({0x84, 1})
# The largest message a box accepts (a desired config) plus room for the fixed header, the
# topic and the properties: an MQTT 5 broker drops anything bigger instead of sending it.
BOX_MAX_PACKET_BYTES = MAX_DESIRED_BYTES + 4096


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True)
class SessionSettings:
    host: str
    client_id: str
    port: int = 1883
    keepalive: int = 30
    protocol: str = "auto"  # "auto" | "5" | "3.1.1"
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    username: str = ""
    password: str = ""
    will: Will | None = None
    connect_timeout: float = 10.0
    max_backoff: float = 30.0
    max_packet_size: int = 0  # MQTT 5 Maximum-Packet-Size told to the broker; 0: no limit

    @classmethod
    def from_config(cls, mqtt: MqttConfig, client_id: str, will: Will | None = None,
                    ) -> SessionSettings:
        """A box's session: its `[mqtt]` settings, and no message larger than it accepts."""
        return cls(host=mqtt.host, port=mqtt.port, client_id=client_id,
                   keepalive=mqtt.keepalive, protocol=mqtt.protocol, tls=mqtt.tls,
                   ca_file=mqtt.ca_file, cert_file=mqtt.cert_file, key_file=mqtt.key_file,
                   username=mqtt.username, password=mqtt.password.get_secret_value(),
                   will=will, max_packet_size=BOX_MAX_PACKET_BYTES)


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    response_topic: str | None = None
    correlation: bytes | None = None


class ConnectRefused(Exception):
    """The broker answered CONNACK with a failure (credentials, ACL, protocol)."""


class TlsSetupError(Exception):
    """The box's own TLS files (ca-file, cert-file, key-file) could not be loaded."""


_SSL_TEXT = re.compile(r"^\[[A-Z0-9_]+: [A-Z0-9_]+\] |\s*\(_ssl\.c:\d+\)$")


def _ssl_text(text: str) -> str:
    """`[SSL: CODE] what (_ssl.c:123)` → `what`: stable, so it can be compared."""
    return _SSL_TEXT.sub("", text)


def _os_text(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return _ssl_text(str(exc))
    return exc.strerror or str(exc)


def failure_reason(exc: BaseException) -> str:
    """A short, stable reason for a failed connection attempt (no secrets in it)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {_ssl_text(str(exc))}"
    if isinstance(exc, TimeoutError):
        return str(exc) or "timed out"
    return str(exc) or type(exc).__name__


class MqttSession:
    """A reconnecting MQTT client; `run()` is the task that owns the connection."""

    def __init__(self, settings: SessionSettings, *, on_message: Callable[[Message], None],
                 on_connect: Callable[[], None] | None = None,
                 on_disconnect: Callable[[], None] | None = None,
                 on_connect_failed: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._on_connect_failed = on_connect_failed
        self._subscriptions: dict[str, int] = {}
        self._suback: dict[int, asyncio.Future[None]] = {}
        self._client: paho.Client | None = None
        self._connack: asyncio.Future[ReasonCode] | None = None
        self._lost = asyncio.Event()
        self._closed = asyncio.Event()
        self._connect_error = ""  # the last error paho logged while connecting
        self._misc_task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self._closing = False
        self.protocol = paho.MQTTv5 if settings.protocol != "3.1.1" else paho.MQTTv311
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    @property
    def is_v5(self) -> bool:
        return self.protocol == paho.MQTTv5

    # -- public API

    async def run(self) -> None:
        """Connect, stay connected, reconnect with backoff; returns only after close()."""
        policy = ReconnectPolicy(attempts=1, first_delay=0.5,
                                 max_delay=self.settings.max_backoff)
        while not self._closing:
            try:
                await self._connect_once()
                policy.success()
                await self._lost.wait()
            except (OSError, ConnectRefused, TlsSetupError, TimeoutError) as exc:
                self._drop_client()
                if self._closing:
                    break
                self._connect_failed(failure_reason(exc))
            if self._closing:
                break
            delay = policy.failure().delay or self.settings.max_backoff
            with contextlib.suppress(TimeoutError):  # close() ends the wait at once
                await asyncio.wait_for(self._closed.wait(),
                                       delay * random.uniform(0.8, 1.2))  # spread a fleet's retries

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self.connected.wait(), timeout)

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe now (waits for SUBACK when connected) and again after each reconnect."""
        self._subscriptions[topic_filter] = qos
        client = self._client
        if client is None or not self.connected.is_set():
            return
        rc, mid = client.subscribe(topic_filter, qos)
        if rc == paho.MQTT_ERR_SUCCESS and mid is not None:
            future = self._loop.create_future()
            self._suback[mid] = future
            await future

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False,
                response_topic: str | None = None, correlation: bytes | None = None) -> bool:
        """Queue a message; False when offline (the caller decides what to keep)."""
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        properties = None
        if self.is_v5 and (response_topic or correlation):
            properties = Properties(PacketTypes.PUBLISH)
            if response_topic:
                properties.ResponseTopic = response_topic
            if correlation:
                properties.CorrelationData = correlation
        info = client.publish(topic, payload, qos, retain, properties)
        return info.rc == paho.MQTT_ERR_SUCCESS

    async def close(self) -> None:
        """Disconnect cleanly (no will) and stop reconnecting; safe to call twice."""
        self._closing = True
        if self._misc_task is not None:
            self._misc_task.cancel()
        client = self._client
        if client is not None and self.connected.is_set():
            client.disconnect()
            with contextlib.suppress(OSError):
                client.loop_write()  # DISCONNECT is tiny: flush it before the socket goes
        self._drop_client()
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(ConnectionError("closed"))  # no wait for a CONNACK
        self._lost.set()
        self._closed.set()

    # -- connection

    def _connect_failed(self, reason: str) -> None:
        log.info("mqtt %s:%s: %s", self.settings.host, self.settings.port, reason)
        if self._on_connect_failed is not None:
            try:
                self._on_connect_failed(reason)
            except Exception:  # the owner's bug must not stop the reconnecting
                log.exception("mqtt: on_connect_failed handler failed")

    async def _connect_once(self) -> None:
        while True:
            code = await self._attempt()
            if not code.is_failure:
                break
            self._drop_client()
            if (self.settings.protocol == "auto" and self.is_v5
                    and code.value in _UNSUPPORTED_PROTOCOL):
                log.info("mqtt: broker has no MQTT 5, using 3.1.1")
                self.protocol = paho.MQTTv311
                continue
            raise ConnectRefused(f"connection refused: {code}")
        client = self._client
        if client is None or self._lost.is_set():
            raise ConnectionError("connection lost right after CONNACK")
        client.on_log = None  # only connect errors are wanted; logging every packet costs
        self.connected.set()
        for topic_filter, qos in self._subscriptions.items():
            client.subscribe(topic_filter, qos)
        if self._on_connect is not None:
            self._on_connect()

    async def _attempt(self) -> ReasonCode:
        s = self.settings
        client = self._new_client()
        self._client = client
        self._lost.clear()
        self._connect_error = ""
        self._connack = self._loop.create_future()
        if self.is_v5:
            properties = Properties(PacketTypes.CONNECT)
            if s.max_packet_size:
                properties.MaximumPacketSize = s.max_packet_size
            connect = lambda: client.connect(s.host, s.port, s.keepalive,  # noqa: E731
                                             clean_start=True, properties=properties)
        else:
            connect = lambda: client.connect(s.host, s.port, s.keepalive)  # noqa: E731
        await self._loop.run_in_executor(None, connect)
        return await asyncio.wait_for(self._connack, s.connect_timeout)

    def _new_client(self) -> paho.Client:
        s = self.settings
        v5 = self.is_v5
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=s.client_id,
                             protocol=self.protocol, clean_session=None if v5 else True)
        client.suppress_exceptions = True
        client.connect_timeout = s.connect_timeout
        if s.username:
            client.username_pw_set(s.username, s.password or None)
        if s.tls:
            client.tls_set_context(self._tls_context())
        if s.will is not None:
            client.will_set(s.will.topic, s.will.payload, s.will.qos, s.will.retain)
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write
        client.on_connect = self._handle_connack
        client.on_disconnect = self._handle_disconnect
        client.on_subscribe = self._handle_suback
        client.on_message = self._handle_message
        client.on_log = self._handle_log
        return client

    def _tls_context(self) -> ssl.SSLContext:
        s = self.settings
        try:
            context = ssl.create_default_context(cafile=s.ca_file or None)
        except OSError as exc:
            raise TlsSetupError(f"TLS: cannot load ca-file {s.ca_file}: "
                                f"{_os_text(exc)}") from exc
        if s.cert_file:
            try:
                # An encrypted key fails here instead of OpenSSL prompting on a terminal.
                context.load_cert_chain(s.cert_file, s.key_file or None, password=b"")
            except OSError as exc:
                raise TlsSetupError(f"TLS: cannot load cert-file/key-file: "
                                    f"{_os_text(exc)}") from exc
        return context

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        self.connected.clear()
        if client is not None:
            client.on_disconnect = None
            with contextlib.suppress(Exception):
                client.disconnect()
            sock = client.socket()
            if sock is not None:
                self._unwatch(sock.fileno())
                sock.close()

    # -- paho callbacks (socket ones come from the executor thread during connect)

    def _in_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _socket_open(self, client: paho.Client, _userdata: Any, sock: Any) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._in_loop(self._watch, client, sock, sock.fileno())

    def _watch(self, client: paho.Client, sock: Any, fd: int) -> None:
        if client is self._client and client.socket() is sock:
            self._loop.add_reader(fd, client.loop_read)
            if self._misc_task is not None:
                self._misc_task.cancel()
            self._misc_task = self._loop.create_task(self._misc(client))

    def _socket_close(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        self._in_loop(self._unwatch, sock.fileno())

    def _unwatch(self, fd: int) -> None:
        if fd >= 0:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)

    def _register_write(self, client: paho.Client, _userdata: Any, sock: Any) -> None:
        self._in_loop(self._add_writer, client, sock, sock.fileno())

    def _add_writer(self, client: paho.Client, sock: Any, fd: int) -> None:
        if client is self._client and client.socket() is sock:
            self._loop.add_writer(fd, client.loop_write)

    def _unregister_write(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        fd = sock.fileno()
        if fd >= 0:
            self._in_loop(self._loop.remove_writer, fd)

    async def _misc(self, client: paho.Client) -> None:
        while client is self._client and client.socket() is not None:
            client.loop_misc()
            await asyncio.sleep(1.0)

    def _handle_connack(self, _c: paho.Client, _u: Any, _flags: Any, code: ReasonCode,
                        _props: Any) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(code)

    def _handle_disconnect(self, client: paho.Client, _u: Any, _flags: Any, code: ReasonCode,
                           _props: Any) -> None:
        if client is not self._client:
            return
        if self._connack is not None and not self._connack.done():
            # A TLS alert (client certificate refused) only shows in paho's log.
            error = self._connect_error
            start = error.find("[SSL")
            reason = (f"TLS: {_ssl_text(error[start:])}" if start >= 0
                      else f"closed during connect: {error or code}")
            self._connack.set_exception(ConnectionError(reason))
            return
        was_connected = self.connected.is_set()
        self.connected.clear()
        self._lost.set()
        if was_connected and not self._closing and self._on_disconnect is not None:
            self._on_disconnect()  # a loss: our own close() is not one

    def _handle_log(self, client: paho.Client, _u: Any, level: int, buf: str) -> None:
        if level == paho.MQTT_LOG_ERR and client is self._client:
            self._connect_error = buf

    def _handle_suback(self, _c: paho.Client, _u: Any, mid: int, _codes: Any,
                       _props: Any) -> None:
        future = self._suback.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(None)

    def _handle_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        try:
            self._on_message(Message(
                topic=msg.topic, payload=msg.payload, retain=bool(msg.retain),
                response_topic=getattr(props, "ResponseTopic", None),
                correlation=getattr(props, "CorrelationData", None)))
        except Exception:  # a bad message must never stop the network loop
            log.exception("mqtt: handler failed on %s", msg.topic)
