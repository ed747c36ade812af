"""`edgelive release keygen|build|verify|guard`: make, sign and check release bundles
(docs/updates.md); `guard` is the box's start guard, run by systemd before each start."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

_WHEEL_VERSION = re.compile(r"^edgelive-([^-]+)-")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("release", help="make, sign and verify release bundles")
    sub = parser.add_subparsers(dest="release_command", required=True, metavar="ACTION")

    keygen = sub.add_parser("keygen", help="make an Ed25519 key pair for signing releases")
    keygen.add_argument("--out", type=Path, default=Path("release"),
                        help="writes OUT.key (private, keep it off the boxes) and OUT.pub "
                        "(goes into the image) (default: %(default)s)")
    keygen.set_defaults(func=_keygen)

    build = sub.add_parser("build", help="build and sign a release bundle")
    build.add_argument("--key", type=Path, required=True, help="private key (PEM)")
    build.add_argument("--target", default="cp311-linux_aarch64",
                       help="interpreter and machine of the boxes (default: %(default)s)")
    build.add_argument("--project", type=Path, default=Path("."),
                       help="edgelive source tree to build the wheel from (default: .)")
    build.add_argument("--wheels", type=Path,
                       help="use the wheels in this directory instead of building and "
                       "downloading them")
    build.add_argument("--out", type=Path, default=Path("dist"),
                       help="directory for edgelive-VERSION-TARGET.bundle (default: dist)")
    build.set_defaults(func=_build)

    verify = sub.add_parser("verify", help="check a bundle as a box would")
    verify.add_argument("bundle", type=Path)
    verify.add_argument("--pub", type=Path, action="append", required=True,
                        help="public key (PEM); repeat for several")
    verify.add_argument("--target", help="default: this machine's")
    verify.add_argument("--max-bytes", type=int, help="size limit (default: the box's)")
    verify.set_defaults(func=_verify)

    guard = sub.add_parser("guard", help="start guard (systemd ExecStartPre): roll back a "
                           "release on probation that keeps failing to start")
    guard.add_argument("--root", type=Path, default=Path("/opt/edgelive"))
    guard.add_argument("--state-dir", type=Path, help="restore this state dir's config on "
                       "rollback (default: the one the update recorded)")
    guard.set_defaults(func=_guard)


def _keygen(args: argparse.Namespace) -> int:
    from edgelive.update.bundle import generate_keys

    private, public = args.out.with_suffix(".key"), args.out.with_suffix(".pub")
    try:
        generate_keys(private, public)
    except FileExistsError:
        print(f"edgelive release keygen: {private} exists; not overwriting a key",
              file=sys.stderr)
        return 1
    print(f"private key: {private} (sign with it; keep it off the boxes)\n"
          f"public key:  {public} (put it in the image as /opt/edgelive/keys/release.pub)")
    return 0


def _build(args: argparse.Namespace) -> int:
    from edgelive.update.bundle import BundleError, build_bundle, load_private_key

    key = load_private_key(args.key)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            wheel_dir = args.wheels or _collect_wheels(args.project, args.target, Path(tmp))
        except subprocess.CalledProcessError as exc:
            print(f"edgelive release build: pip failed ({exc.returncode}); see above",
                  file=sys.stderr)
            return 1
        wheels = sorted(wheel_dir.glob("*.whl"))
        versions = [m.group(1) for w in wheels if (m := _WHEEL_VERSION.match(w.name))]
        if len(versions) != 1:
            print(f"edgelive release build: need exactly one edgelive wheel in {wheel_dir}, "
                  f"found {len(versions)}", file=sys.stderr)
            return 1
        args.out.mkdir(parents=True, exist_ok=True)
        out = args.out / f"edgelive-{versions[0]}-{args.target}.bundle"
        try:
            manifest = build_bundle(wheels, versions[0], args.target, key, out)
        except BundleError as exc:
            print(f"edgelive release build: {exc}", file=sys.stderr)
            return 1
    from edgelive.update.bundle import sha256_file

    print(f"{out}\nversion {manifest.version}, target {manifest.target}, "
          f"{len(manifest.wheels)} wheels, {out.stat().st_size} bytes\nsha256 {sha256_file(out)}")
    return 0


def _collect_wheels(project: Path, target: str, tmp: Path) -> Path:
    """edgelive's wheel built from `project`, and every dependency's binary wheel for
    `target` downloaded by pip (manylinux up to Debian bookworm's glibc 2.36)."""
    python, _, machine = target.partition("-linux_")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--quiet", "-w", str(tmp), str(project)],
                   check=True)
    [wheel] = tmp.glob("edgelive-*.whl")
    # pip does not widen a manylinux tag to older glibcs by itself: name every one
    platforms = [arg for tag in [*(f"manylinux_2_{glibc}" for glibc in range(36, 16, -1)),
                                 "manylinux2014"]
                 for arg in ("--platform", f"{tag}_{machine}")]
    subprocess.run([*pip, "download", "--quiet", "--only-binary=:all:", *platforms,
                    "--implementation", "cp", "--python-version", python.removeprefix("cp"),
                    "--find-links", str(tmp), "-d", str(tmp), str(wheel)], check=True)
    return tmp


def _verify(args: argparse.Namespace) -> int:
    from edgelive.update.bundle import (
        MAX_BUNDLE_BYTES,
        BundleError,
        load_public_keys,
        verify_bundle,
    )

    try:
        manifest = verify_bundle(args.bundle, load_public_keys(args.pub), target=args.target,
                                 max_bytes=args.max_bytes or MAX_BUNDLE_BYTES)
    except BundleError as exc:
        print(f"edgelive release verify: refused: {exc}", file=sys.stderr)
        return 1
    print(f"ok: edgelive {manifest.version} for {manifest.target}, "
          f"{len(manifest.wheels)} wheels")
    return 0


def _guard(args: argparse.Namespace) -> int:
    from edgelive.update.slots import Slots

    # Never fails the start: a guard that cannot decide must not keep a box off.
    print(Slots(args.root).guard(args.state_dir))
    return 0
