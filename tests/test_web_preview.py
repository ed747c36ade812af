"""The preview path without a browser: the pusher's tap (real encoder packets, PyAV fMP4)
through the supervisor's hub over a real Unix socket, to a viewer's queue."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from edgelive.config.presets import video_plan
from edgelive.config.schema import PusherConfig
from edgelive.media import stamp
from edgelive.media.encode import PictureSize, open_video_encoder
from edgelive.media.preview import PreviewTap
from edgelive.web.preview import PreviewHub, Viewer


def stamped(n: int) -> av.VideoFrame:
    """Frame `n`: mid grey with the wall-clock stamp of n seconds (+7 ms) drawn in."""
    yuv = np.full((540, 640), 128, dtype=np.uint8)
    stamp.draw(yuv[:360], n * 1000 + 7)
    return av.VideoFrame.from_ndarray(yuv, format="yuv420p")


def decoded(init: bytes, fragments: list[bytes]) -> list[tuple[int, int, int]]:
    """Decode one init segment and its fragments as a browser would get them: the size and
    the frame number read from the stamp of each picture."""
    out = []
    with av.open(io.BytesIO(init + b"".join(fragments)), format="mp4") as container:
        for frame in container.decode(video=0):
            value = stamp.decode(frame.to_ndarray(format="gray"), width=640)
            out.append((frame.width, frame.height, (value - 7) // 1000))
    return out


async def collect(viewer: Viewer, count: int) -> list[bytes]:
    return [await asyncio.wait_for(viewer.queue.get(), 10) for _ in range(count)]


def test_tap_streams_fmp4_from_a_key_frame_and_follows_a_size_change(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    taps: list[PreviewTap | None] = []

    async def switch(path: str | None) -> None:
        if taps and taps[-1] is not None:
            taps[-1].close()
        taps.append(PreviewTap(path) if path else None)

    async def scenario() -> None:
        hub = PreviewHub(tmp_path / "preview.sock", switch)
        await hub.start()
        assert taps == []  # nobody watches: no tap
        viewer = await hub.join()
        tap = taps[-1]
        assert tap is not None

        plan = video_plan(PusherConfig(resolution="640x360", fps=30, gop=0.5))
        encoder, _ = open_video_encoder(plan, "software", hardware_available=False)

        def push(first: int, frames: int) -> None:
            for n in range(first, first + frames):
                if n == 45:  # bitrate adaptation's resolution step
                    encoder.request_size(PictureSize(320, 180, 30))
                for packet in encoder.encode(stamped(n), n * 33):
                    tap.offer(packet, encoder.size.width, encoder.size.height,
                              encoder.params.extradata)

        # the tap was switched on mid-GOP: what it sends starts at a key frame
        await asyncio.to_thread(push, 0, 90)
        messages = await collect(viewer, 2)
        while messages[-1][:1] != b"I" or len(messages) == 1:
            messages += await collect(viewer, 1)
        *before, new_init = messages
        kinds = b"".join(m[:1] for m in before)
        assert kinds[:2] == b"IK" and set(kinds[2:]) <= {ord("F"), ord("K")}, kinds
        pictures = decoded(before[0][1:], [m[1:] for m in before[1:]])
        assert {(w, h) for w, h, _ in pictures} == {(640, 360)} and len(pictures) >= 40
        numbers = [n for _, _, n in pictures]  # every frame from the first key frame on
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))

        after = await collect(viewer, 40)
        assert after[0][:1] == b"K"
        pictures = decoded(new_init[1:], [m[1:] for m in after])
        assert {(w, h) for w, h, _ in pictures} == {(320, 180)} and len(pictures) >= 39
        assert [n for _, _, n in pictures] == list(range(numbers[-1] + 1,
                                                         numbers[-1] + 1 + len(pictures)))

        # a late viewer gets the current init segment, then waits for a key frame
        late = await hub.join()
        assert (await collect(late, 1))[0] == new_init
        await asyncio.to_thread(push, 90, 30)
        first = (await collect(late, 1))[0]
        assert first[:1] == b"K"

        await hub.leave(viewer)
        assert taps[-1] is tap  # one viewer left: the tap stays
        await hub.leave(late)
        assert taps[-1] is None  # nobody watches: the tap is closed
        encoder.close()
        await hub.close()

    asyncio.run(scenario())
    assert not [t for t in threading.enumerate() if t.name == "preview-tap"]
    # the hub's close ends the tap's connection cleanly: nothing logged as an error
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_bench_web_measures_one_viewer_against_none() -> None:
    """`edgelive bench web` on a real box (short): the relay carries every frame, and the
    supervisor's added CPU is within the goal."""
    from edgelive.bench.web import report, run

    result = run(seconds=3, runs=1, size="640x360", fps=30)
    print(report(result))
    assert result["fragments_per_s"][0] >= 25  # of 30 frames a second
    assert result["view_sup"][0] - result["idle_sup"][0] <= 5.0
