"""Our conntrackd replicating between two private namespaces (spec §5, §6.6, §6.13, §7):
loss on the sync link from the start, TCP reconnect after a restart of either peer,
link fail-over between two channels, ``DisableExternalCache`` injection, and bad
datagrams sent at a live daemon (dropped, counted where 1.4.7 counts them, the daemon
lives on). The pair harness is :mod:`helpers.syncpair`."""
from __future__ import annotations

import random
import re
import socket
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conntrack_tools.conntrackd import handlers as H  # noqa: E402
from helpers.syncpair import SyncPair, make_flows  # noqa: E402
from helpers.syncsim import ctl, data  # noqa: E402

from conntrack_tools.conntrackd.wire import constants as K  # noqa: E402


def counter(text: str, name: str) -> int:
    m = re.search(rf"{re.escape(name)}:\s+(\d+)", text)
    assert m, (name, text)
    return int(m.group(1))


def test_loss_from_the_start_loses_nothing() -> None:
    """20% random loss in both directions on the sync link from before the daemons
    start: every one of 2,000 flows reaches our backup (the C pair loses some here:
    ``benchmarks/bench_conntrackd_sync.py`` prints it)."""
    with SyncPair("ours", "ours", mode="ftfw", lossy=True) as p:
        for base in range(0, 2000, 100):
            make_flows(p.ns("a"), 100, base=base)
        assert p.wait_external(2000, timeout=90), len(p.external())
        net = p.stats("b", H.STATS_NETWORK)
        assert counter(net, "Packets lost") > 0  # the loss was real
        assert len(p.external()) == 2000


@pytest.mark.parametrize("restart", ["a", "b"])
def test_tcp_reconnect_after_peer_restart(restart: str) -> None:
    with SyncPair("ours", "ours", mode="ftfw", kind="tcp4") as p:
        make_flows(p.ns("a"), 10)
        assert p.wait_external(10)
        p.stop(restart)
        make_flows(p.ns("a"), 10, base=100)   # while one side is down
        p.start(restart)
        make_flows(p.ns("a"), 10, base=200)
        assert p.wait_external(30, timeout=30), len(p.external())
        assert re.search(r"server=connected client=connected",
                         p.stats("a", H.STATS_NETWORK)), p.stats("a", H.STATS_NETWORK)


def test_tcp_reconnect_with_a_c_peer_restarting() -> None:
    with SyncPair("c", "ours", mode="ftfw", kind="tcp4") as p:
        make_flows(p.ns("a"), 10)
        assert p.wait_external(10)
        p.stop("a", kill=True)
        p.start("a")
        make_flows(p.ns("a"), 10, base=100)
        assert p.wait_external(20, timeout=30), len(p.external())


def test_link_failover_between_two_channels() -> None:
    with SyncPair("ours", "ours", mode="ftfw", kind="udp4", second="udp4") as p:
        make_flows(p.ns("a"), 10)
        assert p.wait_external(10)
        link = p.stats("a", H.STATS_LINK)
        assert re.search(r"device=s0 status=RUNNING role=ACTIVE", link), link
        assert re.search(r"device=s1 status=RUNNING role=BACKUP", link), link
        for side in "ab":
            p.links.link(side, 0, "down")
        assert p.wait(lambda: "becomes dedicated link" in "\n".join(p.a.log_lines()), 10)
        make_flows(p.ns("a"), 10, base=100)
        assert p.wait_external(20, timeout=20), len(p.external())
        link = p.stats("a", H.STATS_LINK)
        assert re.search(r"device=s0 status=DOWN role=BACKUP", link), link
        assert re.search(r"device=s1 status=RUNNING role=ACTIVE", link), link


def test_disable_external_cache_injects_into_the_kernel() -> None:
    with SyncPair("ours", "ours", mode="ftfw",
                  mode_opts="\t\tDisableExternalCache on\n") as p:
        make_flows(p.ns("a"), 20)
        make_flows(p.ns("a"), 3, proto=6, base=500)

        def injected() -> int:
            out = p.ns("b").conntrack("-L", check=False).stdout
            return sum(1 for line in out.splitlines() if "10.99." in line)
        assert p.wait(lambda: injected() == 23, 20), injected()
        st = p.stats("b")
        assert "external inject:" in st
        assert counter(st.split("external inject:")[1], "connections created") == 23
        # injected entries are not sent back, nor kept as internal entries
        assert p.internal("b") == []
        p.ns("a").conntrack("-D", "-s", "10.99.0.1")
        assert p.wait(lambda: injected() == 22, 20)


