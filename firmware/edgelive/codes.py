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
    WORKER_CRASHED = -6020
    PUSH_STOPPED = 6021
    PLAY_STOPPED = 6022
    WAITING_IMAGE_ON = 6023
    WAITING_IMAGE_OFF = 6024
    DISPLAY_UNAVAILABLE = -6025
    AUDIO_DEVICE_FAIL = -6026

    @property
    def is_error(self) -> bool:
        return self.value < 0


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
