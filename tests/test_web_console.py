"""The web console against a real `edgelive run` (nginx-rtmp, mosquitto): HTTP security, and
the whole console in headless Chromium (Debian's chromium + chromedriver, via Selenium)."""

from __future__ import annotations

import asyncio
import io
import json
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from edgelive import __version__
from edgelive.codes import DESCRIPTIONS, Code
from edgelive.media import stamp
from edgelive.policy.leds import PATTERNS, LedState
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
        # the player can show the box's own stream (a played URL holds the key too)
        player={"src": nginx.url(STREAM_KEY), "sink": "offscreen", "screen-size": "640x360"},
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

            # previews are bounded: a fifth viewer is turned away while four watch
            sockets = [await http.ws_connect(base + "/api/preview") for _ in range(4)]
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(base + "/api/preview")
            assert refused.value.status == 503
            for ws in sockets:
                await ws.close()

            # a wrong password five times: the sixth try waits, even with the right one
            async with aiohttp.ClientSession() as other:
                for _ in range(5):
                    await other.post(base + "/login", data={"password": "guess"},
                                     allow_redirects=False)
                r = await other.post(base + "/login", data={"password": PASSWORD},
                                     allow_redirects=False)
                assert r.status == 429 and int(r.headers["Retry-After"]) > 0

    asyncio.run(scenario())


