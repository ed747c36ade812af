"""Sound out through SDL audio: the HDMI output (sound-mode speaker) or the 3.5 mm jack (ear).

On a Raspberry Pi the two are separate ALSA devices whose names say which is which; on a
PC whatever default device exists is used. Samples are queued (SDL_QueueAudio), so the
player decides timing; muting queues silence, keeping the device's clock running. The
device is (re)opened at the stream's rate and channel count with float samples, the
decoder's own format, so the player never resamples; SDL converts where a device must.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from edgelive.hw.audio import silence_alsa_errors

RATE = 48000
CHANNELS = 2
_DEVICE_HINTS = {"speaker": ("hdmi",), "ear": ("headphone", "jack", "analog")}
_SDL_AUDIO = threading.RLock()
"""SDL's audio set-up (init, open, close, quit) is not thread-safe: two players starting
at once (main and picture-in-picture, or two in one process) would fail one of them
(-6026) at random."""


def pick_device(names: list[str], sound_mode: str) -> str | None:
    """The output named like `sound_mode`'s connector, or None for the default device."""
    for hint in _DEVICE_HINTS.get(sound_mode, ()):
        for name in names:
            if hint in name.lower():
                return name
    return None


class Speaker:
    """An SDL float32 audio output with a queue and a mute switch."""

    def __init__(self, sound_mode: str = "speaker", muted: bool = False) -> None:
        import sdl2

        self._sdl = sdl2
        silence_alsa_errors()  # a box without a sound card says so once (-6026), not ten times
        self._dev = 0
        self._format = (0, 0)
        self._bytes_per_second = RATE * CHANNELS * 4
        with _SDL_AUDIO:
            if sdl2.SDL_InitSubSystem(sdl2.SDL_INIT_AUDIO) != 0:
                raise RuntimeError(f"SDL audio: {sdl2.SDL_GetError().decode()}")
            names = [sdl2.SDL_GetAudioDeviceName(i, 0).decode(errors="replace")
                     for i in range(max(0, sdl2.SDL_GetNumAudioDevices(0)))]
            self.device_name = pick_device(names, sound_mode)
            try:
                self._open(RATE, CHANNELS)
            except RuntimeError:
                sdl2.SDL_QuitSubSystem(sdl2.SDL_INIT_AUDIO)
                raise
        self.muted = muted

    def _open(self, rate: int, channels: int) -> None:
        with _SDL_AUDIO:
            sdl2 = self._sdl
            if self._dev:
                sdl2.SDL_CloseAudioDevice(self._dev)
            want = sdl2.SDL_AudioSpec(rate, sdl2.AUDIO_F32SYS, channels, 1024)
            have = sdl2.SDL_AudioSpec(0, 0, 0, 0)
            self._dev = sdl2.SDL_OpenAudioDevice(
                self.device_name.encode() if self.device_name else None, 0,
                ctypes.byref(want), ctypes.byref(have), 0)
            if self._dev == 0:
                raise RuntimeError(f"SDL audio device: {sdl2.SDL_GetError().decode()}")
            self._format = (rate, channels)
            self._bytes_per_second = rate * channels * 4
            sdl2.SDL_PauseAudioDevice(self._dev, 0)

    def queue(self, samples: np.ndarray, rate: int = RATE) -> None:
        """Queue float32 samples, shape (n, channels), at `rate` Hz (silence of the same
        length when muted); a new rate or channel count reopens the device."""
        channels = samples.shape[1] if samples.ndim == 2 else 1
        if (rate, channels) != self._format and samples.size:
            self._open(rate, channels)
        data = np.zeros_like(samples) if self.muted else np.ascontiguousarray(samples,
                                                                              np.float32)
        if self._dev and data.size:
            address = data.__array_interface__["data"][0]  # cheaper than data.ctypes
            self._sdl.SDL_QueueAudio(self._dev, address, data.nbytes)

    @property
    def queued_seconds(self) -> float:
        if not self._dev:
            return 0.0
        return self._sdl.SDL_GetQueuedAudioSize(self._dev) / self._bytes_per_second

    def close(self) -> None:
        with _SDL_AUDIO:
            if self._dev:
                self._sdl.SDL_CloseAudioDevice(self._dev)
                self._dev = 0
                self._sdl.SDL_QuitSubSystem(self._sdl.SDL_INIT_AUDIO)

    def __enter__(self) -> Speaker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
