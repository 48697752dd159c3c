"""Our sync channels on real sockets between two private namespaces joined by two veth
pairs: every transport both ways, the reference's socket options, UDP checksums on the
wire, TCP reconnect with the error queue, stream framing against a raw peer, link
fail-over driven by RTNETLINK, send and receive errors counted."""
from __future__ import annotations

import socket
import struct
from types import SimpleNamespace
from typing import Iterator

import pytest

from conntrack_tools.conntrackd.channels import base
from conntrack_tools.conntrackd.loop import Loop
from helpers.synclinks import SyncLinks, channel_config, messages, open_channels, pump, v4, v6


@pytest.fixture(scope="module")
def links() -> Iterator[SyncLinks]:
    with SyncLinks() as sl:
        yield sl


@pytest.fixture
def loop() -> Iterator[Loop]:
    lp = Loop()
    opened: list = []
    lp.opened = opened  # type: ignore[attr-defined]
    yield lp
    for mc in opened:
        mc.close()
    lp.close()


def msg(n: int, seq: int = 0, mtype: int = 0, flags: int = 0) -> bytes:
    return struct.pack(">BBHI", 0x10 | mtype, flags, n, seq) + bytes(range(256))[:n - 8].ljust(n - 8, b"\0")


class Side:
    """One side's channels and what they received: (channel index, bytes)."""

    def __init__(self, links: SyncLinks, loop: Loop, side: str, blocks: str, **kw) -> None:
        self.got: list[tuple[int, bytes]] = []
        self.logs: list[tuple[str, str]] = []
        self.follow = kw.pop("follow", False)
        self.mc = open_channels(links.ns(side), blocks, loop, self._deliver, self.logs, **kw)
        loop.opened.append(self.mc)  # type: ignore[attr-defined]

    def _deliver(self, ch, data: bytes) -> None:
        self.got.append((ch.index, data))
        if self.follow:  # what the integrator does on a valid message (spec §5.13)
            self.mc.set_current(ch)

    def data(self) -> bytes:
        return b"".join(d for _, d in self.got)


KINDS = ["multicast4", "multicast6", "udp4", "udp6", "tcp4", "tcp6"]


@pytest.mark.parametrize("kind", KINDS)
def test_transport_both_ways(links, loop, kind):
    port = 3800 + KINDS.index(kind)
    a = Side(links, loop, "a", channel_config(kind, "a", port=port))
    b = Side(links, loop, "b", channel_config(kind, "b", port=port))
    burst = [msg(76, i) for i in range(45)] + [msg(200, 99)]
    for m in burst:
        a.mc.send(m)
    a.mc.flush()
    assert a.mc.buffer_size == 1500 - (40 if kind.startswith("tcp") else 28)
    total = sum(map(len, burst))
    # TCP: the first attempts may meet the peer's server not yet listening; the error
    # queue keeps them and the next flush (the 1-second ALIVE in a daemon) sends them
    assert pump(loop, lambda: len(b.data()) >= total, every=a.mc.flush)
    assert b.data() == b"".join(burst)
    if not kind.startswith("tcp"):
        # 19 + 19 + 7 messages of 76 bytes, then the 200-byte one fits the third buffer
        assert [len(d) for _, d in b.got] == [1444, 1444, 732]
        sa, sb = a.mc[0].stats, b.mc[0].stats
        assert (sa.bytes_sent, sa.packets_sent) == (total, 3)
        assert (sb.bytes_recv, sb.packets_recv) == (total, 3)
    b.mc.send(msg(8, 1))
    b.mc.flush()
    assert pump(loop, lambda: a.data() == msg(8, 1), every=b.mc.flush)
    assert a.mc[0].stats.errors_recv == 0 and b.mc[0].stats.errors_recv == 0


def test_socket_options_are_the_references(links, loop):
    extra = "\tChecksum off\n\tSndSocketBuffer 1249280\n\tRcvSocketBuffer 1249280\n"
    a = Side(links, loop, "a", channel_config("multicast4", "a", port=3820, extra=extra))
    ch = a.mc[0]
    sol = socket.SOL_SOCKET
    assert ch.tx.getsockopt(sol, base.SO_NO_CHECK) == 1
    assert ch.tx.getsockopt(sol, socket.SO_SNDBUF) == 2 * 1249280
    assert ch.tx.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP) == 0
    assert ch.tx.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 1
    assert ch.tx.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, 4) == socket.inet_aton(v4(0, "a"))
    assert ch.rx.getsockopt(sol, socket.SO_REUSEADDR) == 1
    assert ch.rx.getsockopt(sol, socket.SO_RCVBUF) == 2 * 1249280
    assert ch.rx.getsockname() == ("0.0.0.0", 3820)
    assert (ch.mtu, ch.buffer_size) == (1500, 1472)
    b = Side(links, loop, "b", channel_config("tcp6", "b", port=3821))
    t = b.mc[0]
    assert t.server.getsockopt(sol, socket.SO_KEEPALIVE) == 1
    assert t.server.getsockopt(sol, socket.SO_REUSEADDR) == 1
    assert t.server.getsockname()[:2] == (v6(0, "b"), 3821)
    assert t.client.getsockopt(sol, base.SO_NO_CHECK) == 0
    assert t.buffer_size == 1460


