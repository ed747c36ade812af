"""Every status code the box emits: the seed's pusher/player codes and the appliance range.

The seed numbers are a contract (SPEC §1): fleets and LED tables key on them, so they are
kept exactly, including the 3001–3003 codes that pusher and player share. Appliance codes
live in 6000–6099; negative means error.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Code(IntEnum):
    # -- pusher events
    PUSH_EVT_CONNECT_SUCC = 1001
    PUSH_EVT_PUSH_BEGIN = 1002
    PUSH_EVT_OPEN_CAMERA_SUCC = 1003
    # -- pusher errors
    PUSH_ERR_OPEN_CAMERA_FAIL = -1301
    PUSH_ERR_OPEN_MIC_FAIL = -1302
    PUSH_ERR_VIDEO_ENCODE_FAIL = -1303
    PUSH_ERR_AUDIO_ENCODE_FAIL = -1304
    PUSH_ERR_UNSUPPORTED_RESOLUTION = -1305
    PUSH_ERR_UNSUPPORTED_SAMPLERATE = -1306
    PUSH_ERR_NET_DISCONNECT = -1307
    # -- pusher warnings
    PUSH_WARNING_NET_BUSY = 1101
    PUSH_WARNING_RECONNECT = 1102
    PUSH_WARNING_HW_ACCELERATION_FAIL = 1103
    PUSH_WARNING_SWITCH_SWENC = 1107
    # -- network warnings shared by pusher and player (player: RTMP only)
    WARNING_DNS_FAIL = 3001
    WARNING_SERVER_CONN_FAIL = 3002
    WARNING_SHAKE_FAIL = 3003
    PUSH_WARNING_SERVER_DISCONNECT = 3004
    PUSH_WARNING_SOCKET_BROKEN = 3005
    PUSH_WARNING_HANDUP_STOP = 5000
    # -- player events
    PLAY_EVT_CONNECT_SUCC = 2001
    PLAY_EVT_RTMP_STREAM_BEGIN = 2002
    PLAY_EVT_RCV_FIRST_I_FRAME = 2003
    PLAY_EVT_PLAY_BEGIN = 2004
    PLAY_EVT_PLAY_END = 2006
    PLAY_EVT_PLAY_LOADING = 2007
    # -- player error / warnings
    PLAY_ERR_NET_DISCONNECT = -2301
    PLAY_WARNING_VIDEO_DECODE_FAIL = 2101
    PLAY_WARNING_AUDIO_DECODE_FAIL = 2102
    PLAY_WARNING_RECONNECT = 2103
    PLAY_WARNING_RECV_DATA_LAG = 2104
    PLAY_WARNING_VIDEO_PLAY_LAG = 2105
    PLAY_WARNING_HW_ACCELERATION_FAIL = 2106
    PLAY_WARNING_VIDEO_DISCONTINUITY = 2107
    # -- appliance (6000–6099)
    READY = 6000
    MQTT_CONNECTED = 6001
    MQTT_LOST = 6002
    CONFIG_APPLIED = 6003
    CONFIG_REJECTED = -6004
    PRIVACY_ON = 6005
    PRIVACY_OFF = 6006
    WORKER_RESTARTED = 6007
    PUSH_RETRY_SCHEDULED = 6008
    PLAY_RETRY_SCHEDULED = 6009
    UPDATE_STARTED = 6010
    UPDATE_DONE = 6011
    UPDATE_ROLLED_BACK = -6012
    THERMAL_THROTTLED = 6013
    DISK_LOW = 6014
    WAITING_IMAGE_INVALID = -6015
    SNAPSHOT_TAKEN = 6016
    IDENTIFY = 6017
    COMMAND_REJECTED = -6018
    FACTORY_RESET = 6019
    # -6020 was WORKER_CRASHED, never emitted: 6007's reason tells a crash from a hang. Not reused.
    PUSH_STOPPED = 6021
    PLAY_STOPPED = 6022
    WAITING_IMAGE_ON = 6023
    WAITING_IMAGE_OFF = 6024
    DISPLAY_UNAVAILABLE = -6025
    AUDIO_DEVICE_FAIL = -6026
    MQTT_CONNECT_FAILED = -6027
    REBOOTING = 6028
    LOGS_SENT = 6029
    # player states reported as events (6080–6089)
    PLAY_BACKUP_ON = 6080
    PLAY_BACKUP_OFF = 6081
    DISPLAY_OFF = 6082
    DISPLAY_ON = 6083
    PLAY_FULLSCREEN_CHANGE = 6084


class Source(StrEnum):
    """Which part of the box an event comes from (the event's `src`)."""

    PUSHER = "pusher"
    PLAYER = "player"
    DEVICE = "device"


def code_name(code: int) -> str:
    """Name of a code, or `UNKNOWN_<n>` for a number outside the registry."""
    try:
        return Code(code).name
    except ValueError:
        return f"UNKNOWN_{code}"


DESCRIPTIONS: dict[Code, str] = {
    Code.PUSH_EVT_CONNECT_SUCC: "Connected to the RTMP server (TCP + RTMP connect done).",
    Code.PUSH_EVT_PUSH_BEGIN: "Publish accepted, first packet sent: the stream is live.",
    Code.PUSH_EVT_OPEN_CAMERA_SUCC: "Camera opened.",
    Code.PUSH_ERR_OPEN_CAMERA_FAIL: "Camera failed to open or went away; waiting image sent.",
    Code.PUSH_ERR_OPEN_MIC_FAIL: "Microphone failed to open; silence is sent.",
    Code.PUSH_ERR_VIDEO_ENCODE_FAIL: "Video encoder failed.",
    Code.PUSH_ERR_AUDIO_ENCODE_FAIL: "Audio encoder failed.",
    Code.PUSH_ERR_UNSUPPORTED_RESOLUTION: "The camera or encoder cannot produce this size.",
    Code.PUSH_ERR_UNSUPPORTED_SAMPLERATE: "The microphone or encoder cannot use this rate.",
    Code.PUSH_ERR_NET_DISCONNECT: "Three reconnect attempts failed.",
    Code.PUSH_WARNING_NET_BUSY: "The uplink cannot carry the bitrate; it is being lowered.",
    Code.PUSH_WARNING_RECONNECT: "Connection lost; reconnecting.",
    Code.PUSH_WARNING_HW_ACCELERATION_FAIL: "Hardware encoder failed; software encoder used.",
    Code.PUSH_WARNING_SWITCH_SWENC: "Encoder cannot keep up; switched to a cheaper path.",
    Code.WARNING_DNS_FAIL: "Server name could not be resolved. The player's 3001-3003 are "
                           "RTMP only: an HTTP-FLV stream's failure is told in 2103's "
                           "message.",
    Code.WARNING_SERVER_CONN_FAIL: "Server refused or did not answer the connection.",
    Code.WARNING_SHAKE_FAIL: "RTMP handshake or connect failed (not an RTMP server?).",
    Code.PUSH_WARNING_SERVER_DISCONNECT: "Server closed or rejected the publish (reason given).",
    Code.PUSH_WARNING_SOCKET_BROKEN: "Connection broke while sending.",
    Code.PUSH_WARNING_HANDUP_STOP: "Push stopped after the waiting-timeout (privacy/pause).",
    Code.PLAY_EVT_CONNECT_SUCC: "Connected to the stream's server.",
    Code.PLAY_EVT_RTMP_STREAM_BEGIN: "The server started sending the stream.",
    Code.PLAY_EVT_RCV_FIRST_I_FRAME: "First key frame received.",
    Code.PLAY_EVT_PLAY_BEGIN: "First picture shown.",
    Code.PLAY_EVT_PLAY_END: "The stream ended (RTMP publisher stopped).",
    Code.PLAY_EVT_PLAY_LOADING: "Buffering: waiting for data.",
    Code.PLAY_ERR_NET_DISCONNECT: "Three reconnect attempts failed.",
    Code.PLAY_WARNING_VIDEO_DECODE_FAIL: "A video frame failed to decode.",
    Code.PLAY_WARNING_AUDIO_DECODE_FAIL: "An audio frame failed to decode.",
    Code.PLAY_WARNING_RECONNECT: "Connection lost; reconnecting.",
    Code.PLAY_WARNING_RECV_DATA_LAG: "Data arrives late: the network is not keeping up.",
    Code.PLAY_WARNING_VIDEO_PLAY_LAG: "Playback stalled.",
    Code.PLAY_WARNING_HW_ACCELERATION_FAIL: "Hardware decoder failed; software decoder used.",
    Code.PLAY_WARNING_VIDEO_DISCONTINUITY: "Frames missing in the stream; picture may glitch.",
    Code.READY: "The box started and its workers run.",
    Code.MQTT_CONNECTED: "Connected to the MQTT broker.",
    Code.MQTT_LOST: "MQTT broker connection lost; streaming continues.",
    Code.CONFIG_APPLIED: "A new configuration was applied.",
    Code.CONFIG_REJECTED: "A configuration was rejected; the running one is unchanged.",
    Code.PRIVACY_ON: "Privacy on: the camera is replaced by the waiting image.",
    Code.PRIVACY_OFF: "Privacy off: the camera is back.",
    Code.WORKER_RESTARTED: "A crashed or hung worker was restarted, or a running one by "
                           "device/restart (detail: worker, reason).",
    Code.PUSH_RETRY_SCHEDULED: "Push retry scheduled with backoff (time in detail).",
    Code.PLAY_RETRY_SCHEDULED: "Play retry scheduled with backoff (time in detail).",
    Code.UPDATE_STARTED: "Firmware update under way (detail: version, stage download / "
    "install / switch, percent downloaded; every 10 %).",
    Code.UPDATE_DONE: "Firmware update done: the new release was healthy and is kept (detail: "
    "version, previous).",
    Code.UPDATE_ROLLED_BACK: "Firmware update not kept: refused or failed before the switch "
    "(stage download / verify / install: nothing changed), or unhealthy and rolled back (stage "
    "probation); detail: version, stage, reason, running.",
    Code.THERMAL_THROTTLED: "The SoC is throttling for heat or undervoltage, or is at "
                            "`health.temp-high`; sent again with detail `active: false` when "
                            "it has been clear for `health.clear-after` s (detail: socTemp, …).",
    Code.DISK_LOW: "The state partition is nearly full (`health.disk-low-pct`/`-mb`); sent "
                   "again with detail `active: false` when there is room again.",
    Code.WAITING_IMAGE_INVALID: "Waiting image unusable (missing, bad hash, bad data); slate used.",
    Code.SNAPSHOT_TAKEN: "A snapshot was taken.",
    Code.IDENTIFY: "Identify: both LEDs blink for 10 s.",
    Code.COMMAND_REJECTED: "A command was refused (malformed, expired, duplicate, unknown).",
    Code.FACTORY_RESET: "Configuration reset to factory defaults.",
    Code.PUSH_STOPPED: "The push was stopped.",
    Code.PLAY_STOPPED: "Playback was stopped by a player/stop command (2006 is the stream's "
                       "own end).",
    Code.WAITING_IMAGE_ON: "The waiting image is being sent.",
    Code.WAITING_IMAGE_OFF: "The camera is being sent again.",
    Code.DISPLAY_UNAVAILABLE: "No display could be opened for the player.",
    Code.AUDIO_DEVICE_FAIL: "The audio output device failed to open.",
    Code.MQTT_CONNECT_FAILED: "Cannot connect to the MQTT broker (unreachable, TLS or credentials "
                              "refused); the box keeps retrying.",
    Code.REBOOTING: "The box reboots (device/reboot); it goes offline and comes back.",
    Code.LOGS_SENT: "Log lines were sent in answer to device/logs (detail: source, lines).",
    Code.PLAY_BACKUP_ON: "The player's src is unreachable; backup-src is shown.",
    Code.PLAY_BACKUP_OFF: "The player's src is back; backup-src stopped.",
    Code.DISPLAY_OFF: "The display was unplugged or turned off (player paused/muted per config).",
    Code.DISPLAY_ON: "The display is connected and on again.",
    Code.PLAY_FULLSCREEN_CHANGE: "The picture went full screen or back to its layout box "
                                 "(the seed's bindfullscreenchange; detail: fullScreen, "
                                 "direction).",
}


def markdown() -> str:
    """docs/codes.md, generated from this registry."""
    lines = ["# Status codes", "",
             "Generated by `python -m edgelive.codes`; negative codes are errors.", "",
             "| code | name | meaning |", "| ---: | --- | --- |"]
    lines += [f"| {c.value} | {c.name} | {DESCRIPTIONS.get(c, '')} |" for c in Code]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
