"""Local servers for the demo, the benchmarks and the tests: nginx-rtmp and mosquitto.

Each is a small object with start/stop/kill/restart so fault tests can take the server
away and bring it back on the same port. Nothing here is mocked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"


_HANDED_OUT: set[int] = set()
"""Ports free_port() gave before: a server made but not started yet does not hold its port,
and the kernel may offer it again (nginx's HTTP port once came out as the broker's)."""


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_port(host: str, port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


class _Daemon:
    """A foreground server process we own."""

    proc: subprocess.Popen[bytes] | None = None
    host = "127.0.0.1"
    port: int

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        assert self.proc is None, "already running"
        self.proc = subprocess.Popen(self._argv(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port(self.host, self.port)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()


class NginxRtmp(_Daemon):
    """nginx with libnginx-mod-rtmp: `live` application records every publish to FLV and
    logs what each publisher announced (`published()`)."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.port = free_port()
        self.http_port = free_port()
        self.record_dir = workdir / "rec"
        self.record_dir.mkdir(parents=True, exist_ok=True)
        (workdir / "logs").mkdir(exist_ok=True)
        self.conf = workdir / "nginx.conf"
        self.conf.write_text(f"""
load_module {RTMP_MODULE};
daemon off;
master_process off;
pid {workdir}/nginx.pid;
error_log {workdir}/logs/error.log warn;
events {{ worker_connections 256; }}
rtmp {{
  server {{
    listen 127.0.0.1:{self.port};
    chunk_size 4096;
    application live {{
      live on;
      record all;
      record_path {self.record_dir};
      record_unique on;
      notify_method get;
      on_publish http://127.0.0.1:{self.http_port}/on_publish;
    }}
  }}
}}
http {{
  access_log off;
  log_format publish '$args';
  client_body_temp_path {workdir}/tmp;
  proxy_temp_path {workdir}/tmp;
  fastcgi_temp_path {workdir}/tmp;
  uwsgi_temp_path {workdir}/tmp;
  scgi_temp_path {workdir}/tmp;
  server {{
    listen 127.0.0.1:{self.http_port};
    location /stat {{ rtmp_stat all; }}
    location /on_publish {{
      access_log {workdir}/logs/publish.log publish;
      return 204;
    }}
  }}
}}
""")

    def _argv(self) -> list[str]:
        return ["nginx", "-c", str(self.conf), "-p", str(self.dir)]

    def url(self, name: str = "cam") -> str:
        return f"rtmp://{self.host}:{self.port}/live/{name}"

    def stat(self) -> ET.Element:
        with urllib.request.urlopen(f"http://{self.host}:{self.http_port}/stat",
                                    timeout=3) as r:
            return ET.fromstring(r.read())

    def publishers(self, name: str = "cam") -> int:
        """How many clients publish `name` right now (0 or 1 with nginx-rtmp)."""
        n = 0
        for stream in self.stat().iter("stream"):
            if stream.findtext("name") == name:
                n += sum(1 for c in stream.iter("client") if c.find("publishing") is not None)
        return n

    def recordings(self, name: str = "cam") -> list[Path]:
        return sorted(self.record_dir.glob(f"{name}*.flv"), key=lambda p: p.stat().st_mtime)

    def published(self) -> list[dict[str, str]]:
        """Every publish so far as nginx-rtmp was told it (name, app, tcurl, addr …)."""
        log = self.dir / "logs" / "publish.log"
        if not log.exists():
            return []
        return [dict(urllib.parse.parse_qsl(line)) for line in log.read_text().splitlines()]


class Mosquitto(_Daemon):
    """mosquitto on a free port, anonymous clients allowed.

    `listener_options` (mosquitto.conf lines) go right after the `listener` line: a TLS
    listener (`cafile`, `certfile`, `keyfile`, `require_certificate true`) or credentials
    (`allow_anonymous false`, `password_file F`; then `allow_anonymous true` is left out).
    Running as root, mosquitto reads those files as the `mosquitto` user unless told
    `user root`.
    """

    def __init__(self, workdir: Path, listener_options: str = "") -> None:
        self.dir = workdir
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        options = listener_options.strip()
        anonymous = "" if "allow_anonymous" in options else "allow_anonymous true\n"
        self.conf.write_text(
            f"listener {self.port} {self.host}\n"
            + (options + "\n" if options else "")
            + anonymous
            + "persistence false\n"
            "set_tcp_nodelay true\n"
            "max_queued_messages 10000\n"
        )

    def _argv(self) -> list[str]:
        return [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(self.conf)]


def start_box(state_dir: Path) -> subprocess.Popen[bytes]:
    """`edgelive run` on `state_dir`'s config.toml, as a benchmark measures it: mock GPIO,
    no sound device, no boot file, warnings only."""
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "SDL_AUDIODRIVER": "dummy"}
    return subprocess.Popen([sys.executable, "-m", "edgelive", "run", "--state-dir",
                             str(state_dir), "--boot-file", str(state_dir / "none.toml"),
                             "--log-level", "WARNING"], env=env)