def capture_udp(links: SyncLinks, side: str, dev: str) -> socket.socket:
    with links.ns(side).enter():
        s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
        s.bind((dev, 0x0800))
        s.settimeout(5)
    return s


@pytest.mark.parametrize("checksum", ["on", "off"])
def test_checksum_option_on_the_wire(links, loop, checksum):
    port = 3830 if checksum == "on" else 3831
    cap = capture_udp(links, "b", "s1")
    try:
        a = Side(links, loop, "a", channel_config("udp4", "a", 1, port=port,
                                                     extra=f"\tChecksum {checksum}\n"))
        a.mc.send(msg(40, 7))
        a.mc.flush()
        while True:
            pkt = cap.recv(2048)
            ihl = (pkt[0] & 0x0F) * 4
            if pkt[9] == 17 and struct.unpack_from(">H", pkt, ihl + 2)[0] == port:
                break
        (udp_sum,) = struct.unpack_from(">H", pkt, ihl + 6)
        assert (udp_sum == 0) == (checksum == "off")
        assert pkt[ihl + 8:] == msg(40, 7)
    finally:
        cap.close()


def test_tcp_reconnect_delivers_what_waited_in_order(links, loop):
    conf_a = channel_config("tcp4", "a", port=3840)
    a = Side(links, loop, "a", conf_a, iteration_limit=5)
    b = Side(links, loop, "b", channel_config("tcp4", "b", port=3840))
    a.mc.send(msg(8, 1))
    a.mc.flush()
    assert pump(loop, lambda: b.data() == msg(8, 1), every=a.mc.flush)
    b.mc.send(msg(8, 2))
    b.mc.flush()
    assert pump(loop, lambda: a.data() == msg(8, 2), every=b.mc.flush)
    ta = a.mc[0]
    assert ta.tcp_state() == ("connected", "connected")
    # the peer dies: its connection to our server ends, our sends fail and queue
    b.mc.close()
    assert pump(loop, lambda: ta.conn is None)
    assert ta.tcp_state()[0] == "disconnected"
    sent = []
    for i in range(3, 8):
        m = msg(16, i)
        sent.append(m)
        a.mc.send(m)
        a.mc.flush()
        loop.run_once(0.02)
    assert pump(loop, lambda: not ta.connected and len(a.mc.errorq) > 0, every=a.mc.flush)
    errors = ta.stats.errors_send
    assert errors >= 1
    # the peer comes back: our client reconnects (at most once a second) and the
    # queued buffers arrive first, in order, then the new ones
    b2 = Side(links, loop, "b", channel_config("tcp4", "b", port=3840))
    late = msg(24, 50)
    a.mc.send(late)
    a.mc.flush()
    assert pump(loop, lambda: b2.data().endswith(late), timeout=8, every=a.mc.flush)
    # what the dead peer's kernel took before the reset is lost (TCP, not the channel,
    # loses it); everything after arrives, in order
    got = messages(b2.data())
    k = len(got) - 1
    assert got[-1] == late and k >= 3 and got[:-1] == sent[len(sent) - k:]
    assert ta.tcp_state()[1] == "connected" and len(a.mc.errorq) == 0
    # and its client reaches our server again
    b2.mc.send(msg(8, 60))
    b2.mc.flush()
    assert pump(loop, lambda: a.data().endswith(msg(8, 60)), every=b2.mc.flush)
    assert ta.tcp_state() == ("connected", "connected")


def raw_client(links: SyncLinks, side: str, addr: tuple) -> socket.socket:
    with links.ns(side).enter():
        s = socket.create_connection(addr, timeout=5)
    return s


