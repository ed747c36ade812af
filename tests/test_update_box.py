"""The update on a box: a real `edgelive run` started the way systemd starts it (the start
guard from the `good` release, then `current/bin/edgelive run`, restarted whenever it ends),
real mosquitto and nginx-rtmp, bundles served over HTTP with Range by aiohttp.

A good release commits once the box is online and streaming again and the box says its new
version; a refused bundle (wrong hash, wrong signature) changes nothing; a cut download
resumes; a release that crashes at start is rolled back by the guard within the health
timeout, and the box is online and streaming on its previous release again.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from edgelive.codes import Code
from edgelive.update.bundle import (
    box_target,
    build_bundle,
    load_private_key,
    load_public_keys,
    verify_bundle,
)
from edgelive.update.slots import Slots
from tests.servers import Mosquitto, NginxRtmp, free_port
from tests.test_release_bundle import edgelive_cli, make_wheel
from tests.test_supervisor import BOX, EventLog, box_config, operator, write_config

BASE = "0.1.0"
HEALTH_TIMEOUT = 60


class BundleServer:
    """Serves files of one directory with HTTP Range (aiohttp, its own thread and loop);
    records each request's Range header and can cut a response short once. `mode`:
    "range" (default), "whole" (ignores Range, like a server without it), "chunked" (no
    Content-Length), "stall" (sends the headers, then nothing)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.ranges: list[str | None] = []
        self.cut_next_at: int | None = None
        self.mode = "range"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/{name}", self._file)
        runner = web.AppRunner(app, shutdown_timeout=1)  # a stalled response ends too
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    async def _file(self, request: web.Request) -> web.StreamResponse:
        path = self.root / request.match_info["name"]
        if not path.exists():
            return web.Response(status=404)
        data = path.read_bytes()
        header = request.headers.get("Range")
        self.ranges.append(header)
        start = int(header.removeprefix("bytes=").rstrip("-")) \
            if header and self.mode != "whole" else 0
        if start >= len(data):
            return web.Response(status=416)
        resp = web.StreamResponse(status=206 if start else 200)
        if self.mode == "chunked":
            resp.enable_chunked_encoding()
        else:
            resp.content_length = len(data) - start
        if start:
            resp.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        await resp.prepare(request)
        if self.mode == "stall":
            await asyncio.sleep(3600)
        cut, self.cut_next_at = self.cut_next_at, None
        if cut is not None:  # a connection that breaks mid-download
            await resp.write(data[start:cut])
            assert request.transport is not None
            request.transport.close()
            return resp
        await resp.write(data[start:])
        await resp.write_eof()
        return resp

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@dataclass
class Box:
    """Releases under `root` and the service loop systemd would run over them."""

    root: Path
    state: Path
    env: dict[str, str]
    output: list[str] = field(default_factory=list)
    starts: list[str] = field(default_factory=list)  # the version each start ran
    _stop: threading.Event = field(default_factory=threading.Event)
    _proc: subprocess.Popen[str] | None = None

    def run(self) -> None:
        self._thread = threading.Thread(target=self._service, daemon=True)
        self._thread.start()

    def _service(self) -> None:
        while not self._stop.is_set():
            guard = subprocess.run(  # ExecStartPre: the good release's guard
                [str(self.root / "good/bin/edgelive"), "release", "guard", "--root",
                 str(self.root), "--state-dir", str(self.state)],
                env=self.env, capture_output=True, text=True, timeout=60)
            self.output.append(f"guard: {guard.stdout.strip()} {guard.stderr.strip()}")
            self.starts.append(Path(os.readlink(self.root / "current")).name)
            self._proc = subprocess.Popen(
                [str(self.root / "current/bin/edgelive"), "run", "--state-dir",
                 str(self.state), "--boot-file", str(self.state / "absent.toml")],
                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert self._proc.stdout is not None
            for line in self._proc.stdout:
                self.output.append(line.rstrip())
            self._proc.wait()
            self._stop.wait(0.5)  # RestartSec

    def close(self) -> None:
        self._stop.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._thread.join(20)


@dataclass
class Releases:
    """Signed bundles of this source tree under other version numbers."""

    dir: Path
    key: Path
    public: Path

    def bundle(self, version: str, *, broken: str = "", key: Path | None = None) -> Path:
        wheel = make_wheel(self.dir / f"w-{version}", version, broken=broken)
        out = self.dir / f"edgelive-{version}.bundle"
        build_bundle([wheel], version, box_target(), load_private_key(key or self.key), out)
        return out


@pytest.fixture
def releases(tmp_path: Path) -> Releases:
    assert edgelive_cli("release", "keygen", "--out", str(tmp_path / "release")).returncode == 0
    (tmp_path / "www").mkdir()
    return Releases(tmp_path / "www", tmp_path / "release.key", tmp_path / "release.pub")


@pytest.fixture
def server(releases: Releases) -> Iterator[BundleServer]:
    srv = BundleServer(releases.dir)
    yield srv
    srv.close()


@pytest.fixture
def box(releases: Releases, mosquitto: Mosquitto, nginx: NginxRtmp,
        tmp_path: Path) -> Iterator[Box]:
    """A box as the image makes it: release BASE installed in a slot, current and good
    pointing at it, the public key in keys/; streaming to nginx and online."""
    root = tmp_path / "opt-edgelive"
    slots = Slots(root)
    bundle = releases.bundle(BASE)
    slots.install(bundle, verify_bundle(bundle, load_public_keys([releases.public])))
    slots.link("current", BASE)
    slots.link("good", BASE)
    slots.keys_dir.mkdir()
    shutil.copy(releases.public, slots.keys_dir / "release.pub")
    state = tmp_path / "state"
    write_config(state, box_config(mosquitto, pusher={
        "url": nginx.url("box"), "source": "testsrc", "resolution": "320x180", "fps": 15,
        "audio-device": "none", "autopush": True}))
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "SDL_VIDEODRIVER": "offscreen",
           "SDL_AUDIODRIVER": "dummy", "EDGELIVE_UPDATE_ROOT": str(root)}
    env.pop("PYTHONPATH", None)
    running = Box(root, state, env)
    running.run()
    yield running
    running.close()


