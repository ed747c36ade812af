"""Console login: the password hash file, sessions with CSRF tokens, a login rate limit.

The password is never in the config (which travels over MQTT, redacted or not): `edgelive web
passwd` writes `web.passwd` (0600) in the state directory, an scrypt hash (memory-hard:
16 MiB per guess with the parameters below). Sessions live in memory only, so a restart logs
everyone out; each has its own CSRF token that every changing request must echo in a header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PASSWD_FILE = "web.passwd"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # 128 * r * n = 16 MiB per hash
MIN_PASSWORD = 8
MAX_PASSWORD = 256


def passwd_path(state_dir: Path) -> Path:
    return state_dir / PASSWD_FILE


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * n * r + 1024 * 1024, dklen=32)


def hash_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValueError(f"the password needs {MIN_PASSWORD}–{MAX_PASSWORD} characters")
    salt = os.urandom(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    b64 = base64.b64encode
    return (f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}$"
            f"{b64(digest).decode()}")


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of `password` against a `hash_password` line; False if malformed."""
    try:
        scheme, n, r, p, salt, digest = stored.strip().split("$")
        if scheme != "scrypt" or len(password) > MAX_PASSWORD:
            return False
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
        return hmac.compare_digest(actual, base64.b64decode(digest))
    except ValueError:
        return False


def write_passwd(state_dir: Path, password: str) -> Path:
    """Store the hash atomically, readable by the box's user only."""
    path = passwd_path(state_dir)
    line = hash_password(password) + "\n"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def read_passwd(state_dir: Path) -> str | None:
    """The stored hash, or None when no console password was set."""
    try:
        text = passwd_path(state_dir).read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


@dataclass
class Session:
    csrf: str
    expires: float


@dataclass
class Sessions:
    """Session tokens → CSRF token and expiry (sliding); bounded in number."""

    lifetime_s: float
    clock: Callable[[], float] = time.monotonic
    limit: int = 32
    _by_token: dict[str, Session] = field(default_factory=dict)

    def create(self) -> tuple[str, Session]:
        self._expire()
        while len(self._by_token) >= self.limit:  # the oldest login goes first
            self._by_token.pop(next(iter(self._by_token)))
        token = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(32), self.clock() + self.lifetime_s)
        self._by_token[token] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        session = self._by_token.get(token)
        now = self.clock()
        if session is None or session.expires < now:
            self._by_token.pop(token, None)
            return None
        session.expires = now + self.lifetime_s
        return session

    def drop(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)

    def _expire(self) -> None:
        now = self.clock()
        for token in [t for t, s in self._by_token.items() if s.expires < now]:
            del self._by_token[token]


@dataclass
class LoginLimiter:
    """At most `attempts` failed logins per `window_s`, per client address and in total
    (a guesser with many addresses is slowed as much as one with a single address)."""

    attempts: int = 5
    window_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again; 0 = now."""
        now = self.clock()
        waits = []
        for key in (client, "*"):
            times = self._failures.get(key)
            if times is None:
                continue
            while times and now - times[0] > self.window_s:
                times.popleft()
            limit = self.attempts if key != "*" else self.attempts * 4
            if len(times) >= limit:
                waits.append(self.window_s - (now - times[0]))
        return max(waits, default=0.0)

    def failed(self, client: str) -> None:
        now = self.clock()
        if len(self._failures) > 1024:  # bounded: forget the quiet addresses
            self._failures = {k: v for k, v in self._failures.items()
                              if v and now - v[-1] <= self.window_s}
        for key in (client, "*"):
            self._failures.setdefault(key, deque()).append(now)
