"""Is the HDMI display there and on? Read from the DRM connectors in sysfs (SPEC §2).

The seed's auto-pause-if-navigate / auto-pause-if-open-native map to "the display was
unplugged" / "the display is off (standby)". The kernel shows both for every connector:
`/sys/class/drm/card0-HDMI-A-1/status` is `connected`/`disconnected`, `dpms` is
`On`/`Standby`/`Suspend`/`Off` — the same values pykms reads through DRM properties, but
readable without taking the DRM master. A `DisplayWatcher` polls them in its own thread
(every 2 s, off the render thread) and reports changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DRM_ROOT = Path("/sys/class/drm")
POLL_INTERVAL = 2.0
VIDEO_CONNECTORS = ("HDMI", "DSI", "DPI", "Composite", "DP", "eDP", "VGA", "DVI")


@dataclass(frozen=True)
class DisplayStatus:
    plugged: bool
    """A display is connected to one of the video connectors."""
    on: bool
    """A connected display is powered on (DPMS On)."""


def read_status(root: Path = DRM_ROOT) -> DisplayStatus | None:
    """The connectors' status, or None when this machine shows none (nothing to watch)."""
    connectors = [d for d in sorted(root.glob("card*-*"))
                  if d.name.split("-", 1)[1].startswith(VIDEO_CONNECTORS)
                  and (d / "status").is_file()]
    if not connectors:
        return None
    plugged = on = False
    for connector in connectors:
        if _read(connector / "status") != "connected":
            continue
        plugged = True
        dpms = _read(connector / "dpms")
        on = on or dpms in ("On", "")  # no dpms file: the driver cannot blank it
    return DisplayStatus(plugged, on)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


class DisplayWatcher:
    """Polls `read_status` every `interval` s; calls `on_change` with each new status.

    The first status is reported right after `start()`. Nothing is reported on a machine
    without DRM connectors. `stop()` is safe twice.
    """

    def __init__(self, on_change: Callable[[DisplayStatus], None], root: Path = DRM_ROOT,
                 interval: float = POLL_INTERVAL) -> None:
        self._on_change = on_change
        self._root = root
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.status: DisplayStatus | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="display-watch",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(self._interval + 1)

    def _run(self) -> None:
        while True:
            status = read_status(self._root)
            if status is not None and status != self.status:
                self.status = status
                self._on_change(status)
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> DisplayWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
