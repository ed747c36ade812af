"""The one configuration schema: sections, the seed's key names, defaults and doc text.

Keys keep the WeChat `live-pusher`/`live-player` spelling (`min-bitrate`, `object-fit`, …)
so a fleet written against the seed reads naturally; Python code uses the snake_case
attribute names. Every model forbids unknown keys, so a typo is an error with a location
instead of a silently ignored setting. `docs/config.md` is generated from this file.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

_RESOLUTION_RE = re.compile(r"^\d{2,4}x\d{2,4}$")
_MD5_RE = re.compile(r"^[0-9a-fA-F]{32}$")


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class Section(BaseModel):
    """Base of every section: seed-style kebab-case keys, unknown keys rejected."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=_kebab,
        populate_by_name=True,
        validate_assignment=True,
        frozen=False,
    )


class Reconnect(Section):
    attempts: int = Field(3, ge=1, le=20, description="Fast reconnect attempts before the "
                          "NET_DISCONNECT error (-1307 / -2301); the seed uses 3.")
    first_delay: float = Field(0.5, gt=0, le=1.0, description="Delay before the first "
                               "reconnect attempt, seconds (≤ 1 s).")
    max_delay: float = Field(60.0, ge=1, le=3600, description="Cap of the exponential "
                             "backoff once the fast attempts are spent, seconds.")
    give_up: bool = Field(False, description="Stop after the fast attempts instead of "
                          "retrying forever with backoff (PUSH/PLAY_RETRY_SCHEDULED).")


