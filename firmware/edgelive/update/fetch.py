"""The bundle download: resumable, bounded in size and time, with progress.

The partial file is named by the SHA-256 the update command gives, so a retry of the same
update resumes where the last one stopped (HTTP Range), and a different bundle never
continues another's bytes. File writes go to a thread: the supervisor's loop never blocks.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import aiohttp

CHUNK = 256 * 1024
_RANGE_TOTAL = re.compile(r"bytes \d+-\d+/(\d+)")


class DownloadError(Exception):
    """The download failed or went over a bound; the partial file is kept for a resume
    unless it is over the size limit."""


async def download(url: str, part: Path, *, max_bytes: int, timeout: float,
                   progress: Callable[[int, int | None], None]) -> Path:
    """Fetch `url` into `part` (resumed when it holds a beginning already); returns the
    completed file's path (`part` without `.part`). `progress(done, total)` after each
    chunk; total None when the server does not say."""
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    client_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 30))
    try:
        async with aiohttp.ClientSession(timeout=client_timeout) as session, \
                session.get(url, headers=headers) as resp:
            if resp.status == 416 and have:  # all there already (or the file changed)
                return _finish(part)
            if resp.status not in (200, 206):
                raise DownloadError(f"HTTP {resp.status} from {url}")
            if resp.status == 200:
                have = 0  # no resume offered: from the start
            total = _total(resp)
            if total is not None and total > max_bytes:
                raise DownloadError(f"bundle is {total} bytes, over the limit of {max_bytes}")
            with part.open("ab" if have else "wb") as f:
                done = have
                progress(done, total)
                async for chunk in resp.content.iter_chunked(CHUNK):
                    done += len(chunk)
                    if done > max_bytes:
                        f.close()
                        part.unlink()
                        raise DownloadError(f"download passed the limit of {max_bytes} bytes")
                    await asyncio.to_thread(f.write, chunk)
                    progress(done, total)
            if total is not None and done != total:
                raise DownloadError(f"download ended at {done} of {total} bytes")
    except TimeoutError:
        raise DownloadError(f"download took longer than {timeout:.0f} s") from None
    except aiohttp.ClientError as exc:
        raise DownloadError(f"download failed: {exc}") from None
    return _finish(part)


def _total(resp: aiohttp.ClientResponse) -> int | None:
    if resp.status == 206:
        match = _RANGE_TOTAL.fullmatch(resp.headers.get("Content-Range", ""))
        return int(match.group(1)) if match else None
    return resp.content_length


def _finish(part: Path) -> Path:
    done = part.with_suffix("")
    part.replace(done)
    return done
