"""The real servers tests run against (see edgelive.testbed)."""

import os
import re
import subprocess
from pathlib import Path

from edgelive.testbed import Mosquitto, NginxRtmp, free_port, wait_port

__all__ = ["Mosquitto", "NginxRtmp", "documented_mosquitto", "free_port", "wait_port"]


ACL_DOC = Path(__file__).resolve().parents[1] / "docs" / "mosquitto-acl.md"
# The doc's TLS listener is tested in test_fleet_tls.py; here it is replaced by plain TCP.
_TLS_LISTENER = ("listener", "certfile", "keyfile", "cafile", "require_certificate",
                 "use_identity_as_username")


def documented_block(heading: str) -> str:
    """The code block under `## <heading>` in docs/mosquitto-acl.md, verbatim."""
    match = re.search(rf"^## {re.escape(heading)}\n.*?^```\n(.*?)^```", ACL_DOC.read_text(),
                      re.MULTILINE | re.DOTALL)
    if match is None:
        raise LookupError(f"no code block under '## {heading}' in {ACL_DOC}")
    return match.group(1)


def documented_mosquitto(workdir: Path, users: dict[str, str]) -> Mosquitto:
    """mosquitto with the broker settings and ACL file of docs/mosquitto-acl.md, and a
    password file (made with mosquitto_passwd) holding `users` (name → password)."""
    workdir.mkdir(parents=True, exist_ok=True)
    passwd, acl = workdir / "passwd", workdir / "edgelive.acl"
    passwd.write_text("")
    for name, password in users.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), name, password],
                       check=True, capture_output=True)
    acl.write_text(documented_block("/etc/mosquitto/edgelive.acl"))
    files = {"password_file": passwd, "acl_file": acl}
    settings = []
    for line in documented_block("mosquitto.conf").splitlines():
        name, _, value = line.partition(" ")
        if not name or name.startswith("#") or name in _TLS_LISTENER:
            continue
        settings.append(f"{name} {files.get(name, value.strip())}")
    # As root, mosquitto reads the password and ACL files as the `mosquitto` user, who cannot
    # read pytest's tmp_path: let it keep root.
    if os.geteuid() == 0:
        settings.append("user root")
    return Mosquitto(workdir, "\n".join(settings))
