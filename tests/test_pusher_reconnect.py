"""Reconnect against a real nginx-rtmp that is killed and restarted on the same port."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgelive.codes import Code, Source
from edgelive.config.schema import PusherConfig
from edgelive.events import Event, EventLog
from edgelive.pusher import Pusher
from tests.flvprobe import probe
from tests.servers import NginxRtmp

BASE = {"source": "testsrc", "resolution": "320x180", "fps": 15, "audio-device": "tone",
        "mode": "RTC"}


class Recorder:
    """The events of one pusher, with a way to wait for the next occurrence of a code."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def codes(self, since: int = 0) -> list[int]:
        return [e.code for e in self.events[since:]]

    def wait_for(self, code: int, since: int = 0, timeout: float = 10.0) -> Event:
        """The first `code` event at index >= since; fails after `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((e for e in self.events[since:] if e.code == code), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                assert left > 0, f"no {code} within {timeout} s: {self.codes(since)}"
                self._changed.wait(left)

    def count(self, code: int, since: int = 0) -> int:
        return self.codes(since).count(code)


def make_pusher(url: str, **overrides: Any) -> tuple[Pusher, Recorder]:
    events = EventLog(Source.PUSHER)
    recorder = Recorder()
    events.subscribe(recorder)
    config = PusherConfig.model_validate({**BASE, "url": url, **overrides})
    return Pusher(config, events, lambda status: None), recorder


@pytest.fixture
def pushers() -> Iterator[list[Pusher]]:
    made: list[Pusher] = []
    yield made
    for pusher in made:
        pusher.stop()


def in_order(codes: list[int], wanted: list[set[int]]) -> bool:
    """Each set in `wanted` is matched by a later code than the previous one."""
    rest = iter(codes)
    return all(any(code in options for code in rest) for options in wanted)


def test_server_killed_and_back_resumes_on_the_same_clock_with_a_key_frame(
        nginx: NginxRtmp, pushers: list[Pusher]) -> None:
    pusher, rec = make_pusher(nginx.url("cut"))
    pushers.append(pusher)
    pusher.start()
    rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN)
    time.sleep(1.5)
    mark = len(rec.events)
    nginx.kill()
    rec.wait_for(Code.PUSH_WARNING_RECONNECT, mark)
    time.sleep(1.0)  # down for a while: the attempts meet a refused port
    starting = time.time()
    nginx.start()
    begin = rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN, mark)
    resumed_s = begin.ts / 1000 - starting
    time.sleep(2.0)
    pusher.stop()

    after_kill = rec.codes(mark)
    assert in_order(after_kill, [{3004, 3005}, {1102}, {1001}, {1002}]), after_kill
    loss = next(e for e in rec.events[mark:] if e.code in (3004, 3005))
    assert loss.msg  # the reason is given
    assert resumed_s <= 1.5, resumed_s
    assert pusher.state == "stopped"

    first, second = (probe(path) for path in nginx.recordings("cut")[-2:])
    video = second.packet_times("video")
    audio = second.packet_times("audio")
    assert second.packet_times("video", key_only=True)[0] == video[0]  # starts at a key
    for kind in ("video", "audio"):
        times = second.packet_times(kind, field="dts_time")
        assert all(b > a for a, b in itertools.pairwise(times)), kind
    assert abs(audio[0] - video[0]) <= 0.1, (audio[0], video[0])
    # one stream clock: the new session continues where the old one was cut
    gap = video[0] - first.packet_times("video")[-1]
    assert 0.9 <= gap <= 1.0 + resumed_s + 1.0, gap


def test_long_outage_three_attempts_then_net_disconnect_then_backoff(
        nginx: NginxRtmp, pushers: list[Pusher]) -> None:
    pusher, rec = make_pusher(nginx.url("long"), reconnect={"first-delay": 0.1,
                                                            "max-delay": 2.0})
    pushers.append(pusher)
    pusher.start()
    rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN)
    mark = len(rec.events)
    nginx.kill()
    gave_up = rec.wait_for(Code.PUSH_ERR_NET_DISCONNECT, mark)
    rec.wait_for(Code.PUSH_RETRY_SCHEDULED, rec.events.index(gave_up))
    while rec.count(Code.PUSH_RETRY_SCHEDULED, mark) < 3:
        rec.wait_for(Code.PUSH_RETRY_SCHEDULED, len(rec.events))
    assert pusher.state == "reconnecting"
    starting = time.time()
    nginx.start()
    begin = rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN, mark)

    outage = rec.events[mark:rec.events.index(begin)]
    before = outage[:outage.index(gave_up)]
    assert [e.code for e in before if e.code == 1102] == [1102] * 3
    failures = [e.code for e in before if e.code in (3002, 3004, 3005)]
    assert len(failures) == 4 and failures[0] in (3004, 3005)  # the loss, then 3 attempts
    assert [e.code for e in before].count(1001) == 0
    delays = [e.detail["delay_ms"] for e in outage if e.code == Code.PUSH_RETRY_SCHEDULED]
    assert delays[:3] == [800, 1600, 2000]
    assert all(e.detail["at"] > e.ts for e in outage if e.code == Code.PUSH_RETRY_SCHEDULED)
    # each attempt waited its delay: the next failure comes after it
    waits = [(e, next(f for f in outage[i + 1:] if f.code == 3002))
             for i, e in enumerate(outage) if e.code in (1102, 6008)
             and any(f.code == 3002 for f in outage[i + 1:])]
    assert all((f.ts - e.ts) >= 0.8 * e.detail["delay_ms"] for e, f in waits), waits
    assert begin.ts / 1000 - starting <= 1.5
    assert in_order(rec.codes(rec.events.index(begin) - 1), [{1001}, {1002}])


def test_second_publisher_gets_the_servers_reason(nginx: NginxRtmp,
                                                  pushers: list[Pusher]) -> None:
    first, first_rec = make_pusher(nginx.url("busy"))
    second, second_rec = make_pusher(nginx.url("busy"))
    pushers.extend([first, second])
    first.start()
    first_rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN)
    second.start()
    rejected = second_rec.wait_for(Code.PUSH_WARNING_SERVER_DISCONNECT)
    assert "Already publishing" in rejected.msg
    second_rec.wait_for(Code.PUSH_WARNING_RECONNECT)
    assert Code.PUSH_EVT_PUSH_BEGIN not in second_rec.codes()
    assert nginx.publishers("busy") == 1
    assert first.state == "pushing" and second.state == "connecting"


def test_give_up_stops_the_push(nginx: NginxRtmp, pushers: list[Pusher]) -> None:
    pusher, rec = make_pusher(nginx.url("giveup"), reconnect={"first-delay": 0.1,
                                                              "give-up": True})
    pushers.append(pusher)
    nginx.kill()
    pusher.start()
    assert pusher.done.wait(10)
    codes = rec.codes()
    assert in_order(codes, [{1003}, {3002}, {1102}, {3002}, {1102}, {3002}, {1102}, {3002},
                            {-1307}, {6021}]), codes
    assert codes.count(1102) == 3 and 6008 not in codes
    assert pusher.state == "failed"


def _usage(pid: int) -> tuple[int, int, int]:
    """Open fds, threads and resident memory (kB) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(next(line.split()[1] for line in status.splitlines()
                      if line.startswith("VmRSS:")))
    return (len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task")), rss_kb)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_hundred_server_restarts_leak_nothing(nginx: NginxRtmp, tmp_path: Path) -> None:
    config = tmp_path / "edgelive.toml"
    config.write_text('[pusher]\nsource = "testsrc"\nresolution = "320x180"\nfps = 15\n'
                      'audio-device = "tone"\n[pusher.reconnect]\nfirst-delay = 0.1\n')
    proc = subprocess.Popen([sys.executable, "-m", "edgelive", "push", nginx.url("loop"),
                             "--config", str(config)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    began = threading.Semaphore(0)
    codes: list[int] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            message = json.loads(line)
            if message["type"] == "event":
                codes.append(message["code"])
                if message["code"] == Code.PUSH_EVT_PUSH_BEGIN:
                    began.release()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert began.acquire(timeout=15)
        samples = {}
        for cycle in range(1, 101):
            nginx.kill()
            nginx.start()
            assert began.acquire(timeout=15), f"cycle {cycle}: {codes[-8:]}"
            time.sleep(0.2)  # some media on the new session before the next cut
            if cycle in (10, 100):
                samples[cycle] = _usage(proc.pid)
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    (fds, threads, rss), (fds_end, threads_end, rss_end) = samples[10], samples[100]
    print(f"after 10 cycles: {fds} fds, {threads} threads, {rss // 1024} MB; "
          f"after 100: {fds_end} fds, {threads_end} threads, {rss_end // 1024} MB")
    assert fds_end <= fds and threads_end <= threads
    assert rss_end - rss < 20 * 1024
    assert codes.count(Code.PUSH_EVT_PUSH_BEGIN) == 101 and -1307 not in codes
