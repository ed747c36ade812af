"""What the player's screen shows, as sink layers: picture or slate, status text, PiP, debug.

Pure composition: the player hands in what it plays and its state, this returns the
layers; the sink does the drawing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgelive.config.schema import PlayerConfig
from edgelive.hw.display import Layer
from edgelive.player.render import main_box, picture_layer, pip_box, slate_layer, text_layer

SLATE_TEXT = {"disconnected": "STREAM UNAVAILABLE - RETRYING", "ended": "STREAM ENDED"}


@dataclass(frozen=True)
class ScreenState:
    """Everything that decides what the screen shows; equal states need no redraw."""

    feed_state: str
    """The shown stream's feed state, or "idle" with no stream."""
    has_picture: bool
    fullscreen: bool
    paused: bool
    debug_ts: int | None
    config_key: tuple[Any, ...]


def screen_state(config: PlayerConfig, feed_state: str, has_picture: bool, fullscreen: bool,
                 paused: bool, netstatus: dict[str, Any]) -> ScreenState:
    key = (config.object_fit, config.orientation, tuple(config.layout),
           config.picture_in_picture_mode, config.debug)
    return ScreenState(feed_state, has_picture, fullscreen, paused,
                       netstatus.get("ts") if config.debug else None, key)


def compose(config: PlayerConfig, screen: tuple[int, int], state: ScreenState,
            picture: Any, pip_picture: Any, debug_lines: list[str]) -> list[Layer]:
    """Layers, bottom first: the main picture (or a slate), PiP, then the debug overlay.

    The last picture stays up while reconnecting (with a note) and while paused; a
    disconnected stream or one that never showed a picture gets a slate.
    """
    box = main_box(screen, config.layout, state.fullscreen)
    layers: list[Layer] = []
    if picture is not None and state.feed_state != "disconnected":
        layers.append(picture_layer("main", picture, box, config.object_fit,
                                    config.orientation))
        if state.feed_state == "reconnecting" and not state.paused:
            layers.append(text_layer("status", ["RECONNECTING..."], box, "center", 3))
    elif state.feed_state != "idle":
        layers.extend(slate_layer("slate", box,
                                  SLATE_TEXT.get(state.feed_state, "CONNECTING...")))
    if pip_picture is not None:
        layers.append(picture_layer("pip", pip_picture,
                                    pip_box(screen, config.picture_in_picture_mode),
                                    "contain", config.orientation))
    if config.debug:
        layers.append(text_layer("debug", debug_lines, box))
    return layers


def debug_lines(netstatus: dict[str, Any], recent: list[str]) -> list[str]:
    n = netstatus
    return [f"{n.get('videoWidth', 0)}x{n.get('videoHeight', 0)} "
            f"{n.get('videoFPS', 0)}FPS {n.get('videoBitrate', 0)}KBPS",
            f"CACHE {n.get('cache', 0)}S JITTER {n.get('netJitter', 0)}MS "
            f"DROP {n.get('droppedFrames', 0)}", *recent]
