"""Two private namespaces joined by two veth pairs: dedicated sync links for channel tests.

:class:`SyncLinks` creates namespaces ``a`` and ``b`` (names prefixed ``chan-``) and the
pairs ``s0``/``s0`` and ``s1``/``s1`` (same names on both sides) with
``10.231.«link».«1|2»/24`` and ``fd00:231:«link»::«1|2»/64``; :func:`channel_config`
writes the ``Sync`` transport block of one side; :func:`open_channels` opens our
:class:`~conntrack_tools.conntrackd.channels.MultiChannel` inside a namespace (the
sockets stay there) and :func:`pump` runs a loop until a condition holds.
"""
from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any, Callable

from conntrack_tools.conntrackd.channels import MultiChannel
from conntrack_tools.conntrackd.config import parse
from conntrack_tools.conntrackd.loop import Loop

from .netns import NetNS

SIDES = {"a": 1, "b": 2}


def v4(link: int, side: str) -> str:
    return f"10.231.{link}.{SIDES[side]}"


def v6(link: int, side: str) -> str:
    return str(ipaddress.IPv6Address(f"fd00:231:{link}::{SIDES[side]}"))


class SyncLinks:
    """Namespaces ``a`` and ``b`` with links ``s0`` and ``s1`` (see the module docstring)."""

    def __init__(self, links: int = 2, prefix: str = "chan") -> None:
        self.a = NetNS(prefix)
        self.b = NetNS(prefix)
        self.links = links

    def ns(self, side: str) -> NetNS:
        return self.a if side == "a" else self.b

    def create(self) -> "SyncLinks":
        self.a.create()
        try:
            self.b.create()
            for ns in (self.a, self.b):
                for conf in ("all", "default"):
                    # link-local addresses usable at once (no DAD); addresses kept while
                    # a test takes a link down
                    ns.sysctl(f"net.ipv6.conf.{conf}.accept_dad", 0)
                    ns.sysctl(f"net.ipv6.conf.{conf}.keep_addr_on_down", 1)
            for i in range(self.links):
                self.a.run("ip", "link", "add", f"s{i}", "type", "veth", "peer", "name",
                           f"s{i}", "netns", self.b.name)
                for side in "ab":
                    ns = self.ns(side)
                    ns.run("ip", "addr", "add", f"{v4(i, side)}/24", "dev", f"s{i}")
                    ns.run("ip", "addr", "add", f"{v6(i, side)}/64", "dev", f"s{i}", "nodad")
                    ns.run("ip", "link", "set", f"s{i}", "up")
            self.wait_ready()
        except BaseException:
            self.delete()
            raise
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Until every link has its carrier and IPv6 link-local address (datagrams sent
        before that are lost on the way)."""
        deadline = time.monotonic() + timeout
        for side in "ab":
            for i in range(self.links):
                while True:
                    out = self.ns(side).run("ip", "-6", "addr", "show", "dev", f"s{i}",
                                            "scope", "link").stdout
                    if "fe80" in out and "tentative" not in out and "LOWER_UP" in out:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"link s{i} of {side} not ready: {out}")
                    time.sleep(0.05)

    def delete(self) -> None:
        self.a.delete()
        self.b.delete()

    def link(self, side: str, i: int, state: str) -> None:
        """``ip link set s«i» up|down`` on one side."""
        self.ns(side).run("ip", "link", "set", f"s{i}", state)

    def __enter__(self) -> "SyncLinks":
        return self.create()

    def __exit__(self, *exc) -> None:
        self.delete()


def channel_config(kind: str, side: str, link: int = 0, *, port: int = 3780,
                   default: bool = False, extra: str = "") -> str:
    """One transport block: ``kind`` is multicast4/multicast6/udp4/udp6/tcp4/tcp6."""
    peer = "b" if side == "a" else "a"
    dflt = " Default" if default else ""
    if kind == "multicast4":
        body = (f"IPv4_address 225.0.{link}.50\n\tGroup {port}\n"
                f"\tIPv4_interface {v4(link, side)}\n\tInterface s{link}")
        block = "Multicast"
    elif kind == "multicast6":
        body = f"IPv6_address ff02::{link + 1}:50\n\tGroup {port}\n\tInterface s{link}"
        block = "Multicast"
    else:
        fam = "IPv6" if kind.endswith("6") else "IPv4"
        addr = v6 if kind.endswith("6") else v4
        body = (f"{fam}_address {addr(link, side)}\n\t{fam}_Destination_Address {addr(link, peer)}\n"
                f"\tPort {port}\n\tInterface s{link}")
        block = "UDP" if kind.startswith("udp") else "TCP"
    return f"{block}{dflt} {{\n\t{body}\n{extra}}}\n"


def sync_section(blocks: str, mode: str = "FTFW") -> str:
    return f"Sync {{\n\tMode {mode} {{ }}\n{blocks}}}\n"


def open_channels(ns: NetNS, blocks: str, loop: Loop, deliver: Callable[[Any, bytes], Any],
                  logs: list | None = None, **kw: Any) -> MultiChannel:
    """Our channels for ``blocks`` opened inside ``ns`` (the config is parsed there)."""
    with ns.enter():
        sync = parse(sync_section(blocks)).sync
        mc = MultiChannel.from_config(sync, clock=loop.time)
        log = (lambda level, m: logs.append((level, m))) if logs is not None else None
        mc.open(loop, deliver, log=log, socket_factory=ns_socket_factory(ns), **kw)
    return mc


def ns_socket_factory(ns: NetNS) -> Callable[..., socket.socket]:
    """``socket.socket`` inside ``ns`` whatever namespace the caller is in: a channel
    re-creating a socket later (TCP reconnect) never reaches the host's network."""
    def make(*args: Any) -> socket.socket:
        with ns.enter():
            return socket.socket(*args)
    return make


def pump(loop: Loop, cond: Callable[[], Any], timeout: float = 10.0,
         every: Callable[[], Any] | None = None) -> bool:
    """Run ``loop`` until ``cond()`` (True) or ``timeout`` seconds (False); ``every`` is
    called between iterations (e.g. a flush, as the 1-second ALIVE would)."""
    loop.running = True
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        loop.run_once(0.05)
        if every is not None:
            every()
    return True


def messages(data: bytes) -> list[bytes]:
    """The sync messages of a datagram or stream chunk, cut by their ``len`` field."""
    out, off = [], 0
    while off + 8 <= len(data):
        ln = int.from_bytes(data[off + 2:off + 4], "big")
        if ln < 8:
            break
        out.append(data[off:off + ln])
        off += ln
    return out
