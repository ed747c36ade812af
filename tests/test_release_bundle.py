"""Release bundles: keygen, build and sign, and a box's refusals (unsigned, wrong signature,
wrong hash, other target, over the size limit), each with its reason and nothing written."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from edgelive.update.bundle import (
    MANIFEST,
    SIGNATURE,
    BundleError,
    box_target,
    build_bundle,
    load_private_key,
    load_public_keys,
    verify_bundle,
)

FIRMWARE = Path(__file__).parents[1] / "firmware" / "edgelive"


def make_wheel(out_dir: Path, version: str, *, broken: str = "") -> Path:
    """An edgelive wheel of this source tree that says it is `version`; with `broken` (a
    module file, e.g. `__main__.py`), one where that module exits as it is imported."""
    files: dict[str, bytes] = {}
    for path in sorted(FIRMWARE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            files[f"edgelive/{path.relative_to(FIRMWARE)}"] = path.read_bytes()
    files["edgelive/__init__.py"] = files["edgelive/__init__.py"].replace(
        b'__version__ = "', f'__version__ = "{version}"  # was "'.encode())
    if broken:
        files[f"edgelive/{broken}"] = b"raise SystemExit('edgelive: broken release')\n"
    dist = f"edgelive-{version}.dist-info/"
    files[dist + "METADATA"] = f"Metadata-Version: 2.1\nName: edgelive\nVersion: {version}\n" \
        .encode()
    files[dist + "WHEEL"] = b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n" \
        b"Tag: py3-none-any\n"
    record = [f"{name},sha256={_record_hash(data)},{len(data)}" for name, data in files.items()]
    files[dist + "RECORD"] = ("\n".join([*record, f"{dist}RECORD,,"]) + "\n").encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"edgelive-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return wheel


def _record_hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def edgelive_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgelive", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    """A key pair made by `edgelive release keygen`."""
    done = edgelive_cli("release", "keygen", "--out", str(tmp_path / "release"))
    assert done.returncode == 0, done.stderr
    return tmp_path / "release.key", tmp_path / "release.pub"


def test_keygen_build_verify_round_trip(keys: tuple[Path, Path], tmp_path: Path) -> None:
    private, public = keys
    assert private.stat().st_mode & 0o077 == 0, "the private key is readable by others"
    again = edgelive_cli("release", "keygen", "--out", str(tmp_path / "release"))
    assert again.returncode == 1 and "not overwriting" in again.stderr
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "0.2.0")
    done = edgelive_cli("release", "build", "--key", str(private), "--wheels", str(wheels),
                        "--target", box_target(), "--out", str(tmp_path / "dist"))
    assert done.returncode == 0, done.stderr
    bundle = tmp_path / "dist" / f"edgelive-0.2.0-{box_target()}.bundle"
    assert f"sha256 {hashlib.sha256(bundle.read_bytes()).hexdigest()}" in done.stdout
    ok = edgelive_cli("release", "verify", str(bundle), "--pub", str(public))
    assert ok.returncode == 0 and "edgelive 0.2.0" in ok.stdout, ok.stderr
    manifest = verify_bundle(bundle, load_public_keys([public]),
                             sha256=hashlib.sha256(bundle.read_bytes()).hexdigest())
    assert manifest.version == "0.2.0" and list(manifest.wheels) == \
        ["wheels/edgelive-0.2.0-py3-none-any.whl"]


def _rewrite(bundle: Path, out: Path, *, drop: str = "", replace: dict[str, bytes] | None = None,
             ) -> Path:
    """A copy of `bundle` with a member left out or its bytes replaced (same names)."""
    with tarfile.open(bundle) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            if member.name == drop:
                continue
            data = (replace or {}).get(member.name)
            if data is None:
                data = src.extractfile(member).read()  # type: ignore[union-attr]
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return out


@pytest.fixture
def signed(keys: tuple[Path, Path], tmp_path: Path) -> Path:
    wheel = make_wheel(tmp_path / "wheels", "0.2.0")
    out = tmp_path / "good.bundle"
    build_bundle([wheel], "0.2.0", box_target(), load_private_key(keys[0]), out)
    return out


def refusal(bundle: Path, public: Path, **kwargs: object) -> str:
    before = sorted(p.name for p in bundle.parent.iterdir())
    with pytest.raises(BundleError) as err:
        verify_bundle(bundle, load_public_keys([public]), **kwargs)  # type: ignore[arg-type]
    assert sorted(p.name for p in bundle.parent.iterdir()) == before, "verify wrote files"
    return str(err.value)


def test_refuses_unsigned(signed: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    unsigned = _rewrite(signed, tmp_path / "unsigned.bundle", drop=SIGNATURE)
    assert refusal(unsigned, keys[1]) == "bundle is not signed: no manifest.sig"


def test_refuses_a_signature_by_another_key(signed: Path, keys: tuple[Path, Path],
                                             tmp_path: Path) -> None:
    assert edgelive_cli("release", "keygen", "--out", str(tmp_path / "other")).returncode == 0
    wheel = make_wheel(tmp_path / "w2", "0.2.0")
    forged = tmp_path / "forged.bundle"
    build_bundle([wheel], "0.2.0", box_target(), load_private_key(tmp_path / "other.key"),
                 forged)
    assert "signature does not verify" in refusal(forged, keys[1])
    # the manifest edited after signing (a newer version claimed) fails the same way
    with tarfile.open(signed) as tar:
        manifest = tar.extractfile(MANIFEST).read()  # type: ignore[union-attr]
    edited = _rewrite(signed, tmp_path / "edited.bundle",
                      replace={MANIFEST: manifest.replace(b"0.2.0", b"0.9.0")})
    assert "signature does not verify" in refusal(edited, keys[1])


def test_refuses_wrong_hashes(signed: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    name = "wheels/edgelive-0.2.0-py3-none-any.whl"
    with tarfile.open(signed) as tar:
        wheel = bytearray(tar.extractfile(name).read())  # type: ignore[union-attr]
    wheel[100] ^= 0xFF
    tampered = _rewrite(signed, tmp_path / "tampered.bundle", replace={name: bytes(wheel)})
    assert refusal(tampered, keys[1]) == f"hash of {name} does not match the signed manifest"
    # the bundle's own hash, as the update command gives it
    assert "SHA-256 does not match" in refusal(signed, keys[1], sha256="0" * 64)


def test_refuses_other_target_and_oversize(keys: tuple[Path, Path], signed: Path,
                                           tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "w3", "0.2.0")
    other = tmp_path / "other-target.bundle"
    build_bundle([wheel], "0.2.0", "cp311-linux_riscv64", load_private_key(keys[0]), other)
    assert refusal(other, keys[1]) == \
        f"bundle is for cp311-linux_riscv64, this box is {box_target()}"
    size = signed.stat().st_size
    assert refusal(signed, keys[1], max_bytes=size - 1) == \
        f"bundle is {size} bytes, over the limit of {size - 1}"


def test_refuses_what_is_not_a_bundle(keys: tuple[Path, Path], tmp_path: Path) -> None:
    junk = tmp_path / "junk.bundle"
    junk.write_bytes(b"<html>404</html>")
    assert refusal(junk, keys[1]).startswith("not a release bundle")
