"""backup-src: played while src is unreachable (its fast reconnects failed), until src
shows a picture again (SPEC §4)."""

from __future__ import annotations

from collections.abc import Callable

from edgelive.codes import Code
from edgelive.events import EventLog
from edgelive.player.playback import Playback


class BackupSource:
    """Starts and stops the backup playback as src comes and goes."""

    def __init__(self, events: EventLog, start: Callable[[], Playback]) -> None:
        self._events = events
        self._start = start
        self.playback: Playback | None = None

    def follow(self, main: Playback | None, configured: bool, paused: bool) -> bool:
        """Start the backup when src is disconnected, stop it once src shows a picture;
        True when it started or stopped."""
        backup = self.playback
        if main is None or not configured:
            return False
        if backup is None and main.feed.state == "disconnected":
            self.playback = self._start()
            self._events.emit(Code.PLAY_BACKUP_ON, "src unreachable: playing backup-src")
            if paused:
                self.playback.pause()
            return True
        if backup is not None and main.active and main.picture is not None:
            self.stop()
            self._events.emit(Code.PLAY_BACKUP_OFF, "src is back")
            return True
        return False

    @property
    def showing(self) -> bool:
        """The backup has a picture, so it is what the screen shows."""
        return self.playback is not None and self.playback.picture is not None

    def stop(self) -> None:
        if self.playback is not None:
            self.playback.feed.stop()
            self.playback = None