async def logged_in(http: aiohttp.ClientSession, base: str) -> str:
    """Log `http` in; returns the session's CSRF token."""
    r = await http.post(base + "/login", data={"password": PASSWORD}, allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/"
    return (await (await http.get(base + "/api/session")).json())["csrf"]


async def status_until(http: aiohttp.ClientSession, base: str, test: Callable[[dict], bool],
                       timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while not test(status := await (await http.get(base + "/api/status")).json()):
        assert time.monotonic() < deadline, json.dumps(status)
        await asyncio.sleep(0.1)
    return status


def jpeg_picture(body: bytes) -> av.VideoFrame:
    return next(av.open(io.BytesIO(body), format="image2pipe").decode(video=0))


def test_console_actions_snapshots_and_page_guards(console: Console, nginx: NginxRtmp) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            base = console.url
            csrf = await logged_in(http, base)

            async def cmd(name: str, args: dict | None = None) -> aiohttp.ClientResponse:
                return await http.post(f"{base}/api/cmd/{name}", json=args or {},
                                       headers={"X-CSRF-Token": csrf})

            await status_until(http, base, lambda s: s["pusher"]["state"] == "pushing")
            page = await http.get(base + "/")
            assert "default-src 'self'" in page.headers["Content-Security-Policy"]

            # the download button: the camera's picture now, as a dated attachment
            r = await http.get(base + "/api/snapshot/pusher?download=1")
            assert r.status == 200 and r.content_type == "image/jpeg"
            assert r.headers["Content-Disposition"].startswith('attachment; filename="pusher-')
            picture = jpeg_picture(await r.read())
            assert (picture.width, picture.height) == (640, 360)
            age = stamp.age_ms(stamp.decode(picture.to_ndarray(format="gray")),
                               int(time.time() * 1000))
            assert age < 5000, age

            # the player's screen: nothing before it plays, its picture while it plays
            assert (await http.get(base + "/api/snapshot/player")).status == 409
            r = await cmd("player/play")
            assert r.status == 200 and (await r.json())["ok"] is True, await r.text()
            await status_until(http, base, lambda s: s["player"]["state"] == "playing")
            r = await http.get(base + "/api/snapshot/player")
            assert r.status == 200 and r.headers["Content-Disposition"].startswith("inline")
            screen = jpeg_picture(await r.read()).to_ndarray(format="gray")
            assert screen.std() > 20  # the colour bars, not a blank screen
            assert (await (await cmd("player/stop")).json())["ok"] is True
            await status_until(http, base, lambda s: s["player"]["state"] != "playing")

            # the buttons run the MQTT verbs, arguments checked as over MQTT
            assert (await (await cmd("pusher/pause")).json())["ok"] is True
            await status_until(http, base, lambda s: s["pusher"]["state"] == "waiting")
            assert (await (await cmd("pusher/resume")).json())["ok"] is True
            await status_until(http, base, lambda s: s["pusher"]["state"] == "pushing")
            assert (await cmd("device/privacy", {"on": "perhaps"})).status == 409
            assert (await cmd("device/nonsense")).status == 404
            assert (await cmd("pusher/snapshot")).status == 404  # a GET, not a command
            assert (await (await cmd("device/privacy", {"on": True})).json())["ok"] is True
            await status_until(http, base, lambda s: s["privacy"] and s["leds"] == "privacy")
            assert (await (await cmd("device/privacy", {"on": False})).json())["ok"] is True
            await status_until(http, base, lambda s: not s["privacy"])
            assert (await (await cmd("device/identify")).json())["ok"] is True
            await status_until(http, base, lambda s: s["leds"] == "identify", timeout=5)
            def last_push_begin(s: dict) -> int:
                return max(e["seq"] for e in s["events"] if e["name"] == "PUSH_EVT_PUSH_BEGIN")

            before = last_push_begin(await status_until(http, base, lambda s: True))
            r = await cmd("device/restart")
            assert "pusher" in (await r.json())["result"]["restarted"]
            await status_until(http, base, lambda s: last_push_begin(s) > before
                               and s["pusher"]["state"] == "pushing")

            # a secret is write-only: a new MQTT password is stored and the box connects
            # with it, and no answer shows it
            r = await http.post(base + "/api/settings", headers={"X-CSRF-Token": csrf},
                                json={"mqtt": {"password": "an0ther-secret"}})
            assert r.status == 200 and (await r.json())["applied"] is True
            stored = (console.state_dir / "config.toml").read_text()
            assert "an0ther-secret" in stored and MQTT_PASSWORD not in stored
            await status_until(http, base, lambda s: s["mqtt"] == "connected" and any(
                e["name"] == "MQTT_CONNECTED" and e["seq"] > 2 for e in s["events"]))
            for path in ("/api/settings", "/api/status"):
                assert "an0ther-secret" not in await (await http.get(base + path)).text()

            # the preview socket is this page's only: another site's script is refused
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(base + "/api/preview",
                                      headers={"Origin": "http://elsewhere.example"})
            assert refused.value.status == 403
            async with http.ws_connect(base + "/api/preview",
                                       headers={"Origin": base}) as ws:
                first = await ws.receive_bytes(timeout=10)
                assert first[:1] in (b"I", b"K")

    asyncio.run(scenario())


# -- the console in a browser ----------------------------------------------------------------


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        driver.set_window_size(1280, 900)
        try:
            yield driver
        finally:
            driver.quit()


# The top rows of the picture the <video> shows now, as luma, and the wall clock then.
GRAB_STAMP = """
const v = document.getElementById('video');
const c = document.createElement('canvas');
c.width = v.videoWidth; c.height = 16;
const g = c.getContext('2d', {willReadFrequently: true});
g.drawImage(v, 0, 0);
const now = Date.now();
const d = g.getImageData(0, 0, c.width, c.height).data;
const luma = new Array(c.width * c.height);
for (let i = 0; i < luma.length; i++) luma[i] = (d[4 * i] + d[4 * i + 1] + d[4 * i + 2]) / 3;
return [now, c.width, luma];
"""


PLAYING_WIDTH = """
const v = document.getElementById('video');
return v.readyState >= 3 && !v.paused ? v.videoWidth : 0;
"""


def preview_latencies(driver: webdriver.Chrome, samples: int) -> list[int]:
    ages = []
    for _ in range(samples):
        now, width, luma = driver.execute_script(GRAB_STAMP)
        plane = np.array(luma, dtype=np.float32).reshape(-1, width)
        ages.append(stamp.age_ms(stamp.decode(plane), now))
        time.sleep(0.1)
    return ages


# Each LED as the page draws it: lit or not, and the blinking animation's keyframes
# (opacity, from which fraction of the period) and period in ms.
LEDS_DRAWN = """
return ['led-green', 'led-red'].map((id) => {
  const node = document.getElementById(id);
  const blinking = node.getAnimations().map((a) => [
    a.effect.getKeyframes().map((k) => [Number(k.opacity), k.computedOffset]),
    a.effect.getTiming().duration]);
  return [node.classList.contains('lit'), blinking];
});
"""


def leds_drawn(driver: webdriver.Chrome) -> list:
    return driver.execute_script(LEDS_DRAWN)


def led_patterns(state: LedState) -> list:
    """What `leds_drawn` must show for `state`: the box's own patterns (policy/leds.py)."""
    out = []
    for pattern in PATTERNS[state]:
        if not pattern.durations:
            out.append([pattern.steady_on, []])
            continue
        starts = np.cumsum((0, *pattern.durations)) / pattern.period
        frames = [[1 if i % 2 == 0 else 0.15, pytest.approx(float(t))]
                  for i, t in enumerate(starts[:-1])]
        out.append([False, [[[*frames, [0.15, 1]], pytest.approx(pattern.period * 1000)]]])
    return out


def shown(driver: webdriver.Chrome, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def click(driver: webdriver.Chrome, element: Any) -> None:
    """Click as a user would, once the element is scrolled clear of the sticky header."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()


def set_field(driver: webdriver.Chrome, key: str, value: str) -> None:
    field = driver.find_element(By.ID, f"cfg-{key}")
    driver.execute_script("arguments[0].closest('details').open = true;", field)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", field)
    field.clear()
    field.send_keys(value)
    click(driver, driver.find_element(By.CSS_SELECTOR, "#settings-form button[type=submit]"))


def keep_screenshot(driver: webdriver.Chrome, tmp_path: Path, name: str) -> Path:
    png = driver.get_screenshot_as_png()
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    (ARTEFACTS / name).write_bytes(png)
    (tmp_path / name).write_bytes(png)
    return tmp_path / name


@pytest.mark.flaky(reruns=1)
def test_console_in_a_browser(console: Console, fleet: Fleet, browser: webdriver.Chrome,
                              nginx: NginxRtmp, tmp_path: Path) -> None:
    wait = WebDriverWait(browser, 30, poll_frequency=0.05)
    browser.get(console.url + "/")
    assert browser.current_url.endswith("/login")
    browser.find_element(By.ID, "password").send_keys("wrong password")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: d.find_element(By.ID, "failed").is_displayed())
    assert browser.current_url.endswith("/login?failed=1")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: shown(d, "st-pusher") == "pushing")

    # the status: the LEDs drawn as the box lights them, MQTT, version, uptime, codes
    wait.until(lambda d: leds_drawn(d) == led_patterns(LedState.STREAMING))
    assert shown(browser, "led-state") == "streaming"
    assert shown(browser, "st-mqtt") == "connected"
    assert shown(browser, "version") == __version__
    assert re.fullmatch(r"(\d+ h )?\d+ min \d+ s", shown(browser, "st-uptime"))
    assert re.fullmatch(r"–|-?\d+\.\d °C.*", shown(browser, "st-temp"))
    assert re.fullmatch(r"640x360 [\d.]+ fps, video \d+ kbps, net \d+ kbps, queue \d+ \(\d+ ms\)",
                        shown(browser, "st-net"))
    newest = browser.find_element(By.CSS_SELECTOR, "#last-codes li").text
    name = newest.split()[1]
    assert newest.startswith(f"{Code[name].value} {name} {DESCRIPTIONS[Code[name]]}")
    # every file the page loaded came from the box (no CDN)
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)")
    assert {console.url + "/static/app.js", console.url + "/static/style.css"} <= set(loaded)
    assert all(url.startswith(console.url + "/") for url in loaded), loaded

    # the preview plays the pushed picture: its stamp gives the latency
    wait.until(lambda d: d.execute_script(
        "const v = document.getElementById('video'); return v.readyState >= 3 && "
        "v.currentTime > 0.5 && !v.paused"))
    time.sleep(2)  # past the start-up catch-up
    ages = preview_latencies(browser, 50)
    p50, p95 = statistics.median(ages), sorted(ages)[int(len(ages) * 0.95) - 1]
    video = browser.find_element(By.ID, "video")
    taken_ms = int(time.time() * 1000)
    picture = next(av.open(io.BytesIO(video.screenshot_as_png)).decode(video=0))
    screenshot_age = stamp.age_ms(stamp.decode(picture.to_ndarray(format="gray"), width=640),
                                  taken_ms)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    (ARTEFACTS / "preview-latency.json").write_text(json.dumps(
        {"p50_ms": p50, "p95_ms": p95, "samples": ages, "screenshot_age_ms": screenshot_age}))
    print(f"preview latency p50 {p50} ms, p95 {p95} ms; screenshot {screenshot_age} ms")
    assert screenshot_age < 2000, screenshot_age  # the element shows the live picture
    assert p95 <= 800, ages  # goal 500 ms; margin for a shared, loaded machine
    keep_screenshot(browser, tmp_path, "console-1280.png")

    # a new picture size (a new init segment, as bitrate adaptation's size step sends):
    # the page opens a new MediaSource and plays on at the new size
    rev = fleet.op.boxes[BOX].rev("reported")
    set_field(browser, "pusher.resolution", "320x180")
    wait.until(lambda d: shown(d, "settings-result") == f"saved as rev {rev + 1}")
    assert fleet.call(fleet.op.wait_until(
        lambda: fleet.op.boxes[BOX].rev("reported") == rev + 1, 10))
    wait.until(lambda d: d.execute_script(PLAYING_WIDTH) == 320)
    played = browser.execute_script("return document.getElementById('video').currentTime")
    wait.until(lambda d: d.execute_script(
        "return document.getElementById('video').currentTime") > played + 1)

    # a state change reaches the page within a second
    answer = fleet.call(fleet.op.command(BOX, "pusher/stop", {}))
    answered = time.monotonic()
    assert answer.answers[BOX]["ok"] is True
    wait.until(lambda d: shown(d, "st-pusher") == "stopped")
    assert time.monotonic() - answered <= 1.0
    wait.until(lambda d: leds_drawn(d) == led_patterns(LedState.IDLE))
    # the worker's stop event follows its state line by a moment
    wait.until(lambda d: "PUSH_STOPPED" in shown(d, "event-list"))
    assert time.monotonic() - answered <= 2.0
    Select(browser.find_element(By.ID, "ev-src")).select_by_visible_text("device")
    sources = {e.text for e in browser.find_elements(By.CSS_SELECTOR, "#event-list .src")}
    assert sources == {"device"}
    Select(browser.find_element(By.ID, "ev-level")).select_by_value("error")
    assert browser.find_elements(By.CSS_SELECTOR, "#event-list li") == []
    Select(browser.find_element(By.ID, "ev-src")).select_by_visible_text("all")
    Select(browser.find_element(By.ID, "ev-level")).select_by_visible_text("all")

    # the stream key and the MQTT password are nowhere on the page; a field holding a hidden
    # key is empty (keeps it) and shows the redacted value as its hint
    assert STREAM_KEY not in browser.page_source and MQTT_PASSWORD not in browser.page_source
    url = browser.find_element(By.ID, "cfg-pusher.url")
    assert url.get_attribute("value") == "" and "***" in url.get_attribute("placeholder")

    # a setting saved in the form is the next rev, reported over MQTT
    rev = fleet.op.boxes[BOX].rev("reported")
    set_field(browser, "pusher.max-bitrate", "700")
    wait.until(lambda d: shown(d, "settings-result") == f"saved as rev {rev + 1}")
    assert fleet.call(fleet.op.wait_until(
        lambda: fleet.op.boxes[BOX].rev("reported") == rev + 1, 10))
    reported = fleet.op.boxes[BOX].reported
    assert reported["applied"] is True
    assert reported["config"]["pusher"]["max-bitrate"] == 700
    # the empty secret field sent nothing: the stored MQTT password is the same
    assert MQTT_PASSWORD in (console.state_dir / "config.toml").read_text()

    # out of range: the field says why, nothing changes
    set_field(browser, "pusher.max-bitrate", "99999")
    error = browser.find_element(By.ID, "err-pusher.max-bitrate")
    wait.until(lambda d: error.is_displayed())
    assert "20000" in error.text
    time.sleep(1)
    assert fleet.op.boxes[BOX].rev("reported") == rev + 1
    assert fleet.op.boxes[BOX].reported["config"]["pusher"]["max-bitrate"] == 700

    # the fleet's next desired document goes above the console's rev and keeps its change
    [outcome] = fleet.call(fleet.op.set_config(BOX, {"pusher": {"min-bitrate": 300}}))
    assert outcome.rev == rev + 2 and outcome.report["applied"] is True
    assert outcome.report["config"]["pusher"]["max-bitrate"] == 700
    assert outcome.report["config"]["pusher"]["url"].endswith("/***")  # untouched by the form

    # an action button: the push starts again
    click(browser, browser.find_element(By.CSS_SELECTOR, "[data-cmd='pusher/start']"))
    wait.until(lambda d: shown(d, "st-pusher") == "pushing")
    assert nginx.publishers(STREAM_KEY) == 1  # the saves kept the real stream key

    # without Media Source Extensions the preview falls back to JPEG snapshots
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {
        "source": "delete window.MediaSource; delete window.ManagedMediaSource;"})
    browser.refresh()
    wait.until(lambda d: d.execute_script(
        "const i = document.getElementById('still'); return !i.hidden && i.naturalWidth > 0"))
    assert shown(browser, "preview-mode") == "(snapshots)"
    assert not browser.find_element(By.ID, "video").is_displayed()
    now, width, luma = browser.execute_script(GRAB_STAMP.replace("'video'", "'still'")
                                              .replace("videoWidth", "naturalWidth"))
    age = stamp.age_ms(stamp.decode(np.array(luma, dtype=np.float32).reshape(-1, width)), now)
    assert age < 5000, age  # a recent camera picture (refreshed once a second)

    browser.set_window_size(360, 800)
    browser.refresh()
    wait.until(lambda d: shown(d, "st-pusher") == "pushing")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 360
    browser.execute_script("window.scrollTo(0, 0)")
    keep_screenshot(browser, tmp_path, "console-360.png")
