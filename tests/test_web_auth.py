"""Console login pieces without a server: the scrypt hash file, sessions, the rate limit;
and `edgelive web passwd` plus the console over TLS against a real `edgelive run`."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from edgelive.testbed import wait_port
from edgelive.web.auth import (
    LoginLimiter,
    Sessions,
    hash_password,
    read_passwd,
    verify_password,
    write_passwd,
)
from tests.servers import free_port
from tests.test_supervisor import run_box  # noqa: F401 (fixture)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_password_hash_is_salted_scrypt_and_checks_only_the_password() -> None:
    one, two = hash_password("correct horse"), hash_password("correct horse")
    assert one != two and one.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse", one) and verify_password("correct horse", two)
    assert not verify_password("correct hors", one)
    assert not verify_password("correct horse", "scrypt$broken")
    assert not verify_password("correct horse", "")
    with pytest.raises(ValueError):
        hash_password("short")


def test_sessions_expire_unless_used_and_each_has_its_own_csrf_token() -> None:
    clock = Clock()
    sessions = Sessions(60.0, clock=clock, limit=3)
    token, session = sessions.create()
    other, other_session = sessions.create()
    assert token != other and session.csrf != other_session.csrf
    clock.now += 50
    assert sessions.get(token) is session  # used: good for another 60 s
    clock.now += 50
    assert sessions.get(token) is session and sessions.get(other) is None
    assert sessions.get("forged") is None and sessions.get(None) is None
    sessions.drop(token)
    assert sessions.get(token) is None
    tokens = [sessions.create()[0] for _ in range(4)]
    assert sessions.get(tokens[0]) is None and sessions.get(tokens[-1]) is not None


def test_login_limit_per_address_and_in_total() -> None:
    clock = Clock()
    limiter = LoginLimiter(attempts=3, window_s=60, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1") == 0
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == pytest.approx(60)
    assert limiter.retry_after("10.0.0.2") == 0  # another address may still try
    clock.now += 61
    assert limiter.retry_after("10.0.0.1") == 0
    for n in range(12):  # many addresses: the total limit (4x) holds them all
        limiter.failed(f"10.0.1.{n}")
    assert limiter.retry_after("10.0.2.1") > 0


def test_web_passwd_cli_stores_a_private_hash(tmp_path: Path) -> None:
    state = tmp_path / "state"
    out = subprocess.run([sys.executable, "-m", "edgelive", "web", "passwd", "--stdin",
                          "--state-dir", str(state)], input="a long passphrase\n",
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    stored = read_passwd(state)
    assert stored is not None and verify_password("a long passphrase", stored)
    assert "a long passphrase" not in (state / "web.passwd").read_text()
    assert (state / "web.passwd").stat().st_mode & 0o777 == 0o600
    out = subprocess.run([sys.executable, "-m", "edgelive", "web", "passwd", "--stdin",
                          "--state-dir", str(state)], input="short\n",
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "nothing changed" in out.stderr
    assert read_passwd(state) == stored


def test_console_over_tls_with_a_secure_cookie(run_box, tmp_path: Path) -> None:  # noqa: F811
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    state = tmp_path / "state"
    state.mkdir()
    write_passwd(state, "tls password")
    port = free_port()
    run_box({"device": {"id": "tlsbox"}, "web": {
        "enabled": True, "bind": "127.0.0.1", "port": port, "cert-file": str(cert),
        "key-file": str(key)}})
    wait_port("127.0.0.1", port, timeout=30)

    async def scenario() -> None:
        pinned = ssl.create_default_context(cafile=str(cert))
        pinned.check_hostname = False
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            with pytest.raises(aiohttp.ClientError):  # plain HTTP is not served
                await http.get(f"http://127.0.0.1:{port}/login")
            base = f"https://127.0.0.1:{port}"
            r = await http.post(base + "/login", data={"password": "tls password"},
                                allow_redirects=False, ssl=pinned)
            assert r.status == 302 and "Secure" in r.headers["Set-Cookie"]
            status = await http.get(base + "/api/status", ssl=pinned)
            assert status.status == 200 and (await status.json())["pusher"]["state"] == "off"

    asyncio.run(scenario())


def test_console_does_not_start_without_a_password(run_box, tmp_path: Path) -> None:  # noqa: F811
    port = free_port()
    proc = run_box({"device": {"id": "nopass"}, "web": {"enabled": True, "bind": "127.0.0.1",
                                                         "port": port}})
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "READY" in line:
            break
    assert any("no password is set" in line for line in lines), lines
    with pytest.raises(TimeoutError):
        wait_port("127.0.0.1", port, timeout=1)


def test_box_stops_promptly_with_a_status_stream_and_a_preview_open(
        run_box, tmp_path: Path) -> None:  # noqa: F811
    state = tmp_path / "state"
    state.mkdir()
    write_passwd(state, "stop password")
    port = free_port()
    proc = run_box({"device": {"id": "stopbox"}, "web": {"enabled": True, "bind": "127.0.0.1",
                                                          "port": port}})
    wait_port("127.0.0.1", port, timeout=30)

    async def scenario() -> float:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            base = f"http://127.0.0.1:{port}"
            await http.post(base + "/login", data={"password": "stop password"})
            stream = await http.get(base + "/api/stream")
            assert (await stream.content.readline()).startswith(b"data: {")
            async with http.ws_connect(base + "/api/preview"):
                started = time.monotonic()
                proc.terminate()
                await asyncio.to_thread(proc.wait, 30)
                return time.monotonic() - started

    assert asyncio.run(scenario()) < 8  # aiohttp would wait 60 s for open connections
    assert proc.returncode == 0
