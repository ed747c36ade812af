"""Audio sources for the pusher: the microphone over ALSA, a 1 kHz tone, silence.

Every source hands out fltp `av.AudioFrame`s of one AAC frame (1024 samples) at the
plan's rate and channels, with pts counted in samples (time_base 1/rate) and continuous
across mute. Generated sources are paced in real time by a monotonic clock; ALSA is paced
by the sound card. `start_ms` is the wall-clock time of pts 0, for lining audio up with
the camera's capture times.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections import deque
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol, Self

import av
import av.logging
import numpy as np

from edgelive.hw.camera import Pacer, now_ms

AAC_RATES = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000,
                       11025, 8000, 7350})
FRAME_SAMPLES = 1024  # one AAC frame
LAYOUTS = {1: "mono", 2: "stereo"}
TONE_HZ = 1000
TONE_LEVEL = 0.25  # -12 dBFS
ALSA_TIMEOUT_S = 3.0
# PyAV's wheels bundle an alsa-lib that looks for its configuration under the build
# machine's prefix; without this even "default" and "hw:1,0" are unknown PCMs.
SYSTEM_ALSA_DIR = "/usr/share/alsa"
SOUND_CARDS = Path("/proc/asound/cards")
NO_SOUND_DEVICE = "no sound device on this machine: the stream carries silence"


class MicError(Exception):
    """The microphone could not be opened or read; the message names the device."""


class UnsupportedSampleRate(MicError):
    """Not a sample rate AAC can carry."""


class AudioSource(Protocol):
    name: str
    sample_rate: int
    channels: int
    mute: bool  # deliver silence with the same timing
    note: str  # why "auto" chose this source, "" otherwise
    start_ms: int | None  # wall-clock ms of pts 0, once the first frame was read

    def open(self) -> None: ...
    def read(self) -> av.AudioFrame: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...


class BaseAudio:
    """Validation, pts bookkeeping and mute shared by all sources."""

    name = "audio"

    def __init__(self, sample_rate: int, channels: int) -> None:
        if sample_rate not in AAC_RATES:
            raise UnsupportedSampleRate(f"{sample_rate} Hz is not an AAC sample rate")
        if channels not in LAYOUTS:
            raise MicError(f"{channels} channels: only mono and stereo are supported")
        self.sample_rate, self.channels = sample_rate, channels
        self.mute = False
        self.note = ""
        self.start_ms: int | None = None
        self._pts = 0
        self._opened = False
        self._zeros = np.zeros((channels, FRAME_SAMPLES), dtype=np.float32)

    def _check_open(self) -> None:
        if not self._opened:
            raise MicError(f"{self.name}: not open")

    def _silence(self) -> av.AudioFrame:
        # from_ndarray copies, so one zero buffer serves every frame.
        return av.AudioFrame.from_ndarray(self._zeros, format="fltp",
                                          layout=LAYOUTS[self.channels])

    def _emit(self, frame: av.AudioFrame) -> av.AudioFrame:
        if self.start_ms is None:
            self.start_ms = now_ms()
        frame.sample_rate = self.sample_rate
        frame.time_base = Fraction(1, self.sample_rate)
        frame.pts = self._pts
        self._pts += frame.samples
        return frame

    def close(self) -> None:
        self._opened = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SilenceSource(BaseAudio):
    """Silence in real time: the stream keeps an audio track without a microphone."""

    name = "silence"

    def open(self) -> None:
        self._pacer = Pacer(self.sample_rate / FRAME_SAMPLES)
        self._opened = True

    def read(self) -> av.AudioFrame:
        self._check_open()
        skipped = self._pacer.skipped
        self._pacer.wait()
        # Slots the reader missed are a gap in the timeline, so pts keeps wall-clock time.
        self._pts += (self._pacer.skipped - skipped) * FRAME_SAMPLES
        return self._emit(self._silence() if self.mute else self._generate())

    def _generate(self) -> av.AudioFrame:
        return self._silence()


class ToneSource(SilenceSource):
    """A continuous 1 kHz sine: audible, and easy to find again after AAC."""

    name = "tone"

    def _generate(self) -> av.AudioFrame:
        n = np.arange(self._pts % self.sample_rate, self._pts % self.sample_rate + FRAME_SAMPLES)
        wave = (TONE_LEVEL * np.sin(2 * np.pi * TONE_HZ * n / self.sample_rate))
        data = np.repeat(wave.astype(np.float32)[None, :], self.channels, axis=0)
        return av.AudioFrame.from_ndarray(data, format="fltp", layout=LAYOUTS[self.channels])


def _use_system_alsa_config() -> None:
    if os.path.isdir(SYSTEM_ALSA_DIR):
        os.environ.setdefault("ALSA_CONFIG_DIR", SYSTEM_ALSA_DIR)


class AlsaSource(BaseAudio):
    """A capture device through PyAV's ALSA input, resampled to fltp AAC-sized frames."""

    def __init__(self, device: str, sample_rate: int, channels: int) -> None:
        super().__init__(sample_rate, channels)
        self.device = device
        self.name = f"alsa:{device}"
        self._container: Any = None
        self._frames: Any = None
        self._ready: deque[av.AudioFrame] = deque()

    def open(self) -> None:
        _use_system_alsa_config()
        silence_alsa_errors()  # a failure is reported once, as MicError
        options = {"sample_rate": str(self.sample_rate), "channels": str(self.channels)}
        try:
            # FFmpeg's line about a failure is in its exception ("last error log"): not
            # on stderr a second time.
            with av.logging.Capture():
                self._container = av.open(self.device, format="alsa", options=options,
                                          timeout=ALSA_TIMEOUT_S)
            self._frames = self._container.decode(audio=0)
        except (av.FFmpegError, OSError) as exc:
            self.close()
            raise MicError(f"{self.name}: cannot open ({exc})") from exc
        self._resampler = av.AudioResampler(format="fltp", layout=LAYOUTS[self.channels],
                                            rate=self.sample_rate, frame_size=FRAME_SAMPLES)
        self._opened = True

    def read(self) -> av.AudioFrame:
        self._check_open()
        while not self._ready:
            try:
                captured = next(self._frames)
            except StopIteration:
                raise MicError(f"{self.name}: capture ended") from None
            except (av.FFmpegError, OSError) as exc:
                raise MicError(f"{self.name}: capture failed ({exc})") from exc
            captured.pts = None  # our own sample count is the timeline
            self._ready.extend(self._resampler.resample(captured))
        frame = self._ready.popleft()
        return self._emit(self._silence() if self.mute else frame)

    def close(self) -> None:
        super().close()
        if self._container is not None:
            self._container.close()
            self._container = self._frames = None


