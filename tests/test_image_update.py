"""Updates on the image's box in QEMU (docs/updates.md), from the host as an operator sees them.

On the session's one machine (tests/image_machine.py), in order: two refused bundles (a
SHA-256 other than the command's, a signature by a key the box does not hold) change
nothing, not even the RTMP session; a good release signed with the image's development key
(build/image/release-dev.key; the image's arm64 wheels with edgelive's own rebuilt at a new
version) commits and streams again; a release that crashes at start is sent back to the
good release by the start guard; and the power cut twice (QEMU killed), during a download
and right after the switch, leaves a box that boots a release and streams. Bundles are
served from the host with HTTP Range (tests/test_update_box.BundleServer), which the guest
reaches at 10.0.2.2. The signing key and the wheels are those beside the booted image
(build/image, or $EDGELIVE_TEST_IMAGE's directory).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from edgelive.codes import Code
from edgelive.update.bundle import build_bundle, generate_keys, load_private_key
from tests.image_machine import BOOT_S, BOX, HOST, STREAM_KEY, Fleet, Machine, fleet
from tests.servers import Mosquitto, NginxRtmp
from tests.test_release_bundle import make_wheel
from tests.test_update_box import BundleServer

pytestmark = pytest.mark.slow

TARGET = "cp311-linux_aarch64"  # the image's interpreter and machine, whatever the host's
GOOD, FORGED, CRASHING = "0.2.0", "0.2.1", "0.3.0"
CUT_DOWNLOAD, CUT_SWITCH = "0.4.0", "0.5.0"  # updates the power is cut during
HEALTH_TIMEOUT = 600  # s for the new release to be live again; emulation is slow
UPDATE_S = 1200  # command to UPDATE_DONE / UPDATE_ROLLED_BACK: about 190 s measured by hand
ROOT = "/opt/edgelive"


class Releases:
    """Bundles made on the host, served to the guest over HTTP with Range."""

    def __init__(self, workdir: Path, image_dir: Path) -> None:
        self.dir = workdir
        # the key and wheels the booted image was built with (build.sh leaves them beside it)
        self.key = image_dir / "release-dev.key"
        self.wheels = image_dir / "wheels"
        self.www = workdir / "www"
        self.www.mkdir()
        self.server = BundleServer(self.www)

    def bundle(self, version: str, *, deps: bool = True, broken: str = "",
               key: Path | None = None) -> Path:
        """edgelive of this tree as `version` (with `broken`, a module that exits as it is
        imported) and, with `deps`, every other wheel the image was built from."""
        wheels = [make_wheel(self.dir / f"w-{version}", version, broken=broken)]
        if deps:
            wheels += [w for w in sorted(self.wheels.glob("*.whl"))
                       if not w.name.startswith("edgelive-")]
            assert len(wheels) > 20, f"no dependency wheels in {self.wheels}"
        out = self.www / f"edgelive-{version}{'-broken' if broken else ''}.bundle"
        build_bundle(wheels, version, TARGET, load_private_key(key or self.key), out)
        return out

    def args(self, bundle: Path, version: str, **extra: Any) -> dict[str, Any]:
        """`device/update`'s arguments for `bundle`, as `edgelive fleet update` sends them."""
        return {"url": f"http://{HOST}:{self.server.port}/{bundle.name}", "version": version,
                "sha256": hashlib.sha256(bundle.read_bytes()).hexdigest(),
                "health_timeout": HEALTH_TIMEOUT, **extra}


@pytest.fixture(scope="module")
def releases(image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Releases]:
    """After `image`: its build rewrites build/image/wheels."""
    made = Releases(tmp_path_factory.mktemp("releases"), image.parent)
    yield made
    made.server.close()


def link(machine: Machine, name: str) -> str:
    return machine.sh(f"readlink {ROOT}/{name}").strip()


def publishes(nginx: NginxRtmp) -> int:
    """How many times the box has started publishing its stream at the ingest."""
    return sum(1 for p in nginx.published() if p.get("name") == STREAM_KEY)


async def outcome(view: Fleet, since: int, version: str, timeout: float,
                  machine: Machine) -> dict:
    """The first UPDATE_DONE or UPDATE_ROLLED_BACK for `version` after event `since`. A
    supervisor that starts again (READY) before the update switched has lost the update."""
    def find(events: list[dict]) -> dict | None:
        switched = False
        for event in events:
            detail = event.get("detail") or {}
            if (event["code"] in (Code.UPDATE_DONE, Code.UPDATE_ROLLED_BACK)
                    and detail.get("version") == version):
                return event
            switched |= event["code"] == Code.UPDATE_STARTED and detail.get("stage") == "switch"
            assert switched or event["code"] != Code.READY, \
                f"the box restarted during the update to {version}: {events}\n" \
                f"{machine.log_tail()}"
        return None

    return await view.wait_for(find, timeout, since, f"outcome for {version}")