def links(root: Path) -> dict[str, object]:
    """What a box boots and keeps: the links and the installed slots."""
    return {"current": os.readlink(root / "current"), "good": os.readlink(root / "good"),
            "releases": sorted(p.name for p in (root / "releases").iterdir())}


async def wait_event(events: EventLog, match, timeout: float) -> dict:
    async with asyncio.timeout(timeout):
        while not any(match(e) for e in events.seen):
            await asyncio.sleep(0.1)
    return next(e for e in events.seen if match(e))


def code(c: Code):
    return lambda e: e["code"] == c


async def online_and_pushing(fleet, version: str, timeout: float = 40) -> None:
    def there() -> bool:
        view = fleet.boxes.get(BOX)
        state = (view.state if view is not None and view.online else None) or {}
        return state.get("version") == version and state["pusher"]["state"] == "pushing"

    assert await fleet.wait_until(there, timeout=timeout), \
        f"box not online and pushing on {version}"


def update_args(server: BundleServer, bundle: Path, version: str, **extra: object) -> dict:
    return {"url": server.url(bundle.name), "sha256": hashlib.sha256(
        bundle.read_bytes()).hexdigest(), "version": version, **extra}


def test_refused_bundles_change_nothing_a_cut_download_resumes_and_a_good_release_commits(
        box: Box, releases: Releases, server: BundleServer, mosquitto: Mosquitto,
        nginx: NginxRtmp, tmp_path: Path) -> None:
    good = releases.bundle("0.2.0")
    assert edgelive_cli("release", "keygen", "--out", str(tmp_path / "other")).returncode == 0
    forged = releases.bundle("0.2.1", key=tmp_path / "other.key")
    before = links(box.root)

    async def scenario() -> int:
        async with operator(mosquitto) as fleet:
            events = EventLog(fleet)
            assert await fleet.wait_online([BOX], timeout=30)
            await online_and_pushing(fleet, BASE)

            # wrong hash, then a signature by a key the box does not trust
            wrong = {**update_args(server, good, "0.2.0"), "sha256": "0" * 64}
            answer = await fleet.command(BOX, "device/update", wrong)
            assert answer.answers[BOX]["result"]["accepted"] is True
            refused = await wait_event(events, code(Code.UPDATE_ROLLED_BACK), 30)
            assert refused["detail"]["stage"] == "verify", refused
            assert "SHA-256 does not match" in refused["detail"]["reason"]
            events.seen.clear()
            await fleet.command(BOX, "device/update", update_args(server, forged, "0.2.1"))
            refused = await wait_event(events, code(Code.UPDATE_ROLLED_BACK), 30)
            assert "signature does not verify" in refused["detail"]["reason"], refused
            assert links(box.root) == before
            assert list((box.root / "downloads").iterdir()) == []  # refused: not kept

            # the connection breaks half way: nothing installed, the part kept
            events.seen.clear()
            size = good.stat().st_size
            server.cut_next_at = size // 2
            await fleet.command(BOX, "device/update", update_args(server, good, "0.2.0"))
            failed = await wait_event(events, code(Code.UPDATE_ROLLED_BACK), 30)
            assert failed["detail"]["stage"] == "download", failed
            [part] = (box.root / "downloads").iterdir()
            have = part.stat().st_size  # what reached the box before the break
            assert 0 < have <= size // 2 and links(box.root) == before

            # again: resumed from the cut, verified, installed, switched, committed
            events.seen.clear()
            await fleet.command(BOX, "device/update", update_args(server, good, "0.2.0"))
            done = await wait_event(events, code(Code.UPDATE_DONE), HEALTH_TIMEOUT + 30)
            assert done["detail"] == {"version": "0.2.0", "previous": BASE}
            assert "pusher live" in done["msg"] and "MQTT online" in done["msg"]
            percents = [e["detail"]["percent"] for e in events.seen
                        if e["code"] == Code.UPDATE_STARTED and e["detail"]["stage"] ==
                        "download"]
            assert percents[0] == have * 100 // size and percents[-1] == 100, percents
            await online_and_pushing(fleet, "0.2.0")
            return have

    have = asyncio.run(scenario())
    assert server.ranges[-1] == f"bytes={have}-"
    assert links(box.root) == {"current": "releases/0.2.0", "good": "releases/0.2.0",
                               "releases": [BASE, "0.2.0"]}
    assert box.starts == [BASE, "0.2.0"]
    assert nginx.publishers("box") == 1