_AlsaErrorHandler = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                                     ctypes.c_int, ctypes.c_char_p)
_DROP_ALSA_ERROR = _AlsaErrorHandler(lambda *args: None)
"""Kept for the life of the process: alsa-lib calls it whenever it has an error to say."""


def _alsa_libraries() -> list[str]:
    """The alsa-libs this process uses: the system's (SDL audio loads it) and the copy
    bundled in PyAV's wheel (its ALSA input device), which is a library of its own."""
    bundled = Path(av.__file__).parent.parent / "av.libs"
    found = [str(path) for path in sorted(bundled.glob("libasound*.so*"))]
    system = ctypes.util.find_library("asound")
    return found + ([system] if system else [])


def silence_alsa_errors() -> bool:
    """Stop alsa-lib printing its errors to stderr; True if a library took the handler.

    Opening a device that does not exist makes alsa-lib write lines such as `ALSA lib …
    Unknown PCM default` straight to stderr, past any logging, ten of them without a sound
    card; the caller still gets the failure and says it once, in its own words."""
    silenced = False
    for name in _alsa_libraries():
        try:
            ctypes.CDLL(name).snd_lib_error_set_handler(_DROP_ALSA_ERROR)
        except (OSError, AttributeError):
            continue
        silenced = True
    return silenced


def sound_cards(cards: Path = SOUND_CARDS) -> list[str]:
    """The sound cards the kernel has (one line each), [] when there is none."""
    try:
        text = cards.read_text()
    except OSError:  # no ALSA in the kernel at all
        return []
    return [line for line in text.splitlines() if line[:3].strip().isdigit()]


def open_audio(spec: str, sample_rate: int, channels: int) -> AudioSource:
    """An opened source for the config's audio device: "auto" (ALSA default, else silence
    with the reason in `note`), "none"/"silence", "tone", or an ALSA name ("hw:1,0")."""
    source: AudioSource
    if spec in ("none", "silence"):
        source = SilenceSource(sample_rate, channels)
    elif spec == "tone":
        source = ToneSource(sample_rate, channels)
    elif spec == "auto" and not sound_cards():
        # Opening ALSA's "default" here would only make alsa-lib print ten lines of
        # configuration errors to stderr; the reason is said once, by the caller.
        source = SilenceSource(sample_rate, channels)
        source.note = NO_SOUND_DEVICE
    elif spec == "auto":
        try:
            return open_audio("default", sample_rate, channels)
        except UnsupportedSampleRate:
            raise
        except MicError as exc:
            source = SilenceSource(sample_rate, channels)
            source.note = f"no microphone, sending silence: {exc}"
    else:
        source = AlsaSource(spec.removeprefix("alsa:"), sample_rate, channels)
    source.open()
    return source

