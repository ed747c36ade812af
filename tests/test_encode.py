"""H.264 and AAC encoders: GOP, key frames on demand, live bitrate, fallback, AAC plans."""

from __future__ import annotations

import io
import itertools

import av
import numpy as np
import pytest

from edgelive.codes import Code
from edgelive.config.presets import AudioPlan, VideoPlan
from edgelive.media.encode import (
    AudioEncoder,
    HardwareEncoderUnavailable,
    PyAvVideoEncoder,
    open_video_encoder,
)

RTC = VideoPlan(width=320, height=180, fps=30, gop_frames=30, min_kbps=200, max_kbps=1000,
                low_latency=True)
RNG = np.random.default_rng(7)
AAC_RATES = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000]


def noise_frame(width: int = 320, height: int = 180) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(RNG.integers(0, 255, (height * 3 // 2, width),
                                                   dtype=np.uint8), format="yuv420p")


def encode_all(encoder: PyAvVideoEncoder, frames: int, on_frame=None) -> list[av.Packet]:
    packets = []
    for i in range(frames):
        if on_frame:
            on_frame(i)
        packets += encoder.encode(noise_frame(), i * 33)
    return packets  # zerolatency: nothing is held back, no flush needed


def test_key_frames_land_exactly_every_gop_and_rtc_has_no_b_frames() -> None:
    with PyAvVideoEncoder(RTC) as encoder:
        packets = encode_all(encoder, 75)
    keys = [p.pts for p in packets if p.is_keyframe]
    assert keys == [0, 30 * 33, 60 * 33]
    # No B-frames: decode order is presentation order.
    assert [p.pts for p in packets] == [p.dts for p in packets] == sorted(p.pts for p in packets)


def test_extradata_is_available_before_the_first_frame() -> None:
    with PyAvVideoEncoder(RTC) as encoder:
        params = encoder.params
    assert params.codec == "h264" and (params.width, params.height) == (320, 180)
    assert params.extradata.startswith(b"\x00\x00\x00\x01")  # SPS/PPS, Annex B
    assert len(params.extradata) > 10


def test_force_keyframe_makes_the_next_frame_a_key_frame_once() -> None:
    with PyAvVideoEncoder(RTC) as encoder:
        packets = encode_all(encoder, 20, on_frame=lambda i: i == 7 and encoder.force_keyframe())
    assert [p.pts // 33 for p in packets if p.is_keyframe] == [0, 7]


def test_set_bitrate_takes_effect_without_reopening() -> None:
    plan = VideoPlan(320, 180, 30, 300, 100, 2000, True)
    with PyAvVideoEncoder(plan) as encoder:
        high = sum(p.size for p in encode_all(encoder, 60)[30:])
        encoder.set_bitrate(150)
        low = sum(p.size for p in encode_all(encoder, 60)[30:])
    assert encoder.kbps == 150
    assert low < high / 4, (high, low)


def test_a_lower_bitrate_holds_from_the_first_second() -> None:
    """The VBV ceiling follows the target: x264 comes down within the first second after
    the change, instead of spending the old ceiling's buffer (about 310 against 510 kbit in that
    second from 1500 to 200 kbit/s on testsrc2 at 640x360, the rest at 200)."""
    plan = VideoPlan(640, 360, 30, 30, 150, 1500, True)
    source = av.open("testsrc2=size=640x360:rate=30", format="lavfi")
    seconds = [0] * 4
    with PyAvVideoEncoder(plan) as encoder, source:
        for i, frame in enumerate(source.decode(video=0)):
            if i == 60:
                encoder.set_bitrate(200)
            seconds[i // 30] += sum(p.size for p in encoder.encode(frame, i * 33)) * 8
            if i == 119:
                break
    assert seconds[1] > 1_000_000  # the content needs more than 1 Mbit/s
    assert seconds[2] < 1.8 * 200_000, seconds
    assert seconds[3] < 1.15 * 200_000, seconds


def test_hardware_encoder_failure_falls_back_to_libx264_with_a_reason() -> None:
    with pytest.raises(HardwareEncoderUnavailable) as info:
        PyAvVideoEncoder(RTC, "h264_v4l2m2m")
    assert info.value.code == Code.PUSH_ERR_VIDEO_ENCODE_FAIL
    encoder, reasons = open_video_encoder(RTC, "auto", hardware_available=True)
    assert encoder.name == "libx264" and len(reasons) == 1 and "h264_v4l2m2m" in reasons[0]
    encoder.close()
    encoder, reasons = open_video_encoder(RTC, "auto", hardware_available=False)
    assert encoder.name == "libx264" and reasons == []
    encoder.close()


@pytest.mark.parametrize(("plan", "layout"), [(AudioPlan(16000, 1, 32), "mono"),
                                               (AudioPlan(48000, 2, 128), "stereo")])
def test_aac_follows_the_plan_and_stamps_by_sample_count(plan: AudioPlan, layout: str) -> None:
    encoder = AudioEncoder(plan)
    pcm = av.AudioFrame.from_ndarray(np.zeros((1, 44100 // 10), np.int16), format="s16",
                                     layout="mono")
    pcm.sample_rate = 44100  # any input rate is resampled to the plan's
    packets = [p for _ in range(10) for p in encoder.encode(pcm, 500)]
    encoder.close()
    pts = [p.pts for p in packets]
    assert pts[0] == 500 * plan.sample_rate // 1000 - 1024  # one frame of AAC priming
    assert all(b - a == 1024 for a, b in itertools.pairwise(pts))
    # ~1 s of input became ~1 s of AAC at the plan's rate.
    assert 0.8 < len(packets) * 1024 / plan.sample_rate <= 1.0
    # The AudioSpecificConfig (ISO 14496-3) carries the plan's rate and channels.
    b0, b1 = encoder.params.extradata[:2]
    rate_index, channels = ((b0 & 7) << 1) | (b1 >> 7), (b1 >> 3) & 0xF
    assert (AAC_RATES[rate_index], channels) == (plan.sample_rate, plan.channels)
    assert encoder.params.layout == layout


def test_jpeg_snapshot_round_trips() -> None:
    from edgelive.media.jpeg import encode_jpeg

    frame = av.VideoFrame.from_ndarray(np.full((180, 320, 3), 180, np.uint8), format="rgb24")
    jpeg = encode_jpeg(frame.reformat(format="yuv420p"))
    assert jpeg[:2] == b"\xff\xd8"
    decoded = next(av.open(io.BytesIO(jpeg)).decode(video=0)).to_ndarray(format="rgb24")
    assert decoded.shape == (180, 320, 3) and abs(decoded.mean() - 180) < 3
