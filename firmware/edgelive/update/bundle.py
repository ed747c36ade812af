"""Release bundles: wheels and a signed manifest in one uncompressed tar.

Members: `manifest.json` (format, version, target, every wheel's size and SHA-256),
`manifest.sig` (the Ed25519 signature of manifest.json's exact bytes) and `wheels/*.whl`.
Wheels are zip files already, so the tar is not compressed. A box trusts a bundle only
when the signature verifies with one of its public keys, the target is its own, every
wheel's hash matches, and nothing is over the size limit — checked before anything is
installed, so a refused bundle changes nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FORMAT = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
WHEELS = "wheels/"
MAX_BUNDLE_BYTES = 200 * 1024 * 1024
"""Default size limit: a full release for a Pi (PyAV and numpy included) is ~80 MB."""
_CHUNK = 1 << 20


class BundleError(Exception):
    """A bundle the box refuses; the message says why."""


def box_target(machine: str | None = None) -> str:
    """This interpreter's target, as a manifest names it: `cp311-linux_aarch64`."""
    return f"cp{sys.version_info.major}{sys.version_info.minor}-linux_" \
        f"{machine or platform.machine()}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# -- keys


def generate_keys(private_path: Path, public_path: Path) -> None:
    """A new Ed25519 key pair as PEM files; the private one readable by its owner only."""
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    private_path.touch(mode=0o600, exist_ok=False)  # never overwrite a key in use
    private_path.write_bytes(private_pem)
    public_path.write_bytes(public_pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path} is not an Ed25519 private key")
    return key


def load_public_keys(paths: list[Path]) -> list[Ed25519PublicKey]:
    keys = []
    for path in paths:
        key = serialization.load_pem_public_key(path.read_bytes())
        if not isinstance(key, Ed25519PublicKey):
            raise BundleError(f"{path} is not an Ed25519 public key")
        keys.append(key)
    return keys


# -- building


@dataclass(frozen=True)
class Manifest:
    version: str
    target: str
    wheels: dict[str, dict[str, Any]]  # member name → {"sha256": …, "size": …}

    def to_bytes(self) -> bytes:
        return json.dumps({"format": FORMAT, "version": self.version, "target": self.target,
                           "wheels": self.wheels}, indent=1, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            doc = json.loads(data)
            if doc["format"] != FORMAT:
                raise BundleError(f"bundle format {doc['format']} is not {FORMAT}")
            return cls(str(doc["version"]), str(doc["target"]), dict(doc["wheels"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise BundleError(f"malformed manifest: {exc}") from None


def build_bundle(wheels: list[Path], version: str, target: str, key: Ed25519PrivateKey,
                 out: Path) -> Manifest:
    """Write the bundle `out` from `wheels` (edgelive's and its dependencies')."""
    if not any(w.name.startswith(f"edgelive-{version}-") for w in wheels):
        raise BundleError(f"no edgelive-{version} wheel among {[w.name for w in wheels]}")
    manifest = Manifest(version, target, {
        WHEELS + w.name: {"sha256": sha256_file(w), "size": w.stat().st_size}
        for w in sorted(wheels)})
    data = manifest.to_bytes()
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, MANIFEST, data)
        _add_bytes(tar, SIGNATURE, key.sign(data))
        for wheel in sorted(wheels):
            tar.add(wheel, WHEELS + wheel.name, recursive=False)
    tmp.replace(out)
    return manifest


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


# -- verifying


def verify_bundle(path: Path, keys: list[Ed25519PublicKey], *, target: str | None = None,
                  max_bytes: int = MAX_BUNDLE_BYTES, sha256: str | None = None) -> Manifest:
    """The bundle's manifest when every check passes; BundleError saying which one failed."""
    size = path.stat().st_size
    if size > max_bytes:
        raise BundleError(f"bundle is {size} bytes, over the limit of {max_bytes}")
    if sha256 is not None and sha256_file(path).lower() != sha256.lower():
        raise BundleError("bundle SHA-256 does not match the one in the update command")
    if not keys:
        raise BundleError("this box has no release public key to verify with")
    try:
        with tarfile.open(path, "r:") as tar:
            members = {m.name: m for m in tar.getmembers()}
            if MANIFEST not in members:
                raise BundleError("not a release bundle: no manifest.json")
            if SIGNATURE not in members:
                raise BundleError("bundle is not signed: no manifest.sig")
            data = _read(tar, members[MANIFEST])
            signature = _read(tar, members[SIGNATURE])
            if not _signed_by(keys, signature, data):
                raise BundleError("bundle signature does not verify with this box's "
                                  "release key")
            manifest = Manifest.from_bytes(data)
            wanted = target or box_target()
            if manifest.target != wanted:
                raise BundleError(f"bundle is for {manifest.target}, this box is {wanted}")
            _check_wheels(tar, members, manifest)
    except tarfile.TarError as exc:
        raise BundleError(f"not a release bundle: {exc}") from None
    return manifest


def _signed_by(keys: list[Ed25519PublicKey], signature: bytes, data: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, data)
        except InvalidSignature:
            continue
        return True
    return False


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int = 1 << 20) -> bytes:
    if not member.isfile() or member.size > limit:
        raise BundleError(f"bundle member {member.name} is not a small regular file")
    f = tar.extractfile(member)
    assert f is not None  # a regular file always has a reader
    return f.read()


def _check_wheels(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo],
                  manifest: Manifest) -> None:
    extra = set(members) - set(manifest.wheels) - {MANIFEST, SIGNATURE}
    if extra:
        raise BundleError(f"bundle holds files the manifest does not list: {sorted(extra)}")
    for name, want in manifest.wheels.items():
        member = members.get(name)
        if (member is None or not member.isfile() or not name.startswith(WHEELS)
                or "/" in name[len(WHEELS):] or not name.endswith(".whl")):
            raise BundleError(f"bundle lacks the wheel {name} its manifest lists")
        f = tar.extractfile(member)
        assert f is not None
        digest = hashlib.sha256()
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
        if digest.hexdigest() != want["sha256"] or member.size != want["size"]:
            raise BundleError(f"hash of {name} does not match the signed manifest")


def extract_wheels(path: Path, manifest: Manifest, dest: Path) -> list[Path]:
    """The verified bundle's wheels written into `dest` (names checked by verify_bundle),
    hashed again as they are written: the file could have changed since it was verified."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    with tarfile.open(path, "r:") as tar:
        for name, want in manifest.wheels.items():
            f = tar.extractfile(name)
            assert f is not None
            target = dest / name[len(WHEELS):]
            digest = hashlib.sha256()
            with target.open("wb") as w:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
                    w.write(chunk)
            if digest.hexdigest() != want["sha256"]:
                raise BundleError(f"hash of {name} changed after verification")
            out.append(target)
    return out