def fuzz_corpus(seed: int = 7) -> list[bytes]:
    """Bad datagrams: garbage, truncated, wrong version, wrong length, bad type, bad
    payload, oversized, replayed, plus unexpected control messages."""
    rng = random.Random(seed)
    good = [data(i, 1000 + i) for i in range(20)]
    out: list[bytes] = []
    for i in range(300):
        g = bytearray(good[i % len(good)])
        kind = i % 8
        if kind == 0:
            out.append(bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 200))))
        elif kind == 1:
            out.append(bytes(g[:rng.randrange(1, len(g))]))
        elif kind == 2:
            g[0] = (rng.randrange(2, 15) << 4) | (g[0] & 0x0F)
            out.append(bytes(g))
        elif kind == 3:
            struct.pack_into(">H", g, 2, rng.choice((0, 3, 7, len(g) + 9, 60000)))
            out.append(bytes(g))
        elif kind == 4:
            g[0] = (g[0] & 0xF0) | rng.randrange(6, 15)
            out.append(bytes(g))
        elif kind == 5:
            for _ in range(4):
                j = rng.randrange(8, len(g))
                g[j] ^= 1 << rng.randrange(8)
            out.append(bytes(g))
        elif kind == 6:
            out.append(bytes(g) * (60000 // len(g)))
        else:
            out.append(ctl(K.NET_F_ACK, 5, 9, 3))  # ACK with to < from
    return out


def pckts_recv(p: SyncPair) -> int:
    m = re.search(r"(\d+) Pckts recv", p.stats("b", H.STATS_NETWORK))
    assert m
    return int(m.group(1))


def send_fuzz(p: SyncPair, corpus: list[bytes]) -> None:
    """One datagram at a time, each read by the daemon before the next (no socket
    buffer overflow: both daemons see every datagram)."""
    with p.ns("a").enter():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("10.231.0.1", 0))
    try:
        for i, d in enumerate(corpus):
            s.sendto(d, ("10.231.0.2", 3780))
            assert p.wait(lambda: pckts_recv(p) >= i + 1, 5, step=0.002), i
    finally:
        s.close()


RECV = ("Malformed messages", "Wrong protocol version", "Malformed header",
        "Malformed payload", "Bad message type", "Truncated message", "Bad message size")


def recv_counters(text: str) -> dict[str, int]:
    recv = text.split("send:")[0]
    return {n: counter(recv, n) for n in RECV}


def test_fuzzed_datagrams_are_dropped_and_counted_like_the_reference() -> None:
    """The same bad datagrams at a C backup and at ours (NOTRACK, no primary running):
    both count them the same in ``-s network``; ours still replicates afterwards."""
    corpus = fuzz_corpus()
    counts = {}
    for backup in ("c", "ours"):
        with SyncPair("ours", backup, mode="notrack") as p:
            p.stop("a")
            send_fuzz(p, corpus)
            counts[backup] = recv_counters(p.stats("b", H.STATS_NETWORK))
            assert p.b.proc is not None and p.b.proc.poll() is None
            if backup == "ours":
                p.start("a")
                make_flows(p.ns("a"), 5, base=3000)
                assert p.wait(lambda: sum("10.99.11." in x for x in p.external()) == 5, 15)
    assert counts["ours"]["Malformed messages"] > 0
    assert counts["ours"] == counts["c"]


def test_wrong_udp_checksum_is_dropped_by_the_kernel() -> None:
    """A datagram with a wrong UDP checksum never reaches the daemon (``Checksum on``):
    the kernel drops it and counts ``InCsumErrors``, as with 1.4.7."""
    with SyncPair("ours", "ours", mode="notrack") as p:
        p.stop("a")
        payload = data(1, 77)
        with p.ns("a").enter():
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
            hdr = struct.pack(">HHHH", 4000, 3780, 8 + len(payload), 0x1234)
            raw.sendto(hdr + payload, ("10.231.0.2", 0))
            raw.close()

        def csum_errors() -> int:
            snmp = p.ns("b").run("cat", "/proc/net/snmp").stdout.splitlines()
            udp = [line.split() for line in snmp if line.startswith("Udp:")]
            return int(udp[1][udp[0].index("InCsumErrors")])
        assert p.wait(lambda: csum_errors() == 1, 5)
        assert p.external() == []
        net = p.stats("b", H.STATS_NETWORK)
        assert recv_counters(net)["Malformed messages"] == 0
        assert re.search(r"\s0 Pckts recv", net), net


def test_notrack_without_internal_cache_sends_events_and_kernel_dumps() -> None:
    """NOTRACK ``DisableInternalCache``: events leave as they come (bypass), and a
    RESYNC from the peer is answered with a dump of the kernel table."""
    with SyncPair("ours", "ours", mode="notrack",
                  mode_opts="\t\tDisableInternalCache on\n") as p:
        make_flows(p.ns("a"), 15)
        assert p.wait_external(15)
        st = p.stats("a")
        assert "internal bypass:" in st
        assert counter(st.split("internal bypass:")[1], "connections new") == 15
        # -i without an internal cache lists the kernel table (conntrack -L style)
        listed = p.a.request(H.CT_DUMP_INTERNAL).decode().splitlines()
        assert len(listed) == 15 and all(line.startswith("udp ") or line.startswith("tcp ")
                                         or line.startswith("icmp ") for line in listed), listed
        p.b.request(H.CT_FLUSH_EXT_CACHE)
        assert p.external() == []
        p.b.request(H.REQUEST_DUMP)
        assert p.wait_external(15)


def test_sigkill_of_the_primary() -> None:
    """The backup keeps what it has when the primary dies; the restarted primary brings
    what changed meanwhile (its bulk after the handshake, our backup's resync)."""
    with SyncPair("ours", "ours", mode="ftfw") as p:
        make_flows(p.ns("a"), 20)
        assert p.wait_external(20)
        p.stop("a", kill=True)
        assert len(p.external()) == 20
        make_flows(p.ns("a"), 5, base=500)
        p.start("a")
        assert p.wait_external(25, timeout=20), len(p.external())
