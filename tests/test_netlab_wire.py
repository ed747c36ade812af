"""The shaped link's wire (edgelive.bench.wire): real network namespaces, TUN devices and the
forwarder process between them. Round trip, loss, tbf on the wire, RTMP over it, cleanup.
Probes run as small Python programs inside the namespaces (`ip netns exec`)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edgelive.bench import netlab
from edgelive.bench.netlab import ShapedLink
from edgelive.bench.wire import Wire
from edgelive.cli import main
from tests.flvprobe import probe

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0,
                                 reason="needs root for ip netns, TUN and tc")]

PORT = 5999
UDP_ECHO = """
import select, socket, sys
echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
discard = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
echo.bind((sys.argv[1], int(sys.argv[2])))
discard.bind((sys.argv[1], int(sys.argv[2]) + 1))
print("ready", flush=True)
while True:
    for s in select.select([echo, discard], [], [])[0]:
        data, peer = s.recvfrom(2048)
        if s is echo:
            s.sendto(data, peer)
"""
UDP_LOAD = """
import socket, sys, time
host, port, kbps, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
interval, start, sent = 1200 * 8 / 1000 / kbps, time.monotonic(), 0
while time.monotonic() < start + seconds:
    s.sendto(bytes(1200), (host, port))
    sent += 1
    time.sleep(max(0.0, start + sent * interval - time.monotonic()))
"""
UDP_PINGS = """
import json, select, socket, struct, sys, time
host, port, count, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
rtts, sent, start = {}, 0, time.monotonic()
while True:
    now = time.monotonic()
    if sent < count and now >= start + sent * interval:
        s.sendto(struct.pack("!Id", sent, now) + bytes(56), (host, port))
        sent += 1
        continue
    until = start + sent * interval if sent < count else start + count * interval + 1.0
    if now >= until and sent == count:
        break
    if select.select([s], [], [], max(0.0, until - now))[0]:
        data = s.recv(2048)
        seq, at = struct.unpack("!Id", data[:12])
        rtts[seq] = (time.monotonic() - at) * 1000
print(json.dumps(rtts))
"""
TCP_SINK = """
import json, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
print("ready", flush=True)
conn, _ = s.accept()
samples, total = [], 0
while data := conn.recv(65536):
    total += len(data)
    samples.append((time.monotonic(), total))
print(json.dumps(samples))
"""
TCP_SOURCE = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    s.send(bytes(16384))
s.close()
"""


def in_ns(ns: str, script: str, *args: object) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-c", script, *map(str, args)]


