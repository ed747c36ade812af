"""The player following the display: auto-pause and background-mute (SPEC §2).

auto-pause-if-navigate pauses while the display is unplugged, auto-pause-if-open-native
while it is plugged but off (standby); background-mute silences sound while it is dark.
Reports arrive from the DisplayWatcher's thread; the render loop applies them.
"""

from __future__ import annotations

from edgelive.codes import Code
from edgelive.config.schema import PlayerConfig
from edgelive.events import EventLog
from edgelive.hw.display_status import DisplayStatus


class DisplayFollower:
    """The latest display status and the auto-pause it asks for."""

    def __init__(self, events: EventLog) -> None:
        self._events = events
        self.status: DisplayStatus | None = None
        """The latest report (set from any thread); None when the display is unknown."""
        self._seen: DisplayStatus | None = None
        self.paused = False
        """The display's state asks for a pause."""

    def reapply(self) -> None:
        """Decide again from the current status (the config changed)."""
        self._seen = None

    def follow(self, config: PlayerConfig) -> bool:
        """Take a new status: emit display on/off, update `paused`; True when pause or
        mute may have to change."""
        status = self.status
        if status is None or status == self._seen:
            return False
        was, self._seen = self._seen, status
        lit = status.plugged and status.on
        if was is not None and (was.plugged and was.on) != lit:
            self._events.emit(Code.DISPLAY_ON if lit else Code.DISPLAY_OFF,
                              "display " + ("on" if lit else "unplugged" if not status.plugged
                                            else "off"))
        self.paused = ((not status.plugged and config.auto_pause_if_navigate)
                       or (status.plugged and not status.on
                           and config.auto_pause_if_open_native))
        return True

    def audible(self, config: PlayerConfig) -> bool:
        status = self.status
        dark = status is not None and not (status.plugged and status.on)
        return not (config.muted or (config.background_mute and dark))