class PusherConfig(Section):
    url: str = Field("", description="Push URL, rtmp:// or rtmps://; the last path segment "
                     "is the stream key and is redacted in every report.")
    mode: Literal["SD", "HD", "FHD", "RTC"] = Field("RTC", description="Preset: SD 300–800 "
                                                    "kbps 640x360, HD 600–1200 960x540, FHD "
                                                    "600–1800 1280x720, RTC 200–1000 low "
                                                    "latency (no B-frames, 1 s GOP).")
    autopush: bool = Field(False, description="Start pushing when the box starts.")
    muted: bool = Field(False, description="Send silence (the stream keeps its audio track).")
    enable_camera: bool = Field(True, description="false: push the waiting image instead of "
                                "the camera.")
    auto_focus: bool = Field(True, description="Continuous autofocus on a Pi camera that has "
                             "it (Camera Module 3). V4L2 cameras keep their own focus "
                             "setting: false is not applied to them, and the log says so.")
    orientation: Literal["vertical", "horizontal"] = Field(
        "horizontal", description="Output orientation; horizontal by default (camera modules "
        "are landscape).")
    aspect: Literal["9:16", "3:4"] = Field("9:16", description="Short:long side ratio of the "
                                           "output picture.")
    zoom: bool = Field(False, description="2x digital zoom (centre crop).")
    device_position: Literal["front", "back"] = Field(
        "front", description="Which of two cameras to use: front = `source`, back = "
        "`back-source`.")
    beauty: int = Field(0, ge=0, le=9, description="Denoise strength 0–9.")
    whiteness: int = Field(0, ge=0, le=9, description="Brightness lift 0–9.")
    min_bitrate: int | None = Field(None, ge=50, le=20000, description="Lowest video "
                                    "bitrate, kbps (default: the mode's preset).")
    max_bitrate: int | None = Field(None, ge=50, le=20000, description="Highest video "
                                    "bitrate, kbps (default: the mode's preset).")
    audio_quality: Literal["low", "high"] = Field("low", description="low: 16 kHz mono "
                                                  "speech; high: 48 kHz stereo.")
    waiting_image: str = Field("", description="Picture pushed while paused, private or "
                               "without camera: file path or http(s) URL; empty = built-in "
                               "slate.")
    waiting_image_hash: str = Field("", description="MD5 of the waiting image; on mismatch "
                                    "an error event is sent and the slate is used.")
    background_mute: bool = Field(False, description="Mute the microphone while the "
                                  "waiting image is shown.")
    debug: bool = Field(False, description="Burn a small stats overlay into the video.")
    # -- box-specific keys
    source: str = Field("auto", description="Camera: auto | picamera2 | testsrc | a V4L2 "
                        "device such as /dev/video0 | an image file | a video file (looped).")
    back_source: str = Field("", description="Second camera used when device-position = "
                             "back (same forms as `source`).")
    encoder: Literal["auto", "hardware", "software"] = Field(
        "auto", description="H.264 encoder: auto picks the board's hardware encoder when it "
        "has one.")
    resolution: str = Field("", description="Explicit output size WIDTHxHEIGHT; empty = from "
                            "mode, orientation and aspect.")
    fps: int = Field(30, ge=1, le=60, description="Frames per second.")
    gop: float | None = Field(None, gt=0, le=10, description="Key-frame interval, seconds "
                              "(default: 1 in RTC mode, 2 otherwise).")
    rotation: Literal[0, 90, 180, 270] = Field(0, description="Rotate the camera picture "
                                               "(mounting), degrees clockwise.")
    audio_device: str = Field("auto", description="auto | none (silence) | tone (test "
                              "tone) | an ALSA device such as hw:1,0.")
    waiting_timeout: int = Field(180, ge=1, le=86400, description="Seconds the waiting image "
                                 "is pushed before the push stops (5000).")
    reconnect: Reconnect = Field(default_factory=Reconnect)

    @field_validator("url")
    @classmethod
    def _push_url(cls, v: str) -> str:
        if v and urlsplit(v).scheme not in ("rtmp", "rtmps"):
            raise ValueError("must be an rtmp:// or rtmps:// URL")
        if v and not urlsplit(v).hostname:
            raise ValueError("has no host")
        return v

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, v: str) -> str:
        if v and not _RESOLUTION_RE.match(v):
            raise ValueError("must look like 1280x720")
        return v

    @field_validator("waiting_image_hash")
    @classmethod
    def _md5(cls, v: str) -> str:
        if v and not _MD5_RE.match(v):
            raise ValueError("must be 32 hex digits (MD5)")
        return v.lower()

    @model_validator(mode="after")
    def _bitrate_order(self) -> PusherConfig:
        if (self.min_bitrate is not None and self.max_bitrate is not None
                and self.min_bitrate > self.max_bitrate):
            raise ValueError("min-bitrate must not exceed max-bitrate")
        return self


