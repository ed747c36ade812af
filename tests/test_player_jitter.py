"""live mode over a jittery link: an HTTP-FLV server in a network namespace behind a veth
pair with `tc netem` delay + jitter (or, on a kernel without netem, tests/jitter_relay.py in
the namespace); the player's buffer settles inside its band and the picture never freezes
longer than the jitter explains."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgelive.codes import Code
from tests.test_player_e2e import play, players, stop  # noqa: F401

DELAY_MS, JITTER_MS = 60, 25
MIN_CACHE, MAX_CACHE = 1.0, 2.0


@dataclass
class Namespace:
    name: str
    server_ip: str
    netem: bool
    """False: this kernel has no netem; a jitter relay in the namespace stands in."""


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture
def jittery_namespace() -> Iterator[Namespace]:
    if os.geteuid() != 0:
        pytest.skip("needs root for ip netns, veth and tc netem")
    net = random.randrange(1, 250)
    ns, host_if, ns_if = f"elplay{net}", f"elp{net}h", f"elp{net}n"
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        sh("ip", "link", "set", ns_if, "netns", ns)
        sh("ip", "addr", "add", f"10.231.{net}.1/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"10.231.{net}.2/30", "dev", ns_if)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        # Jitter on the server's egress only: what the player receives arrives unevenly.
        netem = subprocess.run(
            ["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", ns_if, "root", "netem",
             "delay", f"{DELAY_MS}ms", f"{JITTER_MS}ms", "distribution", "normal"],
            capture_output=True).returncode == 0
        yield Namespace(ns, f"10.231.{net}.2", netem)
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.mark.slow
@pytest.mark.netns
def test_live_buffer_stays_in_band_under_jitter(jittery_namespace: Namespace,
                                                players) -> None:  # noqa: F811
    ns = jittery_namespace
    url = f"http://{ns.server_ip}:8080/live.flv"
    listen = url if ns.netem else "http://127.0.0.1:8081/live.flv"
    server = subprocess.Popen(
        ["ip", "netns", "exec", ns.name, "ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi",
         "-i", "testsrc2=size=320x180:rate=25:duration=40", "-c:v", "libx264", "-preset",
         "ultrafast", "-tune", "zerolatency", "-g", "25", "-f", "flv", "-listen", "1",
         listen], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    relay = None if ns.netem else subprocess.Popen(
        ["ip", "netns", "exec", ns.name, sys.executable, "-m", "tests.jitter_relay",
         f"{ns.server_ip}:8080", "127.0.0.1:8081", str(DELAY_MS), str(JITTER_MS)],
        cwd=Path(__file__).parent.parent, stdin=subprocess.DEVNULL)
    shown: list[float] = []
    cache: list[float] = []
    try:
        time.sleep(1.0)  # the listener is up (its namespace is reachable only via the veth)
        p = play(players, url, mode="live", min_cache=MIN_CACHE, max_cache=MAX_CACHE,
                 screen_size="320x180", reconnect={"first-delay": 0.5},
                 on_present=lambda px, ms: shown.append(time.monotonic()))
        p.wait_for(Code.PLAY_EVT_PLAY_BEGIN, timeout=20)
        time.sleep(6.0)  # settle: the buffer fills to min-cache
        settled = time.monotonic()
        end = settled + 8.0
        while time.monotonic() < end:
            assert p.player is not None and p.player.main is not None
            cache.append(p.player.main.buffered)
            time.sleep(0.1)
    finally:
        stop(server)
        if relay is not None:
            stop(relay)
    arr = np.array(cache)
    assert arr.size > 50
    # A frame is due every 40 ms and a packet may be up to ~3 jitters late: the buffer
    # sampled between arrivals may dip that much under min-cache, never more.
    slack = 0.04 + 3 * JITTER_MS / 1000
    assert arr.min() >= MIN_CACHE - slack, f"buffer fell to {arr.min():.2f} s"
    assert arr.max() <= MAX_CACHE + 0.3, f"buffer grew to {arr.max():.2f} s"
    gaps = np.diff([t for t in shown if t >= settled])
    assert gaps.size > 150  # about 25 fps
    assert gaps.max() < 0.04 + 4 * JITTER_MS / 1000 + 0.1, f"froze {gaps.max():.2f} s"
    assert Code.PLAY_EVT_PLAY_LOADING not in [c for c in p.codes()[-5:]]
