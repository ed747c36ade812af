"""The status code registry: seed numbers exact, appliance range, generated docs current."""

from __future__ import annotations

import ast
from pathlib import Path

from edgelive.codes import DESCRIPTIONS, Code, code_name, markdown

SEED = {
    1001: "PUSH_EVT_CONNECT_SUCC", 1002: "PUSH_EVT_PUSH_BEGIN", 1003: "PUSH_EVT_OPEN_CAMERA_SUCC",
    -1301: "PUSH_ERR_OPEN_CAMERA_FAIL", -1302: "PUSH_ERR_OPEN_MIC_FAIL",
    -1303: "PUSH_ERR_VIDEO_ENCODE_FAIL", -1304: "PUSH_ERR_AUDIO_ENCODE_FAIL",
    -1305: "PUSH_ERR_UNSUPPORTED_RESOLUTION", -1306: "PUSH_ERR_UNSUPPORTED_SAMPLERATE",
    -1307: "PUSH_ERR_NET_DISCONNECT", 1101: "PUSH_WARNING_NET_BUSY",
    1102: "PUSH_WARNING_RECONNECT", 1103: "PUSH_WARNING_HW_ACCELERATION_FAIL",
    1107: "PUSH_WARNING_SWITCH_SWENC", 5000: "PUSH_WARNING_HANDUP_STOP",
    2001: "PLAY_EVT_CONNECT_SUCC", 2002: "PLAY_EVT_RTMP_STREAM_BEGIN",
    2003: "PLAY_EVT_RCV_FIRST_I_FRAME", 2004: "PLAY_EVT_PLAY_BEGIN", 2006: "PLAY_EVT_PLAY_END",
    2007: "PLAY_EVT_PLAY_LOADING", -2301: "PLAY_ERR_NET_DISCONNECT",
    2101: "PLAY_WARNING_VIDEO_DECODE_FAIL", 2102: "PLAY_WARNING_AUDIO_DECODE_FAIL",
    2103: "PLAY_WARNING_RECONNECT", 2104: "PLAY_WARNING_RECV_DATA_LAG",
    2105: "PLAY_WARNING_VIDEO_PLAY_LAG", 2106: "PLAY_WARNING_HW_ACCELERATION_FAIL",
    2107: "PLAY_WARNING_VIDEO_DISCONTINUITY",
}


def test_seed_codes_have_their_exact_numbers_and_names() -> None:
    for number, name in SEED.items():
        assert code_name(number) == name
    for number in (3001, 3002, 3003, 3004, 3005):
        assert number in {c.value for c in Code}


def test_appliance_codes_stay_in_their_range_and_every_code_is_described() -> None:
    seed_or_network = set(SEED) | {3001, 3002, 3003, 3004, 3005}
    for code in Code:
        if code.value not in seed_or_network:
            assert 6000 <= abs(code.value) <= 6099, code
        assert DESCRIPTIONS[code], code
    assert code_name(4242) == "UNKNOWN_4242"


def test_docs_codes_md_is_generated_from_the_registry() -> None:
    assert (Path(__file__).parents[1] / "docs" / "codes.md").read_text() == markdown()


FIRMWARE = Path(__file__).parents[1] / "firmware" / "edgelive"


def emitted_code_names() -> set[str]:
    """Every `Code.X` the firmware produces: raised, returned, passed to emit() or an answer.

    A code compared against (`code == Code.X`, `code in (…)`) is only read, and policy/ only
    reacts to codes (decisions are pure there; emitting is I/O), so neither counts.
    """
    names: set[str] = set()
    for path in FIRMWARE.rglob("*.py"):
        relative = path.relative_to(FIRMWARE)
        if relative == Path("codes.py") or relative.parts[0] == "policy":
            continue
        tree = ast.parse(path.read_text(), str(path))
        compared = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.Compare)
                    for inner in ast.walk(node)}
        names |= {node.attr for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and node.value.id == "Code" and id(node) not in compared}
    return names


def test_every_defined_code_is_emitted_somewhere() -> None:
    """A code nothing emits is a promise in docs/codes.md the box never keeps."""
    emitted = emitted_code_names()
    unknown = emitted - {c.name for c in Code}
    assert not unknown, f"Code.{unknown} is not in the registry"
    never = [f"{c.value} {c.name}" for c in Code if c.name not in emitted]
    assert not never, f"defined in codes.py but emitted nowhere: {never}"
