"""The web console against a real `edgelive run` (nginx-rtmp, mosquitto): HTTP security, and
the whole console in headless Chromium (Debian's chromium + chromedriver, via Selenium)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgelive.testbed import wait_port
from edgelive.web.auth import write_passwd
from tests.servers import Mosquitto, NginxRtmp, free_port
from tests.test_supervisor import BOX, box_config, operator, run_box  # noqa: F401 (fixture)

PASSWORD = "correct horse battery"
STREAM_KEY = "s3cretStreamKey42"
MQTT_PASSWORD = "mqttS3cret99"
ARTEFACTS = Path(__file__).resolve().parents[1] / "build" / "web-console"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--autoplay-policy=no-user-gesture-required")


@dataclass
class Console:
    url: str
    state_dir: Path


@pytest.fixture
def console(mosquitto: Mosquitto, nginx: NginxRtmp, run_box, tmp_path: Path) -> Console:  # noqa: F811
    port = free_port()
    state = tmp_path / "state"
    state.mkdir()
    write_passwd(state, PASSWORD)
    doc = box_config(mosquitto, pusher={
        "url": nginx.url(STREAM_KEY), "source": "testsrc", "resolution": "640x360", "fps": 30,
        "audio-device": "none", "autopush": True},
        web={"enabled": True, "bind": "127.0.0.1", "port": port})
    doc["mqtt"].update(username=BOX, password=MQTT_PASSWORD)
    run_box(doc)
    wait_port("127.0.0.1", port, timeout=30)
    return Console(f"http://127.0.0.1:{port}", state)


class Fleet:
    """The fleet's side (MQTT) on its own loop, so a synchronous browser test can use it."""

    def __init__(self, broker: Mosquitto) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.op = operator(broker)
        self.call(self.op.start())

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self) -> None:
        self.call(self.op.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def fleet(mosquitto: Mosquitto) -> Iterator[Fleet]:
    fleet = Fleet(mosquitto)
    yield fleet
    fleet.close()


# -- HTTP: sessions, CSRF, limits, secrets ---------------------------------------------------


def test_console_refuses_without_session_or_csrf_and_never_shows_secrets(
        console: Console) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            base = console.url
            for path in ("/", "/api/status", "/api/stream", "/api/settings", "/api/session",
                         "/api/snapshot/pusher", "/api/preview", "/static/app.js"):
                r = await http.get(base + path, allow_redirects=False)
                assert r.status in (302, 401), (path, r.status)
                if r.status == 302:
                    assert r.headers["Location"] == "/login"
            for path in ("/api/settings", "/api/cmd/pusher/stop", "/logout"):
                r = await http.post(base + path, json={}, allow_redirects=False)
                assert r.status == 401, (path, r.status)
            http.cookie_jar.update_cookies({"edgelive_session": "forged"})
            assert (await http.get(base + "/api/status")).status == 401

            r = await http.post(base + "/login", data={"password": "not the password"},
                                allow_redirects=False)
            assert r.headers["Location"] == "/login?failed=1" and "Set-Cookie" not in r.headers
            r = await http.post(base + "/login", data={"password": PASSWORD},
                                allow_redirects=False)
            cookie = r.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie
            csrf = (await (await http.get(base + "/api/session")).json())["csrf"]

            async def status() -> dict:
                return await (await http.get(base + "/api/status")).json()

            deadline = time.monotonic() + 30
            while (await status())["pusher"]["state"] != "pushing":
                assert time.monotonic() < deadline, "the box never pushed"
                await asyncio.sleep(0.2)
            rev = (await status())["rev"]
            for token in (None, "wrong"):
                headers = {"X-CSRF-Token": token} if token else {}
                r = await http.post(base + "/api/cmd/pusher/stop", json={}, headers=headers)
                assert r.status == 403
                r = await http.post(base + "/api/settings", headers=headers,
                                    json={"pusher": {"max-bitrate": 700}})
                assert r.status == 403
            await asyncio.sleep(0.5)
            assert (await status())["pusher"]["state"] == "pushing"
            assert (await status())["rev"] == rev
            big = {"pusher": {"url": "x" * 70_000}}
            r = await http.post(base + "/api/settings", json=big, headers={"X-CSRF-Token": csrf})
            assert r.status == 413

            texts = [await (await http.get(base + p)).text()
                     for p in ("/api/settings", "/api/status")]
            for text in texts:
                assert STREAM_KEY not in text and MQTT_PASSWORD not in text
            settings = json.loads(texts[0])
            mqtt = next(s for s in settings["sections"] if s["name"] == "mqtt")
            password = next(f for f in mqtt["fields"] if f["key"] == "mqtt.password")
            assert password["set"] is True and "value" not in password

            # a wrong password five times: the sixth try waits, even with the right one
            async with aiohttp.ClientSession() as other:
                for _ in range(5):
                    await other.post(base + "/login", data={"password": "guess"},
                                     allow_redirects=False)
                r = await other.post(base + "/login", data={"password": PASSWORD},
                                     allow_redirects=False)
                assert r.status == 429 and int(r.headers["Retry-After"]) > 0

    asyncio.run(scenario())
