"""Sound that starts after the pictures: a publisher whose first audio packet reaches the
server after the player opened the stream (a box that starts its camera and its player at
boot, its microphone a moment later). The player's speaker writes to SDL's disk driver, so
the test measures the sound the device would play."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from edgelive.codes import Code
from edgelive.config.presets import AudioPlan, VideoPlan
from edgelive.hw.speaker import Speaker
from edgelive.media.encode import AudioEncoder, PyAvVideoEncoder
from edgelive.media.rtmp_out import RtmpOutput
from tests.servers import NginxRtmp
from tests.test_player_e2e import play, players  # noqa: F401

VIDEO = VideoPlan(320, 180, 25, 12, 300, 800, True)  # a key frame every 0.48 s
SOUND = AudioPlan(48000, 2, 96)  # the speaker's own format: the device is never reopened
SOUND_AFTER = 2.0
"""Seconds of pictures the publisher sends before its first sound."""
TONE = 0.25  # peak of the 440 Hz sine, full scale 1: RMS 0.18


class LateSoundPublisher:
    """The pusher's encoders and RTMP output in a thread: pictures from the start (noise,
    so the first key frame alone fills the player's probe), a sine only from `SOUND_AFTER`
    s on. `sound_began` is the wall-clock time (ms) the first sound was sent."""

    def __init__(self, url: str) -> None:
        self.sound_began = 0
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()
        assert self.connected.wait(10), "the publisher never connected"

    def _run(self, url: str) -> None:
        video, audio = PyAvVideoEncoder(VIDEO), AudioEncoder(SOUND)
        output = RtmpOutput(video.params, audio.params)
        output.open(url)
        self.connected.set()
        rng = np.random.default_rng(1)
        chunk = SOUND.sample_rate // 50  # 20 ms
        start, frames, sound_ms = time.monotonic(), 0, 0
        try:
            while not self._stop.is_set():
                now_ms = (time.monotonic() - start) * 1000
                while frames * 1000 // VIDEO.fps <= now_ms:
                    yuv = rng.integers(0, 255, (VIDEO.height * 3 // 2, VIDEO.width),
                                       dtype=np.uint8)
                    for packet in video.encode(av.VideoFrame.from_ndarray(yuv, "yuv420p"),
                                               frames * 1000 // VIDEO.fps):
                        output.mux(packet, True)
                    frames += 1
                while now_ms >= SOUND_AFTER * 1000 and sound_ms <= now_ms:
                    n = np.arange(sound_ms * 48, sound_ms * 48 + chunk)
                    wave = (TONE * np.sin(2 * np.pi * 440 * n / SOUND.sample_rate))
                    frame = av.AudioFrame.from_ndarray(
                        np.repeat(wave.astype(np.float32)[None, :], 2, axis=0),
                        format="fltp", layout="stereo")
                    frame.sample_rate = SOUND.sample_rate
                    for packet in audio.encode(frame, sound_ms):
                        output.mux(packet, False)
                        self.sound_began = self.sound_began or time.time_ns() // 1_000_000
                    sound_ms += 20
                time.sleep(0.005)
        finally:
            output.close()
            video.close()
            audio.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def rms(path: Path, since: int) -> tuple[float, int]:
    """RMS and count of the float32 samples the device played after byte `since`."""
    data = path.read_bytes()[since - since % 4:]
    samples = np.frombuffer(data[:len(data) - len(data) % 4], dtype=np.float32)
    return float(np.sqrt(np.mean(np.square(samples)))) if samples.size else 0.0, samples.size


@pytest.mark.parametrize("mode", ["RTC", "live"])
def test_sound_that_starts_after_the_first_picture_is_played(
        mode: str, nginx: NginxRtmp, players, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "speaker.raw"
    monkeypatch.setenv("SDL_AUDIODRIVER", "disk")
    monkeypatch.setenv("SDL_DISKAUDIOFILE", str(out))
    publisher = LateSoundPublisher(nginx.url("late"))
    try:
        p = play(players, nginx.url("late"), mode=mode, speaker=lambda: Speaker("speaker"))
        begin = p.wait_for(Code.PLAY_EVT_PLAY_BEGIN)
        deadline = time.monotonic() + SOUND_AFTER + 10
        while not publisher.sound_began and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 0 < begin.ts < publisher.sound_began, "the player opened after the sound began"
        level, count = 0.0, 0
        while time.monotonic() < deadline and level <= 0.05:  # until the sound is heard
            mark = out.stat().st_size
            time.sleep(0.5)
            level, count = rms(out, mark)
        heard = time.time() - publisher.sound_began / 1000
        mark = out.stat().st_size
        time.sleep(1.0)
        level, count = rms(out, mark)
        print(f"{mode}: sound began {publisher.sound_began - begin.ts} ms after the first "
              f"picture, heard {heard:.1f} s later; then RMS {level:.3f} over {count} samples")
        assert count > 48000 and level > 0.12  # the sine throughout (RMS 0.18), not silence
        assert heard < 5.0  # within the live cache and one look for the track (0.5 s)
        assert p.player is not None
        time.sleep(1.1)  # a netstatus second of its own
        assert p.player.netstatus["audioBitrate"] > 0, p.player.netstatus
        # no second start of the stream: the sound joins the same playback
        assert [c for c in p.codes() if c in (2001, 2002, 2003, 2004)] == [2001, 2002, 2003,
                                                                           2004]
        assert Code.PLAY_WARNING_RECONNECT not in p.codes()
    finally:
        publisher.stop()
