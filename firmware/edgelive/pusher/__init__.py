"""The pusher worker: camera → H.264/AAC → RTMP (SPEC §3)."""

from edgelive.pusher.worker import CommandError, Pusher

__all__ = ["CommandError", "Pusher"]
