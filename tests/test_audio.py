"""Audio sources: AAC-sized fltp frames, pts in samples, real-time pacing, mute, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from edgelive.codes import Code
from edgelive.hw.audio import (
    FRAME_SAMPLES,
    NO_SOUND_DEVICE,
    TONE_HZ,
    MicError,
    UnsupportedSampleRate,
    open_audio,
    silence_alsa_errors,
    sound_cards,
)
from edgelive.pusher import Pusher
from tests.flvprobe import probe
from tests.servers import NginxRtmp
from tests.test_pusher_cli import codes, push
from tests.test_pusher_reconnect import make_pusher, pushers  # noqa: F401


def samples(frame: av.AudioFrame) -> np.ndarray:
    return frame.to_ndarray()


def dominant_hz(frames: list[av.AudioFrame], rate: int) -> float:
    signal = np.concatenate([samples(f)[0] for f in frames])
    spectrum = np.abs(np.fft.rfft(signal))
    return float(np.fft.rfftfreq(signal.size, 1 / rate)[spectrum.argmax()])


def test_tone_is_1khz_in_aac_frames_with_sample_pts() -> None:
    with open_audio("tone", 48000, 2) as source:
        frames = [source.read() for _ in range(8)]
    assert [f.pts for f in frames] == [i * FRAME_SAMPLES for i in range(8)]
    for f in frames:
        assert (f.samples, f.sample_rate, f.format.name, f.layout.name) == (
            FRAME_SAMPLES, 48000, "fltp", "stereo")
        assert f.time_base == Fraction(1, 48000)
    assert abs(dominant_hz(frames, 48000) - TONE_HZ) < 48000 / (8 * FRAME_SAMPLES)
    rms = float(np.sqrt(np.mean(np.concatenate([samples(f) for f in frames], axis=1) ** 2)))
    assert rms == pytest.approx(0.25 / np.sqrt(2), rel=0.02)


def test_mute_gives_silence_with_the_same_timing() -> None:
    with open_audio("tone", 16000, 1) as source:
        loud = source.read()
        source.mute = True
        quiet = [source.read() for _ in range(3)]
        source.mute = False
        back = source.read()
    assert np.abs(samples(loud)).max() > 0.2
    assert all(not samples(f).any() for f in quiet)
    assert np.abs(samples(back)).max() > 0.2
    assert [f.pts for f in (loud, *quiet, back)] == [i * FRAME_SAMPLES for i in range(5)]
    assert all(f.samples == FRAME_SAMPLES for f in quiet)


def test_silence_is_paced_in_real_time() -> None:
    with open_audio("silence", 48000, 1) as source:
        source.read()
        start = time.monotonic()
        frames = [source.read() for _ in range(15)]
        elapsed = time.monotonic() - start
    assert all(not samples(f).any() for f in frames)
    assert 0.9 <= elapsed / (15 * FRAME_SAMPLES / 48000) <= 1.6
    assert source.start_ms is not None and abs(source.start_ms - time.time() * 1000) < 5000


def test_a_stalled_reader_sees_a_gap_in_pts_not_a_burst() -> None:
    with open_audio("tone", 48000, 1) as source:
        first = source.read()
        time.sleep(0.3)  # ~14 frame periods
        late = source.read()
        start = time.monotonic()
        source.read()
        assert time.monotonic() - start > 0.005  # paced again, not catching up
    gap_s = (late.pts - first.pts) / 48000
    assert 0.25 <= gap_s <= 0.6


def test_frames_encode_as_aac() -> None:
    codec = av.CodecContext.create("aac", "w")
    codec.sample_rate, codec.layout, codec.format = 48000, "stereo", "fltp"
    codec.time_base = Fraction(1, 48000)
    codec.open()
    with open_audio("tone", 48000, 2) as source:
        packets = [p for _ in range(6) for p in codec.encode(source.read())]
    assert len(packets) >= 4 and all(p.size > 0 for p in packets)


@pytest.mark.parametrize("spec", ["tone", "silence", "auto", "hw:1,0"])
def test_a_rate_aac_cannot_carry_is_refused(spec: str) -> None:
    with pytest.raises(UnsupportedSampleRate, match="44000"):
        open_audio(spec, 44000, 2)


def test_three_channels_are_refused() -> None:
    with pytest.raises(MicError, match="3 channels"):
        open_audio("tone", 48000, 3)


def test_a_missing_alsa_device_is_a_mic_error() -> None:
    with pytest.raises(MicError, match=r"alsa:hw:9,0"):
        open_audio("hw:9,0", 48000, 2)


def test_alsa_capture_through_the_null_device() -> None:
    """ALSA's software "null" PCM: the real capture path without a sound card."""
    with open_audio("alsa:null", 16000, 1) as source:
        assert source.name == "alsa:null"
        frames = [source.read() for _ in range(2)]
        source.mute = True
        muted = source.read()
    assert [f.pts for f in (*frames, muted)] == [0, FRAME_SAMPLES, 2 * FRAME_SAMPLES]
    assert all((f.samples, f.format.name, f.sample_rate) == (FRAME_SAMPLES, "fltp", 16000)
               for f in frames)
    assert not samples(muted).any()


def test_auto_falls_back_to_silence_and_says_why() -> None:
    with open_audio("auto", 48000, 2) as source:
        frame = source.read()
        if not sound_cards():  # as on the CI machine: ALSA is not even opened
            assert (source.name, source.note) == ("silence", NO_SOUND_DEVICE)
            assert not samples(frame).any()
        elif source.name == "silence":  # cards, but no capture device
            assert "alsa:default" in source.note
            assert not samples(frame).any()
        else:
            assert source.name == "alsa:default" and source.note == ""
    assert frame.samples == FRAME_SAMPLES


