"""Our sync channels against conntrackd 1.4.7 on two namespaces joined by veth pairs.

* Socket set-up: the C daemon and our channels open the same configuration under
  strace; their socket(), setsockopt(), getsockopt(), bind(), listen() and connect()
  calls on IP sockets are compared call for call.
* Wire interop, for every transport: a C daemon (NOTRACK) bulk-sends a table of varied
  flows (NAT, zones, marks, IPv6, SCTP, DCCP, GRE, ...) to our channel, which receives
  every message; re-packing those messages through our channel buffer gives the C
  daemon's datagrams byte for byte; then our channel sends them to a fresh C daemon,
  whose external cache (``-e``) then reads as a C receiver's does after a bulk from a
  C sender, with no malformed message counted (TCP: our client notices the first
  daemon's death, queues, reconnects to the second one and sends in order).
* Fail-over: a C daemon and our channels watch the same two links; when the active
  link goes down both switch with the same log line and ``-s link`` reads the same.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conntrack_tools.conntrackd.channels import base  # noqa: E402
from conntrack_tools.conntrackd.loop import Loop  # noqa: E402
from ctnetlink.client import Conntrack  # noqa: E402
from helpers.cdaemon import CDaemon  # noqa: E402
from helpers.flows import all_cases  # noqa: E402
from helpers.synclinks import (  # noqa: E402
    SyncLinks, channel_config, messages, open_channels, pump, sync_section, v4,
)

KINDS = ["multicast4", "multicast6", "udp4", "udp6", "tcp4", "tcp6"]
ACTIVE = re.compile(r" \[active since -?\d+s\]")
ALIVE = bytes.fromhex("1a10000800000001")
"""A NOTRACK/FTFW keep-alive (CTL, flags ALIVE, 8 bytes): the C receiver ignores it."""


@pytest.fixture(scope="module")
def links() -> Iterator[SyncLinks]:
    with SyncLinks() as sl:
        with sl.a.enter(), Conntrack() as ct:  # the C daemon's table: a varied catalogue
            for net in (1, 2, 3):
                for case in all_cases(net):
                    ct.create(case.flow)
        yield sl


@pytest.fixture(scope="module")
def reference_external(links) -> tuple[list[str], list[str]]:
    """A C daemon pair over UDP: the sender's ``-i`` and, after a bulk send, the
    receiver's ``-e`` (how 1.4.7 shows the replicated table, quirks included)."""
    def section(side: str) -> str:
        return sync_section(channel_config("udp4", side, port=3950), mode="NOTRACK")

    with CDaemon(links.a, section("a")) as tx, CDaemon(links.b, section("b")) as rx:
        internal = flow_lines(tx.client("-i").stdout)
        tx.client("-B")
        deadline = time.monotonic() + 15
        while len(flow_lines(rx.client("-e").stdout)) < len(internal):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        return internal, flow_lines(rx.client("-e").stdout)


class Ours:
    """Our channels on one side, with what they received."""

    def __init__(self, links: SyncLinks, loop: Loop, side: str, blocks: str, **kw) -> None:
        self.got: list[tuple[int, bytes]] = []
        self.logs: list[tuple[str, str]] = []
        self.follow = kw.pop("follow", False)
        self.mc = open_channels(links.ns(side), blocks, loop, self._deliver, self.logs, **kw)

    def _deliver(self, ch, data: bytes) -> None:
        self.got.append((ch.index, data))
        if self.follow:
            self.mc.set_current(ch)

    def state_datagrams(self) -> list[bytes]:
        return [d for _, d in self.got if any(m[0] & 0x0F <= 5 for m in messages(d))]

    def state_messages(self) -> list[bytes]:
        return [m for d in self.state_datagrams() for m in messages(d) if m[0] & 0x0F <= 5]


UNSET_PORT = re.compile(r"^(dccp .* sport=0 dport=)\d+( \[UNREPLIED\] mark)")


def flow_lines(text: str) -> list[str]:
    """Dump lines without their age, sorted. A DCCP entry that this kernel tracks as
    generic travels without ports, and the C receiver shows whatever its buffer held
    as the destination port (it changes from run to run): that number is masked."""
    return sorted(UNSET_PORT.sub(r"\1N\2", ACTIVE.sub("", ln))
                  for ln in text.splitlines() if ln.strip())


