"""Bitrate adaptation over a real shaped uplink with `tcp_notsent_lowat` unset: `edgelive
push` (RTC, 640x360, 150–1500 kbit/s) in a network namespace behind tbf going 1500 → 400 →
1500 kbit/s, nginx-rtmp in another, a stamp-reading PyAV reader in the root namespace
(edgelive.bench.bitrate runs the scenario). The targets, with margins for a loaded 2-core
machine: peak 1.0 s (here 1.0 s; measured 250–370 ms in the last eight runs), under 200 ms
within 5 s and held (here 80 % of the seconds from 5 s on under 200 ms and none over
600 ms; measured 4 s in the last five runs, none over 200 ms after), ≥ 15 fps (here 12 in
the worst second; measured 20–26), target back within 15 s (here 20 s; measured 0–8 s).
Without the pusher's own socket the latency climbed to 2.2 s and stayed there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgelive.bench.bitrate import DROP, SCENARIOS, format_timeline, run_on, summary
from edgelive.bench.netlab import ShapedLink
from edgelive.codes import Code
from tests.netns import shaped_link  # noqa: F401  (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0,
                                 reason="needs root for ip netns, veth and tc")]


@pytest.mark.flaky(reruns=1)
@pytest.mark.timeout(480)
def test_latency_stays_bounded_when_the_link_drops_and_the_target_climbs_back(
        shaped_link: ShapedLink, tmp_path: Path) -> None:  # noqa: F811
    scenario = SCENARIOS[0]
    result = run_on(shaped_link, tmp_path, scenario)
    timeline = format_timeline(result)
    figures = summary(scenario, result)
    report = f"{timeline}\n{figures}"
    drop, back = DROP[1][0], DROP[2][0]
    assert figures["peak_latency_ms"] <= 1000, report
    short = [r for r in result.seconds if drop <= r.t < back]
    # then held low: a failed probe costs ~0.1 s for a second (without the socket's readings
    # the latency climbed past 2 s and stayed there)
    settled = [r.latency_ms for r in short if r.t >= drop + 5 and r.latency_ms is not None]
    assert len(settled) >= 20, report
    assert sorted(settled)[len(settled) * 4 // 5] < 200 and max(settled) < 600, report
    assert figures["min_fps_short"] >= 12 and figures["median_fps_short"] >= 25, report
    # what the server acknowledged fits the link once the drop is absorbed
    acked = [r.delivered_kbps for r in short if r.t >= drop + 3 and r.delivered_kbps]
    # on average: one second read 463 (tbf's bucket passes a burst at once)
    assert sum(acked) / len(acked) <= 400 * 1.05, report
    codes = [e["code"] for e in result.events]
    assert Code.PUSH_WARNING_NET_BUSY in codes, codes
    assert not {Code.PUSH_WARNING_RECONNECT, Code.PUSH_WARNING_SERVER_DISCONNECT,
                Code.PUSH_WARNING_SOCKET_BROKEN} & set(codes), codes
    assert result.publishes == 1
    recovered = figures["target_90pct_after_return_s"]
    assert recovered is not None and recovered <= 20, report
