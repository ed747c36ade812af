"""The layered configuration store (SPEC §2).

Layers, lowest first: built-in defaults < `edgelive.toml` on the boot partition (imported on
first boot, then rewritten without secrets and renamed, because the FAT partition is readable
by anyone holding the card) < the state directory's `config.toml` (last good, mode 0600) <
desired partial documents from the fleet, applied through `apply()`.

A document is validated as a whole: every error carries its dotted kebab-case location, and a
rejected document leaves the running config untouched. Writes are atomic (temp file in the
same directory, fsync, rename, fsync of the directory) and keep the previous good copy, so a
power cut at any moment leaves a config that was once written. Calls block on fsync: an
asyncio caller runs `apply()` in a thread.
"""

from __future__ import annotations

import os
import re
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, SecretStr, ValidationError

from edgelive.config.schema import EdgeliveConfig
from edgelive.redact import MASK, redact_url

STATE_FILE = "config.toml"
PREVIOUS_FILE = "config.prev.toml"
IMPORTED_SUFFIX = ".imported.toml"
DOCUMENT_LOC = "(document)"
SECRET_KEYS = (("mqtt", "password"),)

_TOML_POS_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)")


def default_state_dir() -> Path:
    """systemd's StateDirectory= sets $STATE_DIRECTORY; elsewhere the FHS place."""
    return Path(os.environ.get("STATE_DIRECTORY", "/var/lib/edgelive").split(":")[0])


def default_boot_file() -> Path:
    """Bookworm mounts the boot partition at /boot/firmware, older releases at /boot."""
    firmware = Path("/boot/firmware")
    return (firmware if firmware.is_dir() else Path("/boot")) / "edgelive.toml"


class ConfigError(Exception):
    """A document was rejected; `errors` holds `{"loc": "pusher.fps", "msg": …}` per problem."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['loc']}: {e['msg']}" for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class ApplyResult:
    applied: bool
    errors: list[dict[str, str]]
    config: EdgeliveConfig
    changed: set[str] = field(default_factory=set)


# -- documents: plain kebab-case dicts ------------------------------------------------------


def _unwrap(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def drop_none(doc: dict[str, Any]) -> dict[str, Any]:
    """TOML has no null; an absent key means "unset" (every optional key defaults to None)."""
    return {k: drop_none(v) if isinstance(v, dict) else v
            for k, v in doc.items() if v is not None}


def to_document(cfg: EdgeliveConfig) -> dict[str, Any]:
    """The full document with secrets in clear: for the 0600 state file only."""
    return drop_none(_unwrap(cfg.model_dump(by_alias=True)))


def to_toml(cfg: EdgeliveConfig) -> str:
    return tomli_w.dumps(to_document(cfg))


def parse_toml(text: str) -> dict[str, Any]:
    """Parse TOML; a syntax error becomes a ConfigError located at its line and column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        pos = _TOML_POS_RE.search(message)
        loc = f"line {pos[1]}, column {pos[2]}" if pos else DOCUMENT_LOC
        raise ConfigError([{"loc": loc, "msg": _TOML_POS_RE.sub("", message)}]) from None