def test_a_release_that_crashes_at_start_is_rolled_back_by_the_guard(
        box: Box, releases: Releases, server: BundleServer, mosquitto: Mosquitto,
        nginx: NginxRtmp) -> None:
    crashing = releases.bundle("0.3.0", broken="__main__.py")

    async def scenario() -> float:
        async with operator(mosquitto) as fleet:
            events = EventLog(fleet)
            assert await fleet.wait_online([BOX], timeout=30)
            await online_and_pushing(fleet, BASE)
            started = time.monotonic()
            await fleet.command(BOX, "device/update", update_args(
                server, crashing, "0.3.0", health_timeout=HEALTH_TIMEOUT))
            back = await wait_event(events, code(Code.UPDATE_ROLLED_BACK), HEALTH_TIMEOUT)
            assert back["detail"]["reason"] == \
                "release 0.3.0 failed to start and judge itself healthy 3 times", back
            assert back["detail"]["running"] == BASE
            await online_and_pushing(fleet, BASE)
            return time.monotonic() - started

    elapsed = asyncio.run(scenario())
    assert elapsed < HEALTH_TIMEOUT
    assert box.starts == [BASE, "0.3.0", "0.3.0", "0.3.0", BASE], box.output[-30:]
    assert links(box.root)["current"] == links(box.root)["good"] == f"releases/{BASE}"
    assert nginx.publishers("box") == 1


def test_a_release_that_runs_but_never_streams_rolls_itself_back(
        box: Box, releases: Releases, server: BundleServer, mosquitto: Mosquitto,
        nginx: NginxRtmp) -> None:
    """Its supervisor starts and goes online; its pusher worker dies at every start, so
    there is no 1002: at the health timeout (`update.health-timeout`, set from the fleet) the
    release switches back and says why."""
    timeout = 25
    mute = releases.bundle("0.4.0", broken="pusher/worker.py")

    async def scenario() -> None:
        async with operator(mosquitto) as fleet:
            events = EventLog(fleet)
            assert await fleet.wait_online([BOX], timeout=30)
            await online_and_pushing(fleet, BASE)
            [outcome] = await fleet.set_config(BOX, {"update": {"health-timeout": timeout}})
            assert outcome.report and outcome.report["applied"], outcome
            await fleet.command(BOX, "device/update", update_args(server, mute, "0.4.0"))
            assert await fleet.wait_until(
                lambda: (fleet.boxes[BOX].state or {}).get("version") == "0.4.0", 40)
            back = await wait_event(events, code(Code.UPDATE_ROLLED_BACK), timeout + 40)
            assert back["detail"]["reason"] == \
                f"not healthy within {timeout} s: pusher not live (no 1002)", back
            await online_and_pushing(fleet, BASE)

    asyncio.run(scenario())
    assert box.starts == [BASE, "0.4.0", BASE]
    assert links(box.root)["current"] == f"releases/{BASE}"