def wait(loop: Loop, cond, timeout: float = 15.0, every=None, interval: float = 0.25) -> bool:
    """Like :func:`pump` for a slow condition (a C client request): checked every
    ``interval`` seconds while the loop runs."""
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() > deadline:
            return False
        pump(loop, lambda: False, timeout=interval, every=every)


def repack(msgs: list[bytes], size: int) -> list[bytes]:
    """``msgs`` through our channel buffer in one transmit run: the datagrams it sends."""
    class Rec(base.Channel):
        def _send(self, data: bytes) -> bool:
            self.out.append(data)
            return True

    rec = Rec(type("C", (), {"interface": "x"})())
    rec.out = []
    rec.buffer_size = size
    for m in msgs:
        rec.send(m)
    rec.flush()
    return rec.out


# --- socket set-up under strace ---------------------------------------------------------

OPENER = """
import sys
from conntrack_tools.conntrackd.config import load
from conntrack_tools.conntrackd.loop import Loop
from conntrack_tools.conntrackd.channels import MultiChannel
mc = MultiChannel.from_config(load(sys.argv[1]).sync)
mc.open(Loop(), lambda c, d: None)
mc.close()
"""
SYSCALLS = "socket,setsockopt,getsockopt,bind,listen,connect"
_CALL = re.compile(r"^\d+\s+(\w+)\((\d+|AF_\w+)(.*)\) += (-?\d+)")


def inet_calls(trace: str) -> list[str]:
    """The calls on AF_INET/AF_INET6 sockets, fds numbered by creation, results dropped
    (a connect's errno depends on timing)."""
    fds: dict[str, int] = {}
    out = []
    for line in trace.splitlines():
        m = _CALL.match(line)
        if not m:
            continue
        name, first, rest, ret = m.groups()
        if name == "socket":
            if first in ("AF_INET", "AF_INET6"):
                fds[ret] = len(fds)
                out.append(f"socket({first}{rest.replace('|SOCK_CLOEXEC', '')})")
            else:
                fds.pop(ret, None)
        elif first in fds:
            out.append(f"{name}(s{fds[first]}{rest})")
    return out


