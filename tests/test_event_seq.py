"""Event sequence numbers increase per boot across the box's one stream (SPEC §1).

The supervisor and each worker process make events; a restarted worker is a new process.
What the fleet sees on `…/event` must still be one numbering that only goes up.
"""

from __future__ import annotations

import asyncio
from itertools import pairwise

import psutil

from edgelive.codes import Code
from tests.servers import Mosquitto, NginxRtmp
from tests.test_supervisor import (  # noqa: F401 (run_box is a fixture)
    EventLog,
    box_config,
    operator,
    run_box,
)


def test_seq_increases_across_sources_and_a_worker_restart(
        mosquitto: Mosquitto, nginx: NginxRtmp, run_box) -> None:  # noqa: F811
    async def scenario() -> list[dict]:
        async with operator(mosquitto) as fleet:
            events = EventLog(fleet)
            await asyncio.sleep(0.3)  # the event subscription is in place before the box runs
            box = run_box(box_config(mosquitto, pusher={
                "url": nginx.url("seq"), "source": "testsrc", "resolution": "320x180",
                "fps": 10, "audio-device": "none", "autopush": True}))
            await events.wait_for(Code.PUSH_EVT_PUSH_BEGIN, timeout=30)
            pusher = next(p for p in psutil.Process(box.pid).children()
                          if "push" in p.cmdline() and "--worker" in p.cmdline())
            pusher.kill()
            await events.wait_for(Code.WORKER_RESTARTED, timeout=10)
            async with asyncio.timeout(30):  # the new worker process publishes again
                while events.codes().count(Code.PUSH_EVT_PUSH_BEGIN) < 2:
                    await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # and whatever the box says right after
            events.close()
            return events.seen

    seen = asyncio.run(scenario())
    trail = [(e["seq"], e["src"], e["name"]) for e in seen]
    assert {"device", "pusher"} <= {e["src"] for e in seen}, trail
    restart = next(i for i, e in enumerate(seen) if e["code"] == Code.WORKER_RESTARTED)
    assert any(e["src"] == "pusher" for e in seen[restart:]), trail
    seqs = [e["seq"] for e in seen]
    assert (seen[0]["code"], seqs[0]) == (Code.READY, 1), trail  # from 1 at each start
    assert all(a < b for a, b in pairwise(seqs)), trail