class PlayerConfig(Section):
    src: str = Field("", description="Stream to play: rtmp://… or http(s)://….flv.")
    mode: Literal["live", "RTC"] = Field("live", description="live: buffer between "
                                         "min-cache and max-cache; RTC: ≤ 0.3 s.")
    autoplay: bool = Field(False, description="Start playing when the box starts.")
    muted: bool = Field(False, description="Mute the sound.")
    orientation: Literal["vertical", "horizontal"] = Field(
        "horizontal", description="vertical rotates the picture 90° for a portrait screen.")
    object_fit: Literal["contain", "fillCrop"] = Field(
        "contain", description="contain: whole picture with bars; fillCrop: fill, crop edges.")
    background_mute: bool = Field(False, description="Mute while the display is off.")
    min_cache: float = Field(1.0, ge=0, le=30, description="Lowest buffer in live mode, s.")
    max_cache: float = Field(3.0, gt=0, le=30, description="Highest buffer in live mode, s.")
    sound_mode: Literal["speaker", "ear"] = Field("speaker", description="speaker: HDMI "
                                                  "audio; ear: the 3.5 mm jack.")
    picture_in_picture_mode: Literal["off", "top-left", "top-right", "bottom-left",
                                     "bottom-right"] = Field(
        "off", description="Show `pip-src` in a small window in this corner.")
    pip_src: str = Field("", description="Stream for the picture-in-picture window.")
    auto_pause_if_navigate: bool = Field(True, description="Pause while the HDMI display is "
                                         "unplugged.")
    auto_pause_if_open_native: bool = Field(True, description="Pause while the HDMI display "
                                            "is off (standby).")
    debug: bool = Field(False, description="On-screen overlay of netstatus and recent events.")
    # -- box-specific keys
    sink: Literal["auto", "kms", "sdl", "offscreen", "none"] = Field(
        "auto", description="Where pictures go: auto = kms on a console, sdl under a desktop.")
    layout: list[int] = Field(default_factory=list, description="Window rectangle [x, y, "
                              "width, height] when not full screen; empty = full screen.")
    screen_size: str = Field("1280x720", description="Screen size for the sdl/offscreen "
                             "sinks (kms uses the display's mode).")
    backup_src: str = Field("", description="Played while `src` is unreachable.")
    ca_file: str = Field("", description="CA certificates (PEM) an https:// or rtmps:// "
                         "stream's server is verified against (certificate and host name, "
                         "always); empty = the system's CAs. For a self-signed server, its "
                         "certificate.")
    decoder: Literal["auto", "hardware", "software"] = Field(
        "auto", description="auto: the board's hardware H.264 decoder when its profile has "
        "one; hardware: try it on any board; software: never. A hardware decoder that fails "
        "to open falls back to software with HW_ACCELERATION_FAIL (2106).")
    reconnect: Reconnect = Field(default_factory=Reconnect)

    @field_validator("src", "pip_src", "backup_src")
    @classmethod
    def _play_url(cls, v: str) -> str:
        if v and urlsplit(v).scheme not in ("rtmp", "rtmps", "http", "https"):
            raise ValueError("must be an rtmp:// or http(s):// URL")
        return v

    @field_validator("screen_size")
    @classmethod
    def _size(cls, v: str) -> str:
        if not _RESOLUTION_RE.match(v):
            raise ValueError("must look like 1280x720")
        return v

    @field_validator("layout")
    @classmethod
    def _layout(cls, v: list[int]) -> list[int]:
        if v and (len(v) != 4 or v[2] <= 0 or v[3] <= 0):
            raise ValueError("must be [x, y, width, height] with positive size, or empty")
        return v

    @model_validator(mode="after")
    def _cache_order(self) -> PlayerConfig:
        if self.min_cache > self.max_cache:
            raise ValueError("min-cache must not exceed max-cache")
        return self


class MqttConfig(Section):
    host: str = Field("", description="Broker host; empty = no fleet connection.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 for TLS).")
    tls: bool = Field(False, description="Connect with TLS.")
    ca_file: str = Field("", description="CA certificate to pin (PEM); empty = system CAs.")
    cert_file: str = Field("", description="Client certificate (PEM) for mutual TLS.")
    key_file: str = Field("", description="Client key (PEM) for mutual TLS.")
    username: str = Field("", description="Per-box user name.")
    password: SecretStr = Field(SecretStr(""), description="Per-box password (stored 0600 "
                                "in the state directory, redacted in reports).")
    prefix: str = Field("edgelive", pattern=r"^[A-Za-z0-9_\-/]+$",
                        description="Topic prefix.")
    keepalive: int = Field(30, ge=5, le=3600, description="MQTT keepalive, seconds.")
    protocol: Literal["auto", "5", "3.1.1"] = Field(
        "auto", description="auto tries MQTT 5 and falls back to 3.1.1.")
    telemetry_interval: float = Field(5.0, ge=1, le=3600, description="Seconds between "
                                      "tele/pusher and tele/player messages.")


RESERVED_DEVICE_IDS = frozenset({"grp", "all", "reply"})
"""The topic words the fleet uses beside box ids (fleet/topics.py: group, broadcast and
operator-answer subtrees); under the broker ACL a box with one of them as its id would own
that subtree."""


