"""The bundle download against a real HTTP server (aiohttp): resumed with Range, restarted
when the server ignores Range, bounded in size (announced or streamed) and in time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgelive.update.fetch import DownloadError, download
from tests.test_update_box import BundleServer

DATA = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def server(tmp_path: Path) -> Iterator[BundleServer]:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "b.bundle").write_bytes(DATA)
    srv = BundleServer(tmp_path / "www")
    yield srv
    srv.close()


def fetch(server: BundleServer, part: Path, *, max_bytes: int = 10 << 20,
          timeout: float = 30, name: str = "b.bundle") -> tuple[Path, list[tuple]]:
    seen: list[tuple] = []
    done = asyncio.run(download(server.url(name), part, max_bytes=max_bytes, timeout=timeout,
                                progress=lambda d, t: seen.append((d, t))))
    return done, seen


def test_resumes_from_the_part_it_has(server: BundleServer, tmp_path: Path) -> None:
    part = tmp_path / "dl" / "x.bundle.part"
    part.parent.mkdir()
    part.write_bytes(DATA[:300_000])
    done, seen = fetch(server, part)
    assert done == tmp_path / "dl" / "x.bundle" and done.read_bytes() == DATA
    assert not part.exists()
    assert server.ranges == ["bytes=300000-"]
    assert seen[0] == (300_000, len(DATA)) and seen[-1] == (len(DATA), len(DATA))


def test_starts_again_when_the_server_ignores_range(server: BundleServer,
                                                    tmp_path: Path) -> None:
    server.mode = "whole"
    part = tmp_path / "x.bundle.part"
    part.write_bytes(b"stale bytes of something else")
    done, _ = fetch(server, part)
    assert done.read_bytes() == DATA


def test_size_limit_from_the_announced_length_writes_nothing(server: BundleServer,
                                                             tmp_path: Path) -> None:
    part = tmp_path / "x.bundle.part"
    with pytest.raises(DownloadError, match=f"bundle is {len(DATA)} bytes, over the limit"):
        fetch(server, part, max_bytes=len(DATA) - 1)
    assert list(tmp_path.iterdir()) == [tmp_path / "www"]


def test_size_limit_while_streaming_drops_the_part(server: BundleServer,
                                                   tmp_path: Path) -> None:
    server.mode = "chunked"  # no Content-Length: only counting tells
    part = tmp_path / "x.bundle.part"
    with pytest.raises(DownloadError, match="download passed the limit of 500000 bytes"):
        fetch(server, part, max_bytes=500_000)
    assert not part.exists()


def test_time_limit(server: BundleServer, tmp_path: Path) -> None:
    server.mode = "stall"
    started = time.monotonic()
    with pytest.raises(DownloadError, match="download took longer than 2 s"):
        fetch(server, tmp_path / "x.bundle.part", timeout=2)
    assert time.monotonic() - started < 10


def test_http_error(server: BundleServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(server, tmp_path / "x.bundle.part", name="missing.bundle")