def test_tcp_stream_framing_against_a_raw_peer(links, loop):
    a = Side(links, loop, "a", channel_config("tcp4", "a", port=3850))
    srv = a.mc[0]
    # a message split over three writes arrives once, whole
    c = raw_client(links, "b", (v4(0, "a"), 3850))
    assert pump(loop, lambda: srv.conn is not None)
    m = msg(100, 1)
    read = 0
    for part in (m[:3], m[3:50], m[50:] + msg(8, 2)[:4]):
        c.sendall(part)
        read += len(part)
        assert pump(loop, lambda: srv.stats.bytes_recv == read)
        assert a.got == ([(0, m)] if read > 100 else [])
    c.sendall(msg(8, 2)[4:])
    assert pump(loop, lambda: len(a.got) == 2)
    assert a.got[1] == (0, msg(8, 2))
    # garbage goes to the pipeline once (it counts it), nothing is kept
    junk = b"\x10\x00\x00\x00" + b"\xff" * 28
    c.sendall(junk)
    assert pump(loop, lambda: len(a.got) == 3)
    assert a.got[2] == (0, junk) and srv._pending == 0
    # a peer that leaves in the middle of a message: the fragment dies with it
    read = srv.stats.bytes_recv
    c.sendall(msg(60, 3)[:30])
    assert pump(loop, lambda: srv.stats.bytes_recv == read + 30)
    c.close()
    assert pump(loop, lambda: srv.conn is None)
    c2 = raw_client(links, "b", (v4(0, "a"), 3850))
    c2.sendall(msg(12, 4))
    assert pump(loop, lambda: len(a.got) == 4)
    assert a.got[3] == (0, msg(12, 4))
    # a new connection replaces the current one
    c3 = raw_client(links, "b", (v4(0, "a"), 3850))
    c3.sendall(msg(8, 5))
    assert pump(loop, lambda: len(a.got) == 5)
    assert a.got[4] == (0, msg(8, 5))
    c2.settimeout(5)
    assert c2.recv(10) == b""  # closed by our server
    c2.close()
    c3.close()
    assert srv.stats.errors_recv == 0


def test_large_and_empty_datagrams(links, loop):
    a = Side(links, loop, "a", channel_config("udp4", "a", port=3860))
    big = msg(8) + bytes(65507 - 8)
    with links.b.enter():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b"", (v4(0, "a"), 3860))
        s.sendto(big, (v4(0, "a"), 3860))
        assert pump(loop, lambda: len(a.got) == 1)
    finally:
        s.close()
    assert a.got == [(0, big)]
    st = a.mc[0].stats
    assert (st.packets_recv, st.bytes_recv, st.errors_recv) == (2, 65507, 0)


def test_send_errors_are_counted_and_never_raise(links, loop):
    a = Side(links, loop, "a", channel_config("udp4", "a", port=3870))
    ch = a.mc[0]
    links.a.nft("table inet chan {\n chain out {\n type filter hook output priority 0;\n"
                " udp dport 3870 drop\n }\n}\n")
    try:
        for i in range(10):
            ch.send(msg(1400, i))
        ch.flush()
        assert ch.stats.counters() == (0, 0, 0, 0, 10, 0)  # EPERM: one error per datagram
    finally:
        links.a.nft("delete table inet chan")
    ch.send(msg(100, 1))
    ch.flush()
    assert ch.stats.counters()[2] == 1


def test_failover_when_the_active_link_goes_down(links, loop):
    blocks = {side: channel_config("multicast4", side, 0, port=3880, default=True)
              + channel_config("multicast4", side, 1, port=3881) for side in "ab"}
    a = Side(links, loop, "a", blocks["a"], follow=True)
    b = Side(links, loop, "b", blocks["b"], follow=True)
    try:
        assert a.mc.current is a.mc[0] and b.mc.current is b.mc[0]
        assert a.mc.link_blocks().splitlines()[0] == \
            "multicast traffic device=s0 status=RUNNING role=ACTIVE:"
        links.link("a", 0, "down")
        assert pump(loop, lambda: a.mc.current is a.mc[1] and b.mc.current is b.mc[1])
        assert a.logs == [("notice", "device `s1' becomes dedicated link")]
        # the peer's end lost its carrier: it moved too
        assert b.logs == [("notice", "device `s1' becomes dedicated link")]
        lines = a.mc.link_blocks().splitlines()
        assert lines[0] == "multicast traffic device=s0 status=DOWN role=BACKUP:"
        assert lines[5] == "multicast traffic device=s1 status=RUNNING role=ACTIVE:"
        assert b.mc.link_blocks().splitlines()[0] == \
            "multicast traffic device=s0 status=NO-CARRIER role=BACKUP:"
        a.mc.send(msg(8, 1))
        a.mc.flush()
        assert pump(loop, lambda: b.got == [(1, msg(8, 1))])
        # the link comes back: no switch back
        links.link("a", 0, "up")
        assert pump(loop, lambda: b.mc.status(b.mc[0]) == a.mc.status(a.mc[0]) == "RUNNING")
        assert a.mc.current is a.mc[1] and b.mc.current is b.mc[1]
        # a valid message on link 0 makes it the active one again (the integrator's
        # set_current on the protocol's verdict)
        b.mc.channels[0].send(msg(8, 2))
        b.mc.channels[0].flush()
        assert pump(loop, lambda: a.mc.current is a.mc[0])
        assert a.mc.channel_block().startswith("multicast traffic (active device=s0):\n")
    finally:
        links.link("a", 0, "up")


