"""Network-namespace fixture: a tbf-shaped uplink between the box and nginx-rtmp, removed
in the finalizer even when the test fails (edgelive.bench.netlab does the work)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgelive.bench.netlab import ShapedLink


@pytest.fixture
def shaped_link(tmp_path: Path) -> Iterator[ShapedLink]:
    if os.geteuid() != 0:
        pytest.skip("needs root for ip netns, veth and tc")
    with ShapedLink(tmp_path, kbps=1500) as link:
        yield link