class DeviceConfig(Section):
    id: str = Field("", pattern=r"^[A-Za-z0-9_\-]*$", description="Box id in topics; empty "
                    "= derived from the board serial.")
    name: str = Field("", description="Human-readable name (Home Assistant).")
    groups: list[str] = Field(default_factory=list, description="Fleet groups this box "
                              "answers group commands for.")

    @field_validator("id")
    @classmethod
    def _not_a_topic_word(cls, v: str) -> str:
        if v in RESERVED_DEVICE_IDS:
            raise ValueError(f"'{v}' is a fleet topic word (<prefix>/{v}/…), not a box id")
        return v


class LedsConfig(Section):
    enabled: bool = Field(True, description="Drive the status LEDs.")
    green_pin: str = Field("", description="Green (stream) LED pin; empty = board profile.")
    red_pin: str = Field("", description="Red (fault) LED pin; empty = board profile.")
    active_high: bool = Field(True, description="LED lights when the pin is high.")
    act_led: bool = Field(False, description="Mirror the green LED on the Pi's ACT LED.")


class ButtonConfig(Section):
    enabled: bool = Field(True, description="Watch the push button.")
    pin: str = Field("", description="Button pin; empty = board profile.")
    hold_seconds: float = Field(10.0, ge=2, le=60, description="Hold time for a factory "
                                "reset.")


class UpdateConfig(Section):
    health_timeout: float = Field(120.0, ge=10, le=3600, description="Seconds a new release "
                                  "has from its start to be healthy again (ready, online, "
                                  "streaming as before) before it rolls back by itself; see "
                                  "docs/updates.md.")


class WebConfig(Section):
    enabled: bool = Field(False, description="Serve the local web console (preview, status, "
                          "events, settings, actions). It stays off until a password is set "
                          "with `edgelive web passwd`.")
    bind: str = Field("0.0.0.0", description="Address the console listens on.")
    port: int = Field(8080, ge=1, le=65535, description="Console port (HTTPS when "
                      "`cert-file` is set).")
    cert_file: str = Field("", description="TLS certificate chain (PEM); empty = plain HTTP.")
    key_file: str = Field("", description="TLS private key (PEM) for `cert-file`.")
    session_minutes: int = Field(720, ge=5, le=10080, description="A login lasts this long "
                                 "without use, minutes.")

    @model_validator(mode="after")
    def _tls_pair(self) -> WebConfig:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("key-file and cert-file are set together")
        return self


class HealthConfig(Section):
    interval: float = Field(30.0, ge=1, le=3600, description="Seconds between health "
                            "readings (temperature, throttling, disk, memory) and "
                            "tele/device messages.")
    temp_high: float = Field(80.0, ge=40, le=110, description="SoC temperature, °C, at which "
                             "THERMAL_THROTTLED (6013) is set even before the firmware "
                             "throttles; cleared 5 °C below (a Pi 4 throttles at 80 °C).")
    disk_low_pct: float = Field(10.0, ge=1, le=50, description="DISK_LOW (6014) when the "
                                "state partition has less free space than this percentage; "
                                "cleared 5 points above.")
    disk_low_mb: int = Field(200, ge=10, le=100000, description="DISK_LOW also when less "
                             "than this many MB are free.")
    clear_after: float = Field(60.0, ge=0, le=3600, description="Seconds a condition must "
                               "stay on the good side of its margin before it is cleared.")


class EdgeliveConfig(Section):
    """The whole document."""

    pusher: PusherConfig = Field(default_factory=PusherConfig)
    player: PlayerConfig = Field(default_factory=PlayerConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    device: DeviceConfig = Field(default_factory=DeviceConfig)
    leds: LedsConfig = Field(default_factory=LedsConfig)
    button: ButtonConfig = Field(default_factory=ButtonConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    update: UpdateConfig = Field(default_factory=UpdateConfig)
    web: WebConfig = Field(default_factory=WebConfig)
