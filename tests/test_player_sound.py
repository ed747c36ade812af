"""sound-mode picks the output: speaker = HDMI, ear = the 3.5 mm jack (SPEC §2); the
netstatus reports how loud it plays (audioVolume, the seed's bindaudiovolumenotify).

This machine has no sound card, so ALSA is given one made of configuration: an ALSA config
(ALSA_CONFIG_PATH) names two outputs the way a Pi's ALSA does ("sysdefault:CARD=…"), and
each writes what it plays into a FIFO the test reads at about real-time pace. The player
worker runs with SDL's ALSA driver, as on a box.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.servers import NginxRtmp
from tests.test_player_e2e import ffmpeg_push, stop
from tests.test_player_worker import WorkerProc, workers  # noqa: F401

OUTPUTS = ("HDMI", "Headphones")
ALSA_CONFIG = """
pcm.null {{ type null }}
pcm.sysdefault {{
    @args [ CARD ]
    @args.CARD {{ type string }}
    type file
    slave.pcm "null"
    file {{ @func concat strings [ "{dir}/" $CARD ".pcm" ] }}
    format "raw"
    hint {{
        show on
        description {{ @func concat strings [ "bcm2835 " $CARD ] }}
    }}
}}
pcm."sysdefault:HDMI" {{ type null hint.show on }}
pcm."sysdefault:Headphones" {{ type null hint.show on }}
"""
BYTES_PER_SECOND = 48000 * 2 * 4
"""The fastest a device takes float32 samples (48 kHz stereo); the FIFO reader's pace."""


class Output:
    """One fake output: what was written to its FIFO, read as float32 samples."""

    def __init__(self, fifo: Path) -> None:
        self.fifo = fifo
        os.mkfifo(fifo)
        self.samples = 0
        self._squares = 0.0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        fd = os.open(self.fifo, os.O_RDONLY)  # until ALSA opens the output
        start, total = time.monotonic(), 0
        while data := os.read(fd, 8192):
            total += len(data)
            samples = np.frombuffer(data[:len(data) // 4 * 4], np.float32)
            self._squares += float(np.square(samples, dtype=np.float64).sum())
            self.samples += samples.size
            time.sleep(max(0.0, start + total / BYTES_PER_SECOND - time.monotonic()))
        os.close(fd)

    @property
    def rms(self) -> float:
        return (self._squares / self.samples) ** 0.5 if self.samples else 0.0

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a reader still waiting for a writer is let go
            os.close(os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK))


def latest_volume(w: WorkerProc) -> int:
    return [line for line in w.lines if line["type"] == "netstatus"][-1]["audioVolume"]


@pytest.mark.parametrize(("sound_mode", "output"), [("ear", "Headphones"),
                                                    ("speaker", "HDMI")])
def test_sound_mode_plays_the_stream_on_its_output_only(
        sound_mode: str, output: str, tmp_path: Path, nginx: NginxRtmp,
        workers) -> None:  # noqa: F811
    config = tmp_path / "asound.conf"
    config.write_text(ALSA_CONFIG.format(dir=tmp_path))
    outputs = {name: Output(tmp_path / f"{name}.pcm") for name in OUTPUTS}
    pusher = ffmpeg_push(nginx.url("cam"))  # with a 440 Hz tone
    try:
        w = WorkerProc({"src": nginx.url("cam"), "autoplay": True, "mode": "RTC",
                        "sink": "offscreen", "screen-size": "320x180",
                        "sound-mode": sound_mode},
                       env={"SDL_AUDIODRIVER": "alsa", "ALSA_CONFIG_PATH": str(config)})
        workers.append(w)
        w.wait_line({"type": "event", "code": 2004}, timeout=20)
        time.sleep(2.0)
        playing = w.command("resume")["result"]
        assert playing["audible"] is True
        heard = outputs[output].samples, outputs[output].rms
        assert 8 <= latest_volume(w) <= 20  # the tone's peak: 0.125 of full scale
        w.send({"type": "config", "config": {"muted": True}})
        time.sleep(2.5)
        assert latest_volume(w) == 0  # muted: nothing is played
    finally:
        stop(pusher)
        for o in outputs.values():
            o.close()
    other = next(name for name in OUTPUTS if name != output)
    assert heard[0] > 48000  # over a second of sound
    assert heard[1] > 0.03, heard  # the tone (0.125 peak), not silence
    assert outputs[other].samples == 0, f"nothing goes to {other}"