def start_server(link: ShapedLink, script: str) -> subprocess.Popen[str]:
    server = subprocess.Popen(in_ns(link.server_ns, script, link.server_ip, PORT),
                              stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdout.readline() == "ready\n"
    return server


def pings(link: ShapedLink, count: int, interval: float,
          load_kbps: int = 0) -> dict[int, float]:
    """Round trips (ms) of `count` UDP datagrams from the box to an echo in the server's
    namespace, by sequence number; a lost one is missing. With `load_kbps` the box sends
    that much besides, to be discarded in the server's namespace."""
    echo = start_server(link, UDP_ECHO)
    load = None
    if load_kbps:
        load = subprocess.Popen(in_ns(link.box_ns, UDP_LOAD, link.server_ip, PORT + 1,
                                      load_kbps, count * interval + 1.5))
    try:
        run = subprocess.run(in_ns(link.box_ns, UDP_PINGS, link.server_ip, PORT,
                                   count, interval),
                             capture_output=True, text=True, timeout=60, check=True)
        assert load is None or load.poll() is None, "the load stopped before the pings"
    finally:
        echo.kill()
        echo.wait()
        if load is not None:
            load.kill()
            load.wait()
    return {int(seq): rtt for seq, rtt in json.loads(run.stdout).items()}


def spread(rtts: list[float]) -> str:
    return (f"min {rtts[0]:.2f} p50 {statistics.median(rtts):.2f} "
            f"p95 {rtts[len(rtts) * 95 // 100]:.2f} max {rtts[-1]:.2f} ms")


# tbf far above the load, so that no ping waits behind a datagram of the load in its queue
@pytest.mark.parametrize("load_kbps", [0, 3000])
def test_a_60_ms_wire_adds_its_round_trip_with_little_jitter(tmp_path: Path,
                                                             load_kbps: int) -> None:
    with ShapedLink(tmp_path, kbps=100_000) as plain:
        direct = sorted(pings(plain, 50, 0.02, load_kbps).values())
    with ShapedLink(tmp_path, kbps=100_000, rtt_ms=60) as link:
        wired = sorted(pings(link, 200, 0.01, load_kbps).values())
    report = f"{load_kbps} kbit/s besides: veth {spread(direct)}; wire {spread(wired)}"
    print(report)
    assert len(direct) == 50 and statistics.median(direct) < 5, report
    assert len(wired) == 200, report
    assert wired[0] >= 60 and statistics.median(wired) < 64, report
    # the jitter the wire adds, with margin for a busy machine (measured p95 - min 0.3-0.8)
    assert wired[len(wired) * 95 // 100] - wired[0] < 4, report


def test_the_wire_drops_its_loss_rate_in_each_direction(tmp_path: Path) -> None:
    loss, count = 0.2, 500
    with ShapedLink(tmp_path, kbps=3000, loss=loss) as link:
        echoed = len(pings(link, count, 0.002))
    # an echo crosses the wire twice: it comes back with probability (1 - loss)²
    expected = count * (1 - loss) ** 2
    sigma = (count * (1 - loss) ** 2 * (1 - (1 - loss) ** 2)) ** 0.5
    assert abs(echoed - expected) < 4 * sigma, (echoed, expected, sigma)


def received_kbps(samples: list[tuple[float, int]], start: float, end: float) -> float:
    inside = [(t, n) for t, n in samples if start <= t <= end]
    (t0, n0), (t1, n1) = inside[0], inside[-1]
    return (n1 - n0) * 8 / 1000 / (t1 - t0)


@pytest.mark.timeout(60)
def test_tbf_on_the_wire_limits_a_bulk_transfer_and_follows_shape(tmp_path: Path) -> None:
    with ShapedLink(tmp_path, kbps=600, rtt_ms=40) as link:
        sink = start_server(link, TCP_SINK)
        source = subprocess.Popen(in_ns(link.box_ns, TCP_SOURCE, link.server_ip, PORT,
                                        9))
        time.sleep(4.5)
        link.shape(1800)
        assert source.wait(20) == 0
        out, _ = sink.communicate(timeout=20)
    samples = [(t, n) for t, n in json.loads(out)]
    first = samples[0][0]
    slow = received_kbps(samples, first + 1.5, first + 4.3)
    fast = received_kbps(samples, first + 6.0, first + 8.8)
    print(f"bulk TCP through the wire: {slow:.0f} kbit/s under 600, {fast:.0f} under 1800")
    assert 0.8 * 600 <= slow <= 1.05 * 600, (slow, fast)
    assert 0.8 * 1800 <= fast <= 1.05 * 1800, (slow, fast)


@pytest.mark.timeout(60)
def test_rtmp_publishes_through_a_lossy_60_ms_wire(tmp_path: Path) -> None:
    with ShapedLink(tmp_path, kbps=3000, rtt_ms=60, loss=0.005) as link:
        assert link.nginx is not None
        subprocess.run(link.box_argv(
            ["ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
             "testsrc2=size=320x240:rate=25", "-t", "4", "-c:v", "libx264",
             "-preset", "ultrafast", "-g", "25", "-f", "flv", link.box_url("wire")]),
            check=True, timeout=40, capture_output=True)
        recordings = link.nginx.recordings("wire")
        assert len(recordings) == 1
        recorded = probe(recordings[0])
    assert recorded.stream("video")["codec_name"] == "h264"
    times = recorded.packet_times("video")
    assert len(times) >= 95 and max(times) - min(times) >= 3.5, times  # all 4 s of 25 fps


def interfaces_and_namespaces() -> set[str]:
    """The names of the root namespace's interfaces and of every namespace."""
    links = [line.split(":")[1].strip().split("@")[0]
             for line in netlab.sh("ip", "-o", "link", "show").splitlines()]
    namespaces = [line.split()[0] for line in netlab.sh("ip", "netns", "list").splitlines()]
    return set(links + namespaces)


def test_close_removes_the_wire_also_when_the_build_fails(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    with ShapedLink(tmp_path, rtt_ms=20) as link:
        assert link._wire is not None and link._wire.pid is not None
        forwarder = Path(f"/proc/{link._wire.pid}")
        # the TUN devices sit in the namespaces they join
        for ns, device in ((link.box_ns, link._box_if), (link.server_ns, link._server_box_if)):
            assert "POINTOPOINT" in netlab.sh("ip", "-n", ns, "link", "show", device)
        names = {link.box_ns, link.server_ns, link._box_if, link._server_box_if}
    assert not names & interfaces_and_namespaces()
    assert not forwarder.exists()

    def refuse(self: netlab.NamespacedNginx) -> None:
        raise RuntimeError("nginx did not start")

    forwarders: list[Path] = []

    class Seen(Wire):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            forwarders.append(Path(f"/proc/{self.pid}"))

    monkeypatch.setattr(netlab.NamespacedNginx, "start", refuse)
    monkeypatch.setattr(netlab, "Wire", Seen)
    before = interfaces_and_namespaces()
    with pytest.raises(RuntimeError, match="nginx did not start"):
        ShapedLink(tmp_path, rtt_ms=20, loss=0.1)
    assert interfaces_and_namespaces() == before
    assert len(forwarders) == 1 and not forwarders[0].exists()


def test_bench_bitrate_names_its_scenarios_when_asked_for_one_it_lacks(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "bitrate", "--scenario", "3", "--scenario", "4"]) == 2
    err = capsys.readouterr().err
    assert "no scenario 4" in err and "3. LTE-like trace, 640x360, 60 ms RTT" in err, err
