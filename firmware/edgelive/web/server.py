"""The local web console: an aiohttp app on the supervisor's event loop.

Pages and API talk to the box only through `WebHost` (the supervisor), the same host the
MQTT agent uses, so a setting saved here takes the same validated, rev-numbered path as
`config/desired`, and a button runs the same checked command as `cmd/<target>/<verb>`.

Security: nothing but the login page answers without a session; the session cookie is
HttpOnly and SameSite=Strict (Secure under TLS); every changing request carries the
session's CSRF token in `X-CSRF-Token`; failed logins are rate limited; request bodies are
bounded; what the console shows is the redacted config (no stream key, no password).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib.resources
import json
import logging
import ssl
import time
from pathlib import Path
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from edgelive import verbs
from edgelive.codes import DESCRIPTIONS, Code
from edgelive.config.schema import WebConfig
from edgelive.policy.leds import PATTERNS, LedState, Pattern
from edgelive.verbs import CommandError
from edgelive.web import forms
from edgelive.web.auth import LoginLimiter, Sessions, read_passwd, verify_password
from edgelive.web.preview import PreviewHub

log = logging.getLogger(__name__)

COOKIE = "edgelive_session"
MAX_BODY = 64 * 1024
STATUS_POLL_S = 0.25  # while a status stream is open: a change shows within this
STATUS_KEEPALIVE_S = 5.0
MAX_VIEWERS = 4  # preview sockets at once: each is a copy of the stream on the box's uplink
PUBLIC = {"/login", "/static/style.css", "/static/login.js"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
                               "media-src 'self' blob:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class WebHost(Protocol):
    """What the console needs from the box (the supervisor implements it)."""

    def status_report(self) -> dict[str, Any]: ...
    def reported_config(self) -> dict[str, Any]: ...
    def config_rev(self) -> int: ...
    async def apply_local_config(self, partial: dict[str, Any]) -> tuple[int, Any]: ...
    async def handle_command(self, target: str, verb: str,
                             args: dict[str, Any]) -> dict[str, Any] | None: ...
    async def snapshot(self, target: str) -> tuple[bytes, int]: ...
    async def set_preview(self, socket_path: str | None) -> None: ...


def _static(name: str) -> bytes:
    return importlib.resources.files("edgelive.web").joinpath("static", name).read_bytes()


class WebConsole:
    def __init__(self, host: WebHost, config: WebConfig, state_dir: Path,
                 runtime_dir: Path) -> None:
        self._host = host
        self._config = config
        self._state_dir = state_dir
        self._sessions = Sessions(config.session_minutes * 60.0)
        self._limiter = LoginLimiter()
        self.preview = PreviewHub(runtime_dir / "preview.sock", host.set_preview)
        self._runner: web.AppRunner | None = None
        self.port = config.port

    # -- lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._guard])
        app.add_routes([
            web.get("/login", self._login_page), web.post("/login", self._login),
            web.post("/logout", self._logout),
            web.get("/", self._index), web.get("/static/{name}", self._asset),
            web.get("/api/session", self._session_info),
            web.get("/api/status", self._status), web.get("/api/stream", self._stream),
            web.get("/api/settings", self._settings), web.post("/api/settings", self._save),
            web.post("/api/cmd/{target}/{verb}", self._command),
            web.get("/api/snapshot/{target}", self._snapshot),
            web.get("/api/preview", self._preview),
        ])
        tls = None
        if self._config.cert_file:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self._config.cert_file, self._config.key_file)
        # open status streams and preview sockets end at once when the box stops
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        await self.preview.start()
        site = web.TCPSite(self._runner, self._config.bind, self._config.port, ssl_context=tls)
        await site.start()
        log.info("web console on %s://%s:%d", "https" if tls else "http", self._config.bind,
                 self._config.port)

    async def close(self) -> None:
        """Stop serving; safe twice."""
        runner, self._runner = self._runner, None
        await self.preview.close()
        if runner is not None:
            await runner.cleanup()

    # -- guard: sessions, CSRF, headers

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path not in PUBLIC:
            session = self._sessions.get(request.cookies.get(COOKIE))
            if session is None:
                if request.method == "GET" and not request.path.startswith("/api/"):
                    raise web.HTTPFound("/login")
                raise web.HTTPUnauthorized(text="log in first")
            if request.method not in ("GET", "HEAD") and not hmac.compare_digest(
                    request.headers.get("X-CSRF-Token", ""), session.csrf):
                raise web.HTTPForbidden(text="missing or wrong CSRF token")
            request["session"] = session
        response = await handler(request)
        if not response.prepared:
            response.headers.update(HEADERS)
        return response

    # -- login

    async def _login_page(self, request: web.Request) -> web.Response:
        return web.Response(body=_static("login.html"), content_type="text/html")

    async def _login(self, request: web.Request) -> web.Response:
        client = request.remote or "?"
        wait = self._limiter.retry_after(client)
        if wait > 0:
            raise web.HTTPTooManyRequests(text=f"too many attempts; try again in {wait:.0f} s",
                                          headers={"Retry-After": str(int(wait) + 1)})
        form = await request.post()
        password = str(form.get("password", ""))
        # scrypt takes ~50 ms and 16 MiB: off the loop; the file is read each time, so a
        # new `edgelive web passwd` counts from the next login
        if not await asyncio.to_thread(self._check, password):
            self._limiter.failed(client)
            raise web.HTTPFound("/login?failed=1")
        token, _ = self._sessions.create()
        response = web.HTTPFound("/")
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/",
                            secure=bool(self._config.cert_file))
        raise response

    def _check(self, password: str) -> bool:
        stored = read_passwd(self._state_dir)
        return stored is not None and verify_password(password, stored)

    async def _logout(self, request: web.Request) -> web.Response:
        self._sessions.drop(request.cookies.get(COOKIE))
        response = web.HTTPFound("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    # -- pages

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(body=_static("index.html"), content_type="text/html")

    async def _asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
        kind = types.get(Path(name).suffix)
        if kind is None or "/" in name or name.startswith("."):
            raise web.HTTPNotFound()
        try:
            return web.Response(body=_static(name), content_type=kind)
        except FileNotFoundError:
            raise web.HTTPNotFound() from None

    async def _session_info(self, request: web.Request) -> web.Response:
        return web.json_response({"csrf": request["session"].csrf})

    # -- status and events

    def _status_doc(self) -> dict[str, Any]:
        status = self._host.status_report()
        codes = {}
        for event in status.get("events", []):
            with contextlib.suppress(ValueError):
                codes[event["code"]] = DESCRIPTIONS.get(Code(event["code"]), "")
        status["descriptions"] = {str(k): v for k, v in codes.items()}
        # the page draws the LEDs from the patterns the box plays, not from a copy of them
        status["led_patterns"] = [_pattern(p) for p in PATTERNS[LedState(status["leds"])]]
        status["preview_viewers"] = self.preview.viewers
        return status

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self._status_doc(), dumps=_dumps)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the status document whenever it changes (polled only while
        this stream is open)."""
        response = web.StreamResponse(headers={**HEADERS, "Content-Type": "text/event-stream"})
        await response.prepare(request)
        last, sent_at = "", 0.0
        try:
            while True:
                doc = self._status_doc()
                uptime = doc.pop("uptime", 0)
                body = _dumps(doc)
                now = time.monotonic()
                if body != last or now - sent_at >= STATUS_KEEPALIVE_S:
                    doc["uptime"] = uptime
                    await response.write(f"data: {_dumps(doc)}\n\n".encode())
                    last, sent_at = body, now
                await asyncio.sleep(STATUS_POLL_S)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    # -- settings

    async def _settings(self, request: web.Request) -> web.Response:
        return web.json_response({"rev": self._host.config_rev(),
                                  "sections": forms.describe(self._host.reported_config())},
                                 dumps=_dumps)

    async def _save(self, request: web.Request) -> web.Response:
        partial = await _json_body(request)
        rev, outcome = await self._host.apply_local_config(partial)
        return web.json_response({"applied": outcome.applied, "rev": rev,
                                  "errors": outcome.errors}, status=200 if outcome.applied
                                 else 422)

    # -- actions

    async def _command(self, request: web.Request) -> web.Response:
        target, name = request.match_info["target"], request.match_info["verb"]
        if verbs.find(target, name) is None or name == "snapshot":
            raise web.HTTPNotFound(text=f"no command {target}/{name}")
        try:  # the host checks the arguments against the verb table, as for MQTT
            result = await self._host.handle_command(target, name, await _json_body(request))
        except CommandError as exc:
            return web.json_response({"ok": False, "code": int(exc.code), "error": str(exc)},
                                     status=409)
        return web.json_response({"ok": True, "result": result or {}}, dumps=_dumps)

    async def _snapshot(self, request: web.Request) -> web.Response:
        target = request.match_info["target"]
        if target not in ("pusher", "player"):
            raise web.HTTPNotFound()
        try:
            jpeg, taken_ms = await self._host.snapshot(target)
        except CommandError as exc:
            raise web.HTTPConflict(text=str(exc)) from None
        name = f"{target}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(taken_ms / 1000))}"
        disposition = "attachment" if request.query.get("download") else "inline"
        return web.Response(body=jpeg, content_type="image/jpeg", headers={
            "Content-Disposition": f'{disposition}; filename="{name}.jpg"',
            "X-Taken-Ms": str(taken_ms)})

    # -- preview

    async def _preview(self, request: web.Request) -> web.WebSocketResponse:
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            raise web.HTTPForbidden(text="cross-origin preview refused")
        if self.preview.viewers >= MAX_VIEWERS:
            raise web.HTTPServiceUnavailable(text=f"at most {MAX_VIEWERS} previews at once")
        ws = web.WebSocketResponse(max_msg_size=1024, heartbeat=20)
        await ws.prepare(request)
        viewer = await self.preview.join()
        reader = asyncio.create_task(_drain_client(ws))
        try:
            while not ws.closed:
                getter = asyncio.create_task(viewer.queue.get())
                done, _ = await asyncio.wait({getter, reader},
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                await ws.send_bytes(getter.result())
        except ConnectionError:
            pass
        finally:
            reader.cancel()
            await self.preview.leave(viewer)
            await ws.close()
        return ws


async def _drain_client(ws: web.WebSocketResponse) -> None:
    """The browser sends nothing we use; this notices when it goes."""
    async for message in ws:
        if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text="the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def _pattern(pattern: Pattern) -> dict[str, Any]:
    return {"on": pattern.steady_on, "durations": list(pattern.durations)}


def _dumps(doc: Any) -> str:
    return json.dumps(doc, default=str, separators=(",", ":"))