def test_sound_cards_are_read_from_the_kernels_list(tmp_path: Path) -> None:
    cards = tmp_path / "cards"
    cards.write_text(" 0 [Headphones     ]: bcm2835_headpho - bcm2835 Headphones\n"
                     "                      bcm2835 Headphones\n"
                     " 1 [Device         ]: USB-Audio - USB PnP Sound Device\n")
    assert [line.split()[0] for line in sound_cards(cards)] == ["0", "1"]
    cards.write_text("--- no soundcards ---\n")
    assert sound_cards(cards) == []
    assert sound_cards(tmp_path / "absent") == []


def test_a_microphone_that_fails_to_open_is_1302_once_and_the_stream_keeps_silent_sound(
        nginx: NginxRtmp, pushers: list[Pusher],  # noqa: F811
        capfd: pytest.CaptureFixture[str]) -> None:
    pusher, rec = make_pusher(nginx.url("nomic"), **{"audio-device": "hw:9,0",
                                                      "audio-quality": "low"})
    pushers.append(pusher)
    pusher.start()
    rec.wait_for(Code.PUSH_EVT_PUSH_BEGIN)
    time.sleep(4.0)
    assert pusher.state == "pushing"  # the stream goes on
    pusher.stop()
    failed = [e for e in rec.events if e.code == Code.PUSH_ERR_OPEN_MIC_FAIL]
    assert len(failed) == 1, rec.codes()
    recording = nginx.recordings("nomic")[-1]
    result = probe(recording)
    assert result.stream("audio")["codec_name"] == "aac"
    sound = result.packet_times("audio")
    # 16 kHz AAC: 1024 samples a packet; most of the 4 s after 1002 carry sound
    assert len(sound) >= 0.7 * 4.0 * 16000 / 1024, len(sound)
    assert sound[-1] - sound[0] >= 3.0
    assert result.packet_times("video")[-1] >= 3.0
    with av.open(str(recording)) as container:
        pcm = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio=0)])
    assert pcm.size >= 3 * 16000 and float(np.abs(pcm).max()) < 1e-3
    assert "hw:9,0" in failed[0].msg and "silence" in failed[0].msg
    # said once, by the event: neither alsa-lib nor FFmpeg repeats it on stderr
    stderr = capfd.readouterr().err
    assert "ALSA lib" not in stderr and "audio device" not in stderr, stderr


def test_push_on_a_machine_without_a_sound_card_says_so_once_and_no_alsa_noise(
        nginx: NginxRtmp, tmp_path: Path) -> None:
    if sound_cards():
        pytest.skip("this machine has a sound card")
    config = tmp_path / "edgelive.toml"
    config.write_text('[pusher]\nsource = "testsrc"\nresolution = "320x180"\nfps = 15\n')
    rc, lines, stderr = push(nginx.url("nocard"), "--config", str(config), "--duration", "3")
    assert rc == 0, stderr
    assert "ALSA lib" not in stderr and "audio device" not in stderr, stderr
    assert stderr.count(NO_SOUND_DEVICE) == 1, stderr
    assert Code.PUSH_EVT_PUSH_BEGIN in codes(lines)
    assert Code.PUSH_ERR_OPEN_MIC_FAIL not in codes(lines)  # nothing was configured to fail
    assert probe(nginx.recordings("nocard")[-1]).packet_times("audio")


def test_alsa_errors_can_be_silenced_in_every_alsa_lib_of_the_process() -> None:
    """What the player calls before SDL opens the system's alsa-lib, the pusher before
    PyAV's bundled one: a missing device is reported by the caller, not by alsa-lib."""
    if sound_cards():
        pytest.skip("this machine has a sound card")
    assert silence_alsa_errors()
    probe_script = (
        "import sdl2\n"
        "from edgelive.hw.audio import silence_alsa_errors\n"
        "silence_alsa_errors()\n"
        "sdl2.SDL_InitSubSystem(sdl2.SDL_INIT_AUDIO)\n"
        "want = sdl2.SDL_AudioSpec(48000, sdl2.AUDIO_F32SYS, 2, 1024)\n"
        "print(sdl2.SDL_OpenAudioDevice(None, 0, want, None, 0))\n")
    run = subprocess.run([sys.executable, "-c", probe_script], capture_output=True,
                         text=True, timeout=30, env={**os.environ, "SDL_AUDIODRIVER": "alsa"})
    assert run.stdout.strip() == "0", run  # no default device: SDL says so
    assert "ALSA lib" not in run.stderr, run.stderr


def test_play_on_a_machine_without_a_sound_card_says_so_once_and_no_alsa_noise() -> None:
    """The player's speaker (SDL on the system's alsa-lib) is the demo's other source of
    `ALSA lib …` lines: one -6026 event says there is no sound, and stderr stays clean."""
    if sound_cards():
        pytest.skip("this machine has a sound card")
    run = subprocess.run(
        [sys.executable, "-m", "edgelive", "play", "rtmp://127.0.0.1:1/live/none",
         "--sink", "offscreen", "--duration", "2"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "SDL_VIDEODRIVER": "offscreen", "SDL_AUDIODRIVER": "alsa"})
    events = [json.loads(line) for line in run.stdout.splitlines()
              if line.startswith("{") and '"type":"event"' in line]
    assert [e["code"] for e in events].count(Code.AUDIO_DEVICE_FAIL) == 1, run.stdout
    assert "ALSA lib" not in run.stderr, run.stderr