@asynccontextmanager
async def pushing_box(mosquitto: Mosquitto, machine: Machine) -> AsyncIterator[Fleet]:
    """The operator's view of the box once it is online and pushing."""
    async with fleet(mosquitto, machine) as view:
        assert await view.wait_pushing(300), (view.state(), machine.log_tail())
        yield view


async def send_update(view: Fleet, args: dict[str, Any], running: str) -> int:
    """`device/update` sent and accepted; the index of the events that follow it."""
    since = len(view.events)
    answer = await view.op.command(BOX, "device/update", args, timeout=60)
    reply = answer.answers.get(BOX) or {}
    assert reply.get("ok") is True, answer.answers
    assert reply["result"] == {"accepted": True, "version": args["version"], "from": running}
    return since


async def online_on(view: Fleet, version: str, timeout: float) -> bool:
    return await view.op.wait_until(
        lambda: view.op.boxes[BOX].online and view.state().get("version") == version
        and view.state().get("pusher", {}).get("state") == "pushing", timeout)


@pytest.mark.timeout(60 * 60)  # may include building and booting the image
def test_refused_bundles_change_nothing(machine: Machine, servers: tuple[Mosquitto, NginxRtmp],
                                        releases: Releases, tmp_path: Path) -> None:
    mosquitto, nginx = servers
    generate_keys(tmp_path / "other.key", tmp_path / "other.pub")
    forged = releases.bundle(FORGED, deps=False, key=tmp_path / "other.key")
    small = releases.bundle(GOOD, deps=False)
    refusals = [
        ({**releases.args(small, GOOD), "sha256": "0" * 64},
         "bundle SHA-256 does not match the one in the update command"),
        (releases.args(forged, FORGED),
         "bundle signature does not verify with this box's release key")]

    async def scenario() -> None:
        async with pushing_box(mosquitto, machine) as view:
            running = view.state()["version"]
            current, sessions = link(machine, "current"), publishes(nginx)
            assert nginx.publishers(STREAM_KEY) == 1 and sessions >= 1
            for args, reason in refusals:
                began = time.monotonic()
                since = await send_update(view, args, running)
                event = await outcome(view, since, args["version"], 300, machine)
                print(f"refused {args['version']} in {time.monotonic() - began:.0f} s")
                assert event["code"] == Code.UPDATE_ROLLED_BACK, event
                assert event["detail"]["stage"] == "verify", event
                assert event["detail"]["reason"] == reason, event
                assert event["detail"]["running"] == running, event
                # nothing changed: same release, same links, same RTMP session
                await asyncio.sleep(5)
                assert view.op.boxes[BOX].online and view.state()["version"] == running
                assert view.state()["pusher"]["state"] == "pushing", view.state()
                assert link(machine, "current") == current == link(machine, "good")
                assert nginx.publishers(STREAM_KEY) == 1 and publishes(nginx) == sessions
                assert Code.READY not in [e["code"] for e in view.events[since:]]
            assert machine.sh(f"ls -A {ROOT}/downloads").strip() == ""  # refused: not kept
            assert machine.sh(f"ls {ROOT}/releases").split() == [running]

    asyncio.run(scenario())


@pytest.mark.timeout(UPDATE_S + 900)
def test_a_good_release_commits_and_streams_again(
        machine: Machine, servers: tuple[Mosquitto, NginxRtmp], releases: Releases) -> None:
    mosquitto, nginx = servers
    bundle = releases.bundle(GOOD)

    async def scenario() -> str:
        async with pushing_box(mosquitto, machine) as view:
            previous, sessions = view.state()["version"], publishes(nginx)
            began = time.monotonic()
            since = await send_update(view, releases.args(bundle, GOOD), previous)
            event = await outcome(view, since, GOOD, UPDATE_S, machine)
            print(f"update to {GOOD} committed {time.monotonic() - began:.0f} s after the "
                  f"command ({bundle.stat().st_size >> 20} MiB bundle)")
            after = view.events[since:]
            assert event["code"] == Code.UPDATE_DONE, (event, machine.log_tail())
            assert event["detail"] == {"version": GOOD, "previous": previous}, event
            assert "pusher live" in event["msg"] and "MQTT online" in event["msg"], event
            stages = [e["detail"]["stage"] for e in after if e["code"] == Code.UPDATE_STARTED]
            assert stages[0] == "download" and stages[-2:] == ["install", "switch"], stages
            switch = next(i for i, e in enumerate(after) if e["code"] == Code.UPDATE_STARTED
                          and e["detail"]["stage"] == "switch")
            assert Code.READY in [e["code"] for e in after[switch:]]  # a new supervisor
            assert Code.PUSH_EVT_PUSH_BEGIN in [e["code"] for e in after[switch:]]  # 1002
            assert await online_on(view, GOOD, 120), view.state()
            assert publishes(nginx) > sessions and nginx.publishers(STREAM_KEY) == 1
            return previous

    previous = asyncio.run(scenario())
    assert link(machine, "current") == link(machine, "good") == f"releases/{GOOD}"
    assert sorted(machine.sh(f"ls {ROOT}/releases").split()) == sorted([previous, GOOD])
    assert machine.sh(f"ls -A {ROOT}/downloads").strip() == ""


