"""The local web console (`[web]`): preview, status, events, settings and actions.

`server.WebConsole` runs on the supervisor's loop and reaches the box only through the
supervisor's host interface; aiohttp is imported only when the console is enabled, so a box
without it pays nothing at start.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from edgelive.config.schema import WebConfig
from edgelive.web.auth import passwd_path, read_passwd

if TYPE_CHECKING:
    from edgelive.web.server import WebConsole, WebHost

log = logging.getLogger(__name__)


async def start_console(host: WebHost, config: WebConfig, state_dir: Path,
                        runtime_dir: Path) -> WebConsole | None:
    """Serve the console when enabled and a password is set; None otherwise (logged)."""
    if not config.enabled:
        return None
    if read_passwd(state_dir) is None:
        log.warning("web console enabled but no password is set (%s): not started; run "
                    "`edgelive web passwd`", passwd_path(state_dir))
        return None
    # aiohttp loads in a thread: seconds on a Pi, during which the loop would not read the
    # workers' pipes nor ping systemd's watchdog
    await asyncio.to_thread(importlib.import_module, "edgelive.web.server")
    from edgelive.web.server import WebConsole

    console = WebConsole(host, config, state_dir, runtime_dir)
    try:
        await console.start()
    except (OSError, ValueError) as exc:  # port in use, unreadable certificate
        log.error("web console cannot start: %s", exc)
        await console.close()
        return None
    return console