def test_no_dedicated_link_available(links, loop):
    a = Side(links, loop, "a", channel_config("udp4", "a", 0, port=3890, default=True)
             + channel_config("udp4", "a", 1, port=3891))
    try:
        links.link("a", 0, "down")
        links.link("a", 1, "down")
        assert pump(loop, lambda: ("error", "no dedicated links available!") in a.logs)
        assert a.logs[0] == ("notice", "device `s1' becomes dedicated link")
        a.mc.send(msg(8, 1))
        a.mc.flush()  # the interface is down: a counted error, nothing raised
    finally:
        links.link("a", 0, "up")
        links.link("a", 1, "up")


def test_open_failures_log_the_references_lines(links, loop):
    logs: list = []
    with pytest.raises(base.ChannelError) as e:
        open_channels(links.a, channel_config("udp4", "a", port=3895).replace(v4(0, "a"), "10.231.9.9"),
                      loop, lambda c, d: None, logs)
    assert str(e.value) == "can't open channel socket: Cannot assign requested address"
    assert logs == [("error", str(e.value))]
    with pytest.raises(base.ChannelError, match="can't open channel socket: No such device"):
        open_channels(links.a, channel_config("udp4", "a", port=3896).replace("Interface s0", "Interface s9"),
                      loop, lambda c, d: None)


# --- with the protocol machines (what the integrator wires) ---------------------------------

@pytest.mark.parametrize("kind", ["tcp4", "udp6"])
def test_notrack_machines_over_channels(links, loop, kind):
    """Flows queued on one NOTRACK machine arrive as cache operations on the other's:
    ``machine.flush()`` datagrams go through ``channels.send_all``, what a channel
    delivers goes to ``machine.receive`` and a Heard action makes it the current one."""
    from ctnetlink.model import Flow, Tuple

    from conntrack_tools.conntrackd.channels import ChannelLinks
    from conntrack_tools.conntrackd.sync.common import CacheOp, Heard
    from conntrack_tools.conntrackd.sync.notrack import NotrackMachine
    from conntrack_tools.conntrackd.wire.codec import flow_message

    port = 3700 + (kind == "udp6")
    ops: list = []
    machines: dict = {}

    def wire(side: str) -> Side:
        machine = NotrackMachine(seq=1000 * SIDE_NO[side])
        s = Side.__new__(Side)
        s.got, s.logs, s.follow = [], [], False

        def deliver(ch, data: bytes) -> None:
            for action in machine.receive(data, loop.time()):
                if isinstance(action, Heard):
                    s.mc.set_current(ch)
                elif isinstance(action, CacheOp):
                    ops.append((side, action))

        s.mc = open_channels(links.ns(side), channel_config(kind, side, port=port), loop,
                             deliver, s.logs)
        loop.opened.append(s.mc)
        machine.buffer_size = s.mc.buffer_size
        machines[side] = machine
        return s

    a, b = wire("a"), wire("b")
    flows = [Flow(family=2, orig=Tuple(src=f"10.9.{i // 250}.{i % 250 + 1}", dst="10.8.0.1", proto=17, sport=1024 + i, dport=53),
                  reply=Tuple(src="10.8.0.1", dst=f"10.9.{i // 250}.{i % 250 + 1}", proto=17, sport=53, dport=1024 + i),
                  timeout=100) for i in range(300)]
    for f in flows:
        machines["a"].enqueue_message(lambda seq, flags, f=f: flow_message(0, f, seq, flags))
    a.mc.send_all(machines["a"].flush(loop.time()))
    assert pump(loop, lambda: len(ops) >= len(flows), every=a.mc.flush)
    assert [op.obj.orig for _, op in ops] == [f.orig for f in flows]
    assert {side for side, _ in ops} == {"b"} and all(op.op == "new" for _, op in ops)
    st = machines["b"].stats
    assert (st.malformed, st.lost) == (0, 0)
    if kind == "udp6":  # packed like the C channel buffer: 1472-byte buffers
        datagrams, used = 0, 0
        for f in flows:
            n = len(flow_message(0, f, 1))
            if used + n >= 1472 or not datagrams:
                datagrams, used = datagrams + 1, 0
            used += n
        assert a.mc[0].stats.packets_sent == datagrams
    text = ChannelLinks(SimpleNamespace(mode="notrack"), b.mc, machines["b"]).network_stats()
    assert "Malformed messages:\t                   0" in text and "device=s0" in text


SIDE_NO = {"a": 1, "b": 2}