@pytest.mark.timeout(UPDATE_S + 900)
def test_a_release_that_crashes_at_start_goes_back_to_the_good_one(
        machine: Machine, servers: tuple[Mosquitto, NginxRtmp], releases: Releases) -> None:
    mosquitto, nginx = servers
    bundle = releases.bundle(CRASHING, broken="__main__.py")

    async def scenario() -> str:
        async with pushing_box(mosquitto, machine) as view:
            good, sessions = view.state()["version"], publishes(nginx)
            assert link(machine, "good") == link(machine, "current") == f"releases/{good}"
            began = time.monotonic()
            since = await send_update(view, releases.args(bundle, CRASHING), good)
            event = await outcome(view, since, CRASHING, UPDATE_S, machine)
            print(f"crashing {CRASHING} rolled back {time.monotonic() - began:.0f} s after "
                  "the command")
            assert event["code"] == Code.UPDATE_ROLLED_BACK, (event, machine.log_tail())
            assert event["detail"]["stage"] == "probation", event
            assert event["detail"]["reason"] == \
                f"release {CRASHING} failed to start and judge itself healthy 3 times", event
            assert event["detail"]["running"] == good, event
            assert Code.UPDATE_DONE not in [e["code"] for e in view.events[since:]]
            assert await online_on(view, good, 300), view.state()
            assert publishes(nginx) > sessions and nginx.publishers(STREAM_KEY) == 1
            return good

    good = asyncio.run(scenario())
    assert link(machine, "current") == link(machine, "good") == f"releases/{good}"
    record = json.loads(machine.sh(f"cat {ROOT}/update.json"))  # the guard's count
    assert (record["version"], record["state"], record["starts"], record["reported"]) == \
        (CRASHING, "rolled-back", 3, True), record


async def power_cut_at(view: Fleet, machine: Machine, since: int, stage: str,
                       timeout: float) -> None:
    """Cut the power as the update after event `since` reports `stage`, then wait until
    the box has gone offline (its will) and come back online."""
    await view.wait_for(lambda events: next(
        (e for e in events if e["code"] == Code.UPDATE_STARTED
         and e["detail"].get("stage") == stage), None), timeout, since, f"{stage} stage")
    machine.power_cut()
    machine.mark(f"power cut at {stage}")
    assert await view.op.wait_until(lambda: view.op.boxes[BOX].status == "offline", 120)
    assert await view.op.wait_until(lambda: view.op.boxes[BOX].online, BOOT_S), \
        machine.not_online()
    machine.mark(f"online after the cut at {stage}")


@pytest.mark.timeout(UPDATE_S + 900)
def test_a_power_cut_during_the_download_boots_the_running_release(
        machine: Machine, servers: tuple[Mosquitto, NginxRtmp], releases: Releases) -> None:
    mosquitto, nginx = servers
    bundle = releases.bundle(CUT_DOWNLOAD)

    async def scenario() -> None:
        async with pushing_box(mosquitto, machine) as view:
            running, current = view.state()["version"], link(machine, "current")
            since = await send_update(view, releases.args(bundle, CUT_DOWNLOAD), running)
            await power_cut_at(view, machine, since, "download", 300)
            rebooted = len(view.events)
            await view.wait_event(Code.PUSH_EVT_PUSH_BEGIN, 300, after=rebooted)
            assert await online_on(view, running, 60), view.state()
            assert Code.UPDATE_DONE not in view.codes()[since:]
            assert link(machine, "current") == link(machine, "good") == current
            assert nginx.publishers(STREAM_KEY) == 1

    asyncio.run(scenario())


@pytest.mark.timeout(UPDATE_S + 900)
def test_a_power_cut_right_after_the_switch_boots_and_streams(
        machine: Machine, servers: tuple[Mosquitto, NginxRtmp], releases: Releases) -> None:
    """`current` is renamed to the new release before the switch is announced: the box
    boots it on probation (that start counts) and commits it."""
    mosquitto, nginx = servers
    bundle = releases.bundle(CUT_SWITCH)

    async def scenario() -> None:
        async with pushing_box(mosquitto, machine) as view:
            running = view.state()["version"]
            since = await send_update(view, releases.args(bundle, CUT_SWITCH), running)
            await power_cut_at(view, machine, since, "switch", UPDATE_S)
            event = await view.wait_event(Code.UPDATE_DONE, HEALTH_TIMEOUT, after=since)
            assert event["detail"] == {"version": CUT_SWITCH, "previous": running}, event
            assert await online_on(view, CUT_SWITCH, 60), view.state()
            assert nginx.publishers(STREAM_KEY) == 1

    asyncio.run(scenario())
    assert link(machine, "current") == link(machine, "good") == f"releases/{CUT_SWITCH}"