def stop_traced(proc: subprocess.Popen) -> None:
    """SIGTERM the program strace runs (``proc`` is strace: ``ip netns exec`` execs it),
    then strace ends with it; killing strace alone would leave the daemon running."""
    try:
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            kids = [int(k) for k in f.read().split()]
    except OSError:
        kids = []
    for pid in kids:
        os.kill(pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        for pid in kids:
            os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()


def strace(ns, argv: list[str], out: str) -> subprocess.Popen:
    return ns.popen("strace", "-f", "-e", f"trace={SYSCALLS}", "-o", out, *argv,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("kind,extra", [
    ("multicast4", "\tChecksum off\n\tSndSocketBuffer 1249280\n\tRcvSocketBuffer 1249280\n"),
    ("multicast6", ""),
    ("udp4", "\tChecksum off\n"),
    ("udp6", "\tRcvSocketBuffer 300000\n"),
    ("tcp4", "\tSndSocketBuffer 300000\n\tRcvSocketBuffer 300000\n\tChecksum off\n"),
    ("tcp6", ""),
])
def test_socket_setup_is_the_references(links, kind, extra):
    section = sync_section(channel_config(kind, "a", port=3900, extra=extra)
                           + channel_config(kind, "a", 1, port=3901), mode="NOTRACK")
    with tempfile.TemporaryDirectory(prefix="chan-") as tmp:
        c = CDaemon(links.a, section)  # its configuration, lock, log and socket paths
        ctrace = os.path.join(tmp, "c.trace")
        proc = strace(links.a, ["/usr/sbin/conntrackd", "-C", c.config], ctrace)
        try:
            deadline = time.monotonic() + 30
            while "initialization completed" not in "\n".join(c.log_lines()):
                assert proc.poll() is None and time.monotonic() < deadline, c.log_lines()
                time.sleep(0.05)
            stop_traced(proc)
            otrace = os.path.join(tmp, "ours.trace")
            strace(links.a, [sys.executable, "-c", OPENER, c.config], otrace).wait(60)
        finally:
            stop_traced(proc)
            c.close()
        theirs = inet_calls(Path(ctrace).read_text())
        ours = inet_calls(Path(otrace).read_text())
    assert len(theirs) >= 10
    assert ours == theirs, "\n".join(ours) + "\n----\n" + "\n".join(theirs)


# --- datagrams both ways -------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_c_daemon_to_ours_and_ours_to_c_daemon(links, reference_external, kind):
    port = 3910 + KINDS.index(kind)
    section = sync_section(channel_config(kind, "a", port=port), mode="NOTRACK")
    blocks = channel_config(kind, "b", port=port)
    tcp = kind.startswith("tcp")
    loop = Loop()
    ours = Ours(links, loop, "b", blocks)
    try:
        with CDaemon(links.a, section) as c:
            table = flow_lines(c.client("-i").stdout)
            n = len(table)
            assert n >= 60 and table == reference_external[0]
            c.client("-B")
            assert wait(loop, lambda: len(ours.state_messages()) >= n, every=ours.mc.flush)
            sent = c.client("-s").stdout
            if tcp:  # our client reaches the C daemon's server too
                assert pump(loop, lambda: ours.mc[0].connected,
                            every=lambda: ours.mc.send_all([ALIVE]))
        msgs = ours.state_messages()
        assert len(msgs) == n and all(base.message_length(m, 0) == len(m) for m in msgs)
        ch = ours.mc[0]
        if not tcp:
            # the C daemon's datagrams are what our channel buffer makes of the same
            # messages in one run (a bulk is one transmit run)
            datagrams = ours.state_datagrams()
            assert len(datagrams) >= 3
            assert repack([m for d in datagrams for m in messages(d)], ch.buffer_size) == datagrams
            assert max(map(len, datagrams)) < ch.buffer_size
            # what it counted as sent is what we counted as received
            m = re.search(r"^ +(\d+) Bytes sent +\d+ Bytes recv\n +(\d+) Pckts sent", sent, re.M)
            assert (int(m.group(1)), int(m.group(2))) == (ch.stats.bytes_recv, ch.stats.packets_recv)
        relay = ours.state_datagrams()
        # the C daemon is gone; the same channels send to the next one. TCP: our client
        # learns it at a send (the first one still leaves into the dead connection, the
        # next fails with EPIPE/ECONNRESET and re-creates the socket, as the C client)
        reconnect = kind == "tcp4"  # tcp6: fresh channels (the same path, 5 s shorter)
        if reconnect:
            assert pump(loop, lambda: not ch.connected, every=lambda: ours.mc.send_all([ALIVE]))
            assert ch.resets == 1 and ch.stats.errors_send >= 1
        elif tcp:
            ours.mc.close()
        with CDaemon(links.a, section) as c2:
            if tcp and not reconnect:
                ours = Ours(links, loop, "b", blocks)
                ch = ours.mc[0]
            ours.mc.send_all(relay)  # TCP: queued until the client reconnects (1/s)
            assert wait(loop, lambda: len(flow_lines(c2.client("-e").stdout)) >= n,
                        every=ours.mc.flush)
            if tcp:
                assert ch.connected and len(ours.mc.errorq) == 0
            # the C daemon holds what a C peer makes it hold
            got = flow_lines(c2.client("-e").stdout)
            assert got == reference_external[1], "\n".join(sorted(set(got) ^ set(reference_external[1])))
            net = c2.client("-s", "network").stdout
            assert re.search(r"Malformed messages:\t +0\n", net)
            if tcp:
                assert "server=connected" in c2.client("-s").stdout
    finally:
        ours.mc.close()
        loop.close()


# --- fail-over ----------------------------------------------------------------------------

NUMBERS = re.compile(r"\d+ (Bytes|Pckts|Error)")


def masked(text: str) -> str:
    return re.sub(r" +\d+ (Bytes|Pckts|Error)", r" N \1", text)


def test_failover_like_the_c_daemon(links):
    blocks_a = channel_config("multicast4", "a", 0, port=3930, default=True) + \
        channel_config("multicast4", "a", 1, port=3931)
    blocks_b = channel_config("multicast4", "b", 0, port=3930, default=True) + \
        channel_config("multicast4", "b", 1, port=3931)
    loop = Loop()
    mine = peer = None
    try:
        with CDaemon(links.a, sync_section(blocks_a, mode="NOTRACK")) as c:
            # ours next to the C daemon (same links, same events) and a peer across
            mine = Ours(links, loop, "a", blocks_a)
            peer = Ours(links, loop, "b", blocks_b, follow=True)
            assert masked(c.client("-s", "link").stdout) == masked(mine.mc.link_blocks())
            links.link("a", 0, "down")
            switched = "device `s1' becomes dedicated link"
            assert wait(loop, lambda: any(switched in ln for ln in c.log_lines()))
            assert pump(loop, lambda: mine.mc.current is mine.mc[1])
            assert mine.logs == [("notice", switched)]
            assert wait(loop, lambda: masked(c.client("-s", "link").stdout)
                        == masked(mine.mc.link_blocks()))
            text = c.client("-s", "link").stdout
            assert "device=s0 status=DOWN role=BACKUP" in text
            assert "device=s1 status=RUNNING role=ACTIVE" in text
            # the C daemon now sends (ALIVE, every second) on s1: the peer hears it there
            assert wait(loop, lambda: any(i == 1 for i, _ in peer.got))
            assert peer.mc.current is peer.mc[1]
            # back up: neither switches back
            links.link("a", 0, "up")
            assert wait(loop, lambda: "device=s0 status=RUNNING role=BACKUP"
                        in c.client("-s", "link").stdout)
            assert wait(loop, lambda: masked(c.client("-s", "link").stdout)
                        == masked(mine.mc.link_blocks()))
            assert mine.mc.current is mine.mc[1]
            assert [ln for ln in c.log_lines() if "dedicated" in ln][-1].endswith(switched)
    finally:
        links.link("a", 0, "up")
        for side in (mine, peer):
            if side is not None:
                side.mc.close()
        loop.close()


# --- TCP: a connection that ends in the middle of a message ---------------------------------

def test_fragment_of_a_closed_connection_is_not_glued_to_the_next(links):
    """The C receiver keeps a fragment left by a closed connection and parses it with
    the next connection's bytes (counted as malformed); ours drops it with the
    connection. The same byte sequence is sent to both, each step awaited."""
    alive = bytes.fromhex("1a10000800000006")
    new = bytes.fromhex("10000014") + (5).to_bytes(4, "big") + bytes.fromhex("0000000c7f000001")
    new += bytes(4)  # a CT NEW of 20 bytes: 8-byte header, one 12-byte attribute

    def feed(addr: tuple, received) -> None:
        """``received(n)``: waits until the receiver has read ``n`` bytes in all."""
        with links.b.enter():
            first = socket.create_connection(addr, timeout=5)
        first.sendall(new[:13])
        received(13)
        first.close()
        with links.b.enter():
            second = socket.create_connection(addr, timeout=5)
        second.sendall(alive + new)
        received(13 + len(alive + new))
        second.close()

    def c_received(c: CDaemon):
        def wait_for(n: int) -> None:
            deadline = time.monotonic() + 10
            while True:
                m = re.search(r"Bytes sent +(\d+) Bytes recv", c.client("-s").stdout)
                if int(m.group(1)) >= n:
                    return
                assert time.monotonic() < deadline
                time.sleep(0.05)
        return wait_for

    section = sync_section(channel_config("tcp4", "a", port=3960), mode="NOTRACK")
    with CDaemon(links.a, section) as c:
        feed((v4(0, "a"), 3960), c_received(c))
        net = c.client("-s", "network").stdout
    assert re.search(r"Malformed messages:\t +[1-9]", net)  # the glued fragment
    loop = Loop()
    ours = Ours(links, loop, "a", channel_config("tcp4", "a", port=3961))
    try:
        st = ours.mc[0].stats
        feed((v4(0, "a"), 3961), lambda n: pump(loop, lambda: st.bytes_recv >= n))
        assert pump(loop, lambda: len(ours.got) == 1)
        assert [d for _, d in ours.got] == [alive + new]
    finally:
        ours.mc.close()
        loop.close()
