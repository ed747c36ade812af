"""A shaped uplink on this machine: the box and nginx-rtmp in two network namespaces (root).

    root ns (reader) ──veth── server ns (nginx-rtmp) ──veth── box ns (`edgelive push`)
                                                       ▲ tbf on the box's side: the uplink

With a round trip or a loss rate (`rtt_ms`, `loss`), the box's hop is a `wire.Wire` instead
of the veth pair: two TUN devices and a process that holds each packet for half the round
trip and drops the given fraction in each direction (this kernel has no sch_netem); tbf
sits on the box's TUN device as it does on the veth.

Addresses are two /30s inside 10.231.0.0/24 that exist only on these two hops, so no
traffic leaves the machine. The box's namespace leaves `net.ipv4.tcp_notsent_lowat` unset,
as on any stock Linux (the pusher sets it on its own socket); `notsent_lowat` sets it as the
box's image does. Everything is removed by `close()`, also after a failure.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import subprocess
from pathlib import Path

from edgelive.bench.wire import Wire
from edgelive.testbed import NginxRtmp

QUEUE_LATENCY_MS = 1000
"""tbf's own queue (the modem's buffer on a real uplink): up to 1 s of the link rate."""
BURST_BYTES = 16 * 1024


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def _free_block() -> int:
    """A /29 of 10.231.0.0/24 no interface uses yet (two /30s: box and reader links)."""
    used = sh("ip", "-o", "-4", "addr", "show")
    blocks = list(range(0, 256, 8))
    random.shuffle(blocks)
    for base in blocks:
        net = ipaddress.ip_network(f"10.231.0.{base}/29")
        if not any(f"inet {addr}/" in used for addr in net):
            return base
    raise RuntimeError("10.231.0.0/24 is full")


class ShapedLink:
    """Namespaces, veth pairs, tbf and an nginx-rtmp inside; use as a context manager."""

    def __init__(self, workdir: Path, kbps: int = 1500,
                 notsent_lowat: int | None = None, rtt_ms: int = 0,
                 loss: float = 0.0) -> None:
        if os.geteuid() != 0:
            raise PermissionError("network namespaces, veth and tc need root")
        base = _free_block()
        tag = f"{os.getpid() % 10000}{base // 8}"
        self.box_ns, self.server_ns = f"elbox{tag}", f"elsrv{tag}"
        self._box_if, self._server_box_if = f"elb{tag}", f"els{tag}"
        self._root_if, self._server_root_if = f"elr{tag}", f"elt{tag}"
        self.server_ip = f"10.231.0.{base + 2}"  # as the box sees the server
        self.reader_ip = f"10.231.0.{base + 6}"  # as the root namespace sees it
        self._box_ip, self._root_ip = f"10.231.0.{base + 1}", f"10.231.0.{base + 5}"
        self._workdir = workdir
        self.nginx: NginxRtmp | None = None
        self.kbps = kbps
        self._notsent_lowat = notsent_lowat
        self.rtt_ms, self.loss = rtt_ms, loss
        self._wire: Wire | None = None
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        for ns in (self.box_ns, self.server_ns):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        if self.rtt_ms or self.loss:
            self._wire = Wire((self._box_if, self._server_box_if), self.rtt_ms / 2, self.loss)
        else:
            sh("ip", "link", "add", self._box_if, "type", "veth", "peer", "name",
               self._server_box_if)
        self._place(self._box_if, self.box_ns, self._box_ip,
                    self._server_box_if, self.server_ip)
        sh("ip", "link", "add", self._root_if, "type", "veth", "peer", "name",
           self._server_root_if)
        self._place(self._root_if, None, self._root_ip, self._server_root_if, self.reader_ip)
        if self._notsent_lowat is not None:
            sh("ip", "netns", "exec", self.box_ns, "sysctl", "-q", "-w",
               f"net.ipv4.tcp_notsent_lowat={self._notsent_lowat}")
        self._tbf("add", self.kbps)
        self.nginx = NamespacedNginx(self._workdir / "nginx", self.server_ns, self.reader_ip)
        self.nginx.start()

    def _place(self, near: str, near_ns: str | None, near_ip: str, far: str,
               far_ip: str) -> None:
        """Move the two ends of a hop made in the root namespace (veth pair or wire) to
        where they belong and address them."""
        sh("ip", "link", "set", far, "netns", self.server_ns)
        sh("ip", "-n", self.server_ns, "addr", "add", f"{far_ip}/30", "dev", far)
        sh("ip", "-n", self.server_ns, "link", "set", far, "up")
        if near_ns is not None:
            sh("ip", "link", "set", near, "netns", near_ns)
        where = ["-n", near_ns] if near_ns else []
        sh("ip", *where, "addr", "add", f"{near_ip}/30", "dev", near)
        sh("ip", *where, "link", "set", near, "up")

    def _tbf(self, verb: str, kbps: int) -> None:
        sh("ip", "netns", "exec", self.box_ns, "tc", "qdisc", verb, "dev", self._box_if,
           "root", "tbf", "rate", f"{kbps}kbit", "burst", str(BURST_BYTES),
           "latency", f"{QUEUE_LATENCY_MS}ms")

    def shape(self, kbps: int) -> None:
        """Change the uplink's rate now."""
        self._tbf("change", kbps)
        self.kbps = kbps

    def box_url(self, name: str) -> str:
        assert self.nginx is not None
        return f"rtmp://{self.server_ip}:{self.nginx.port}/live/{name}"

    def box_argv(self, argv: list[str]) -> list[str]:
        """`argv` run inside the box's namespace."""
        return ["ip", "netns", "exec", self.box_ns, *argv]

    def close(self) -> None:
        """Stop nginx and the wire, delete both namespaces (their veth ends go with them);
        safe twice."""
        if self.nginx is not None:
            with contextlib.suppress(Exception):
                self.nginx.stop()
            self.nginx = None
        if self._wire is not None:
            self._wire.close()  # its TUN devices go with its descriptors
            self._wire = None
        for ns in (self.box_ns, self.server_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self._root_if], capture_output=True)

    def __enter__(self) -> ShapedLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NamespacedNginx(NginxRtmp):
    """The testbed's nginx-rtmp, listening on every address of a namespace."""

    def __init__(self, workdir: Path, ns: str, host: str) -> None:
        super().__init__(workdir)
        self._ns = ns
        self.host = host  # where the root namespace reaches it (url(), stat())
        self.conf.write_text(self.conf.read_text().replace("listen 127.0.0.1:", "listen "))

    def _argv(self) -> list[str]:
        return ["ip", "netns", "exec", self._ns, *super()._argv()]