def _model_at(path: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = EdgeliveConfig
    for part in path:
        fields = {f.alias or name: f for name, f in model.model_fields.items()}
        sub = fields[part].annotation if part in fields else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return None
        model = sub
    return model


def _error(loc: tuple[int | str, ...], msg: str) -> dict[str, str]:
    parts = [str(p) for p in loc]
    msg = msg.removeprefix("Value error, ")
    if msg == "Extra inputs are not permitted":
        msg = "unknown key"
    model = _model_at(parts)
    if model is not None:  # a cross-field check: locate it at the key its message names
        first_word = msg.split(" ", 1)[0]
        if any(f.alias == first_word for f in model.model_fields.values()):
            parts.append(first_word)
    return {"loc": ".".join(parts) or DOCUMENT_LOC, "msg": msg}


def validate_document(doc: Any) -> EdgeliveConfig:
    """A whole document (missing keys take their defaults) → config, or ConfigError.

    Strict: `fps = "30"` or `muted = 1` is a type error, not a silent conversion.
    """
    try:
        return EdgeliveConfig.model_validate(doc, strict=True)
    except ValidationError as exc:
        raise ConfigError([_error(e["loc"], e["msg"]) for e in exc.errors()]) from None


def deep_merge(base: dict[str, Any], partial: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value (lists included) replaces the base's."""
    merged = dict(base)
    for key, value in partial.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _leaves(doc: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in doc.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def changed_keys(old: EdgeliveConfig, new: EdgeliveConfig) -> set[str]:
    """Dotted kebab keys whose values differ, e.g. {"pusher.max-bitrate"}."""
    before = dict(_leaves(_unwrap(old.model_dump(by_alias=True))))
    after = dict(_leaves(_unwrap(new.model_dump(by_alias=True))))
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}


def _sparse(doc: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Only what differs from `base`, so a firmware update can still change defaults."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            sub = _sparse(value, base[key])
            if sub:
                out[key] = sub
        elif base.get(key) != value:
            out[key] = value
    return out


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value


def redacted(cfg: EdgeliveConfig) -> dict[str, Any]:
    """The full document for reports and logs: secrets masked, unset keys as None."""
    doc = _mask(_unwrap(cfg.model_dump(by_alias=True)))
    for section, key in SECRET_KEYS:
        if doc[section][key]:
            doc[section][key] = MASK
    return doc


def _without_secrets(cfg: EdgeliveConfig) -> dict[str, Any]:
    doc = _sparse(_mask(to_document(cfg)), to_document(EdgeliveConfig()))
    for section, key in SECRET_KEYS:
        doc.get(section, {}).pop(key, None)
    return doc


def load_file(path: Path) -> EdgeliveConfig:
    """Read and validate one TOML file (OSError if unreadable, ConfigError if invalid)."""
    return validate_document(parse_toml(path.read_text(encoding="utf-8")))


# -- files ----------------------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


class ConfigStore:
    """Effective config from the layers; `apply()` validates, persists and reports changes."""

    validate_document = staticmethod(validate_document)

    def __init__(self, state_dir: Path, boot_file: Path | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.boot_file = boot_file
        self.current = EdgeliveConfig()
        self.rev = 0
        # Problems found by the last load(): {"file", "loc", "msg"}; the config still loaded.
        self.load_errors: list[dict[str, str]] = []
        self._lock = threading.Lock()

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    def load(self, *, provision: bool = True) -> EdgeliveConfig:
        """Build the effective config; never raises for bad files, records them instead.

        With `provision` (the supervisor), a first-boot boot file is imported into the state
        directory and retired; without it (`edgelive config show`) nothing is written.
        """
        with self._lock:
            self.load_errors = []
            state = self._read_state()
            if state is not None:
                self.current, self.rev = state
                if self.boot_file is not None and self.boot_file.is_file():
                    self._note(self.boot_file, DOCUMENT_LOC, "not imported: the box is "
                               "already provisioned (a factory reset imports it)")
            else:
                self.current, self.rev = self._read_boot(provision), 0
            return self.current

    def merge(self, partial: dict[str, Any]) -> EdgeliveConfig:
        """`partial` deep-merged onto the current config and validated; changes nothing."""
        if not isinstance(partial, dict):
            raise ConfigError([{"loc": DOCUMENT_LOC, "msg": "must be a table of sections"}])
        return validate_document(deep_merge(to_document(self.current), partial))

    def apply(self, partial: dict[str, Any], rev: int | None = None) -> ApplyResult:
        """Merge, validate and persist a desired partial config (`rev` from the fleet)."""
        with self._lock:
            try:
                cfg = self.merge(partial)
            except ConfigError as exc:
                return ApplyResult(False, exc.errors, self.current)
            new_rev = self.rev if rev is None else rev
            changed = changed_keys(self.current, cfg)
            if changed or new_rev != self.rev or not self.state_file.exists():
                try:
                    self._write_state(cfg, new_rev)
                except OSError as exc:
                    error = {"loc": DOCUMENT_LOC, "msg": f"cannot save: {exc.strerror}"}
                    return ApplyResult(False, [error], self.current)
            self.current, self.rev = cfg, new_rev
            return ApplyResult(True, [], cfg, changed)

    def factory_reset(self) -> EdgeliveConfig:
        """Forget the state copies; a boot file present now is imported as on first boot."""
        with self._lock:
            for name in (STATE_FILE, PREVIOUS_FILE):
                (self.state_dir / name).unlink(missing_ok=True)
            if self.state_dir.is_dir():
                _fsync_dir(self.state_dir)
        return self.load()

    # -- internals

    def _note(self, path: Path, loc: str, msg: str) -> None:
        self.load_errors.append({"file": str(path), "loc": loc, "msg": msg})

    def _read_state(self) -> tuple[EdgeliveConfig, int] | None:
        # A missing config.toml next to a previous copy is a write cut between its renames.
        for path in (self.state_dir / STATE_FILE, self.state_dir / PREVIOUS_FILE):
            if not path.exists():
                continue
            try:
                doc = parse_toml(path.read_text(encoding="utf-8"))
                rev = doc.pop("rev", 0)
                if not isinstance(rev, int):
                    raise ConfigError([{"loc": "rev", "msg": "must be an integer"}])
                return validate_document(doc), rev
            except ConfigError as exc:
                for error in exc.errors:
                    self._note(path, error["loc"], error["msg"])
            except (OSError, UnicodeDecodeError) as exc:
                self._note(path, DOCUMENT_LOC, f"unreadable: {exc}")
        return None

    def _read_boot(self, provision: bool) -> EdgeliveConfig:
        boot = self.boot_file
        if boot is None or not boot.is_file():
            return EdgeliveConfig()
        try:
            cfg = load_file(boot)
        except ConfigError as exc:  # left in place so it can be fixed on the card
            for error in exc.errors:
                self._note(boot, error["loc"], error["msg"])
            return EdgeliveConfig()
        except (OSError, UnicodeDecodeError) as exc:
            self._note(boot, DOCUMENT_LOC, f"unreadable: {exc}")
            return EdgeliveConfig()
        if provision:
            self._write_state(cfg, 0)
            self._retire_boot_file(boot, cfg)
        return cfg

    def _retire_boot_file(self, boot: Path, cfg: EdgeliveConfig) -> None:
        """Overwrite the boot file without its secrets, then rename it out of the way."""
        header = ("# Imported into the box's state directory; secrets removed.\n"
                  "# To provision again: put a new edgelive.toml here and factory-reset.\n")
        try:
            with open(boot, "w", encoding="utf-8") as out:
                out.write(header + tomli_w.dumps(_without_secrets(cfg)))
                out.flush()
                os.fsync(out.fileno())
            os.replace(boot, boot.with_suffix(IMPORTED_SUFFIX))
            _fsync_dir(boot.parent)
        except OSError as exc:
            self._note(boot, DOCUMENT_LOC, f"imported, but could not be retired: {exc}")

    def _write_state(self, cfg: EdgeliveConfig, rev: int) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        doc = {"rev": rev, **_sparse(to_document(cfg), to_document(EdgeliveConfig()))}
        text = "# edgelive: last good configuration (differences from the defaults)\n"
        tmp = self.state_dir / f".{STATE_FILE}.tmp"
        _write_synced(tmp, text + tomli_w.dumps(doc))
        if self.state_file.exists():
            os.replace(self.state_file, self.state_dir / PREVIOUS_FILE)
        os.replace(tmp, self.state_file)
        _fsync_dir(self.state_dir)
