"""What probation counts as a live pusher / a playing player (edgelive.update.service)."""

from __future__ import annotations

from edgelive.codes import Code, Source
from edgelive.events import EventLog
from edgelive.update.service import LiveTracker


def test_live_needs_the_begin_event_and_a_live_state() -> None:
    states = {"pusher": "connecting", "player": "idle"}
    tracker = LiveTracker(states.__getitem__)
    pusher, device = EventLog(Source.PUSHER), EventLog(Source.DEVICE)
    for log in (pusher, device):
        log.subscribe(tracker.observe)
    states["pusher"] = "pushing"
    assert not tracker.live("pusher")  # pushing, but no 1002 since this release started
    pusher.emit(Code.PUSH_EVT_PUSH_BEGIN, "live")
    assert tracker.live("pusher")
    pusher.emit(Code.PUSH_ERR_OPEN_MIC_FAIL, "microphone gone: silence")  # still streaming
    states["pusher"] = "waiting"  # the waiting image is live too
    assert tracker.live("pusher")
    states["pusher"] = "reconnecting"
    assert not tracker.live("pusher")
    states["pusher"] = "pushing"
    device.emit(Code.WORKER_RESTARTED, "pusher worker crash; restarted", worker="pusher",
                reason="crash")
    assert not tracker.live("pusher")  # a new worker must say 1002 again
    assert not tracker.live("player")
