"""End-to-end interoperability of replication and commit, ours and the C conntrackd 1.4.7 in
every role (issue 10, first of "Tests that must exist"; spec §5, §6.6, §6.7, §7).

Topology (private namespaces, prefix ``interop-``): a client ``cli`` and a server ``srv``
on either side of the primary router ``a`` (forwarding, ``nft`` masquerade towards the
server), and a backup router ``b`` joined to ``a`` by a dedicated sync link ``s0``
(:class:`~helpers.syncpair.SyncPair`; the sync traffic itself is not tracked). For each
parameter set the daemons are started on ``a`` and ``b``, then the primary's table gets

* real traffic from ``cli`` to ``srv`` through ``a`` (so real NAT): TCP connections left
  ESTABLISHED, a UDP exchange and an ICMP echo, over IPv4 and IPv6;
* batch-created entries (:func:`helpers.flows.all_cases` with our library: TCP, UDP,
  UDP-Lite, SCTP, DCCP, ICMP, ICMPv6, GRE, other protocols, IPv4 and IPv6, source and
  destination NAT, marks, the three kinds of zone, a label) and a few ``conntrack -I``
  ones (SNAT with an explicit reply tuple, a mark, an ICMP id);

the backup's external cache fills (events, replicated), ``conntrackd -c`` (the backup's own client)
commits it into ``b``'s kernel table, and that table is compared with ``a``'s field by
field (:meth:`ctnetlink.client.Conntrack.dump`, :func:`flat`; and the reference tool's
``conntrack -L -o extended`` lines, timeouts masked). Normalisations, each the
least that must differ between two kernels:

* ``id`` and ``use``: kernel-local (object id, reference count);
* ``timeout``: counts down from a different start on each side; checked separately: the
  backup's is at most the primary's plus the time the test took and at least the
  primary's minus a little (:func:`check_timeouts`);
* counters and time stamps: off in these namespaces (``nf_conntrack_acct`` and
  ``nf_conntrack_timestamp`` are 0), so absent on both sides;
* the TCP window-tracking flags: the primary's come from the real handshake, the backup's
  are "be liberal" in both directions (``TCPWindowTracking`` off by default, spec §6.7),
  pinned as :data:`LIBERAL` on every committed TCP entry (``(0, 0)`` with window
  tracking on);
* an all-zero synproxy extension: the kernel adds one to every entry created over
  ctnetlink (the primary's batch entries have it too, its real ones do not).

Everything else (addresses, ports, protocol, zones, status bits, NAT, mark, labels, protocol
state, SCTP verification tags, window scales, ...) is compared, and what a role loses is
collected as (entry, field) pairs: the C -> C pair is the control that shows what the
reference itself preserves; its losses are pinned in :data:`C_LOSES`, and every role with
one of ours loses at most that (pinned exactly per role too).

Every mode (FTFW, NOTRACK, ALARM) and transport (UDP, multicast, TCP over IPv4, and UDP over
IPv6) runs in four roles: C -> ours, ours -> C, ours -> ours and C -> C; FTFW with
``TCPWindowTracking On`` too. Another test SIGKILLs the primary as soon as its internal
cache lists the flows (without waiting for the backup) and commits on the backup: every
flow the primary had is in the backup's kernel table (each mode, UDP and TCP, each role).
The namespaces are shared by the whole module; the tables are emptied and the daemons
restarted for each case (about 2 s per case).
"""
from __future__ import annotations

import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.commitrig import table  # noqa: E402
from helpers.flows import all_cases  # noqa: E402
from helpers.ftp import enable_labels  # noqa: E402
from helpers.netns import NetNS  # noqa: E402
from helpers.syncpair import SyncPair  # noqa: E402

from ctnetlink.client import Conntrack  # noqa: E402
from ctnetlink.model import Flow, Tuple  # noqa: E402

PREFIX = "interop"
CLI4, ROUTER_CLI4, ROUTER_SRV4, SRV4 = "10.240.1.2", "10.240.1.1", "10.240.2.1", "10.240.2.2"
CLI6, ROUTER_CLI6, ROUTER_SRV6, SRV6 = ("fd00:240:1::2", "fd00:240:1::1", "fd00:240:2::1",
                                        "fd00:240:2::2")
CATALOGUE_NET = 7
"""The batch entries live in 10.7.0.0/24 and 2001:db8:7::/64."""
LIBERAL = (8, 0)
"""TCP flags of a committed entry, each direction: IP_CT_TCP_FLAG_BE_LIBERAL, mask 0 (the
kernel reports flags then mask)."""
ROUTER_RULES = """
table inet interop {
    chain raw_pre {
        type filter hook prerouting priority raw;
        udp dport 3780 notrack; tcp dport 3780 notrack; tcp sport 3780 notrack;
    }
    chain raw_out {
        type filter hook output priority raw;
        udp dport 3780 notrack; tcp dport 3780 notrack; tcp sport 3780 notrack;
    }
}
table inet interop_nat {
    chain post { type nat hook postrouting priority srcnat; oifname "v0" masquerade; }
}
"""
"""The primary: the sync traffic untracked (as on a real sync link), masquerade towards the
server."""


# --- the topology ------------------------------------------------------------------------
class Topology:
    """``cli`` - ``a`` - ``srv``, and ``a`` - ``b`` over the sync link (module docstring)."""

    def __init__(self) -> None:
        self.pair = SyncPair(prefix=PREFIX)
        self.cli = NetNS(PREFIX)
        self.srv = NetNS(PREFIX)
        self.sockets: list[socket.socket] = []

    @property
    def a(self) -> NetNS:
        return self.pair.ns("a")

    @property
    def b(self) -> NetNS:
        return self.pair.ns("b")

    def create(self) -> "Topology":
        self.pair.links.create()
        self.cli.create()
        self.srv.create()
        a = self.a
        for ns in (a, self.cli, self.srv):
            ns.sysctl("net.ipv6.conf.all.accept_dad", 0)
            ns.sysctl("net.ipv6.conf.default.accept_dad", 0)
        for dev, peer, mine, theirs in (("c0", self.cli, (ROUTER_CLI4, ROUTER_CLI6), (CLI4, CLI6)),
                                        ("v0", self.srv, (ROUTER_SRV4, ROUTER_SRV6), (SRV4, SRV6))):
            a.run("ip", "link", "add", dev, "type", "veth", "peer", "name", "e0",
                  "netns", peer.name)
            a.run("ip", "addr", "add", f"{mine[0]}/24", "dev", dev)
            a.run("ip", "addr", "add", f"{mine[1]}/64", "dev", dev, "nodad")
            a.run("ip", "link", "set", dev, "up")
            peer.run("ip", "addr", "add", f"{theirs[0]}/24", "dev", "e0")
            peer.run("ip", "addr", "add", f"{theirs[1]}/64", "dev", "e0", "nodad")
            peer.run("ip", "link", "set", "e0", "up")
            peer.run("ip", "route", "add", "default", "via", mine[0])
            peer.run("ip", "-6", "route", "add", "default", "via", mine[1])
        a.sysctl("net.ipv4.ip_forward", 1)
        a.sysctl("net.ipv6.conf.all.forwarding", 1)
        a.nft(ROUTER_RULES)
        self.b.nft(ROUTER_RULES.split("table inet interop_nat")[0])
        for ns in (a, self.b):
            enable_labels(ns)
            for key in ("acct", "timestamp"):
                ns.sysctl(f"net.netfilter.nf_conntrack_{key}", 0)
        return self

    def close(self) -> None:
        self.close_sockets()
        self.pair.close()
        self.cli.delete()
        self.srv.delete()

    def close_sockets(self) -> None:
        for s in self.sockets:
            s.close()
        self.sockets.clear()

    # --- one run ---------------------------------------------------------------------------
    def start(self, primary: str, backup: str, mode: str, kind: str, mode_opts: str = "",
              extra: str = "") -> None:
        """Empty tables, then the daemons (primary first)."""
        self.close_sockets()
        for ns in (self.a, self.b):
            ns.conntrack("-F", check=False)
            ns.conntrack("-F", "-f", "ipv6", check=False)
        p = self.pair
        p.kinds = {"a": primary, "b": backup}
        p.mode, p.kind, p.mode_opts, p.extra = mode, kind, mode_opts, extra
        p.start("a")
        p.start("b")

    def stop(self) -> None:
        self.pair.stop("a")
        self.pair.stop("b")
        self.close_sockets()

    # --- the flows -----------------------------------------------------------------------
    def traffic(self) -> None:
        """Real TCP, UDP and ICMP from ``cli`` to ``srv`` through ``a``, IPv4 and IPv6."""
        for fam, src, dst in ((socket.AF_INET, CLI4, SRV4), (socket.AF_INET6, CLI6, SRV6)):
            with self.srv.enter():
                lsn = socket.socket(fam, socket.SOCK_STREAM)
                usrv = socket.socket(fam, socket.SOCK_DGRAM)
            with self.cli.enter():
                cln = socket.socket(fam, socket.SOCK_STREAM)
                ucli = socket.socket(fam, socket.SOCK_DGRAM)
                icmp = socket.socket(fam, socket.SOCK_RAW,
                                     socket.IPPROTO_ICMP if fam == socket.AF_INET
                                     else socket.IPPROTO_ICMPV6)
            self.sockets += [lsn, usrv, cln, ucli, icmp]
            for s in (lsn, usrv, cln, ucli, icmp):
                s.settimeout(10)
            lsn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lsn.bind((dst, 8080))
            lsn.listen(4)
            cln.connect((dst, 8080))
            conn, _ = lsn.accept()
            self.sockets.append(conn)
            cln.sendall(b"hello")
            assert conn.recv(5) == b"hello"
            conn.sendall(b"world")
            assert cln.recv(5) == b"world"
            usrv.bind((dst, 5300))
            ucli.sendto(b"q", (dst, 5300))
            data, peer = usrv.recvfrom(10)
            usrv.sendto(b"r", peer)
            assert ucli.recvfrom(10)[0] == b"r"
            echo(icmp, fam, dst)

    def batch(self) -> None:
        """The catalogue with the library, and a few ``conntrack -I``."""
        with self.a.enter(), Conntrack() as ct:
            errs = ct.create_many([c.flow for c in all_cases(CATALOGUE_NET)] + LABELLED)
            assert not [e for e in errs if e is not None], errs
        for args in CONNTRACK_I:
            self.a.conntrack("-I", *args)


def echo(sock: socket.socket, fam: int, dst: str, ident: int = 0x4242) -> None:
    """One ICMP(v6) echo request and its reply on a raw socket."""
    if fam == socket.AF_INET:
        body = bytes([8, 0, 0, 0]) + ident.to_bytes(2, "big") + b"\x00\x01" + b"ping"
        csum = _checksum(body)
        body = body[:2] + csum.to_bytes(2, "big") + body[4:]
        want = 0
    else:
        body = bytes([128, 0, 0, 0]) + ident.to_bytes(2, "big") + b"\x00\x01" + b"ping"
        want = 129  # the kernel sums ICMPv6
    sock.sendto(body, (dst, 0))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        data = sock.recv(2048)
        if fam == socket.AF_INET:
            data = data[(data[0] & 15) * 4:]
        if data[0] == want:
            return
    raise TimeoutError("no echo reply")


def _checksum(b: bytes) -> int:
    s = sum(int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


_U = Tuple(src="10.9.0.1", dst="10.9.0.2", proto=17, sport=7, dport=7)
LABELLED = [Flow(family=2, orig=_U, reply=_U.reversed(), timeout=300, mark=5,
                 labels=(1 << 3) | (1 << 70) | (1 << 127))]
"""Labels set by number (the catalogue's label depends on the host's connlabel.conf)."""
CONNTRACK_I = [
    ("-s", "10.8.1.1", "-d", "10.8.0.1", "-p", "tcp", "--sport", "1000", "--dport", "80",
     "-r", "10.8.0.1", "-q", "192.0.2.5", "--reply-port-src", "80", "--reply-port-dst", "2000",
     "--state", "ESTABLISHED", "-t", "600", "-u", "ASSURED,SEEN_REPLY,SRC_NAT"),
    ("-s", "10.8.1.2", "-d", "10.8.0.1", "-p", "tcp", "--sport", "1001", "--dport", "80",
     "--state", "SYN_SENT", "-t", "600", "-m", "7"),
    ("-s", "10.8.1.3", "-d", "10.8.0.1", "-p", "icmp", "--icmp-type", "8", "--icmp-code", "0",
     "--icmp-id", "33", "-t", "120"),
    ("-s", "2001:db8:8::3", "-d", "2001:db8:8::1", "-p", "udp", "--sport", "5", "--dport", "53",
     "-t", "600", "-w", "3", "-m", "0x10"),
]


# --- reading and comparing tables ----------------------------------------------------------
def dump(ns: NetNS) -> list[Flow]:
    with ns.enter(), Conntrack() as ct:
        return list(ct.dump())


def key(f: Flow) -> tuple:
    return (f.family, repr(f.orig), f.zone)


def name(f: Flow) -> str:
    """A stable name of an entry of the test (addresses, protocol, ports/ids, zone)."""
    o = f.orig
    fam = "ipv6" if f.family == 10 else "ipv4"
    if str(o.src) in (CLI4, CLI6):
        return f"real/{fam}/p{o.proto}"
    return f"batch/{fam}/p{o.proto}/{o.src}/{o.sport or o.icmp_type}"


def flat(v: Any, prefix: str = "") -> dict[str, Any]:
    """Nested ``to_dict()`` values as ``a.b.c`` keys."""
    if isinstance(v, dict):
        out: dict[str, Any] = {}
        for k, x in v.items():
            out.update(flat(x, f"{prefix}.{k}" if prefix else k))
        return out
    return {prefix: v}


NORMALISED = ("id", "use", "timeout")


def view(f: Flow) -> dict[str, Any]:
    d = flat(f.to_dict())
    for k in NORMALISED:
        d.pop(k, None)
    for k in ("tcp.flags_orig", "tcp.flags_reply"):
        d.pop(k, None)
    if all(d.get(f"synproxy.{k}") == 0 for k in ("isn", "its", "tsoff")):
        for k in ("isn", "its", "tsoff"):
            del d[f"synproxy.{k}"]
    return d


def ours_only(f: Flow) -> bool:
    """An entry of the test (not the sync link's, the loopback's or link-local)."""
    src = str(f.orig.src)
    return not (src.startswith(("10.231.", "fd00:231:", "127.", "::1", "fe80:", "ff0"))
                or str(f.orig.dst).startswith(("ff0", "224.", "225.")))


def on_sync_link(f: Flow) -> bool:
    return str(f.orig.src).startswith(("10.231.", "fd00:231:"))


def losses(primary: list[Flow], backup: list[Flow]) -> dict[tuple[str, str], Any]:
    """(entry, field) -> the backup's value, for every field whose value differs from the
    primary's; (entry, "<missing>") for an entry of the primary that the backup lacks and
    (entry, "<extra>") for one the backup has in addition (an entry whose key fields were
    lost shows as both)."""
    mine = {key(f): f for f in primary if ours_only(f)}
    theirs = {key(f): f for f in backup if not on_sync_link(f)}
    out: dict[tuple[str, str], Any] = {}
    for k, f in mine.items():
        g = theirs.get(k)
        if g is None:
            out[(name(f), "<missing>")] = None
            continue
        pv, bv = view(f), view(g)
        for field in sorted(set(pv) | set(bv)):
            if pv.get(field) != bv.get(field):
                out[(name(f), field)] = bv.get(field)
    for k in set(theirs) - set(mine):
        out[(name(theirs[k]), "<extra>")] = None
    return out


def check_timeouts(primary: list[Flow], backup: list[Flow], elapsed: float) -> None:
    """The backup's timeout of an entry is the primary's at the time the entry was sent:
    at least the primary's now (less a second of rounding), at most that plus the time
    since the flows were made."""
    now = {key(f): f.timeout for f in primary}
    bad = [(name(f), now[key(f)], f.timeout) for f in backup if key(f) in now
           and not now[key(f)] - 2 <= f.timeout <= now[key(f)] + elapsed + 2]
    assert not bad, bad


# --- what each role loses --------------------------------------------------------------------
C_LOSES: dict[tuple[str, str], Any] = {}
for _fam, _a in (("ipv4", "10.7.0.1"), ("ipv6", "2001:db8:7::1")):
    C_LOSES.update({
        # the reply direction's zone (``--reply-zone``): no sync attribute carries it
        (f"batch/{_fam}/p132/{_a}/100", "reply.zone"): None,
        # the C backup's commit writes the TCP "be liberal" flags into the first byte
        # (host order) of the SCTP original verification tag (spec §12; 1234 -> 1032)
        (f"batch/{_fam}/p132/{_a}/100", "sctp.vtag_orig"): (1234 & ~0xFF) | 0x08,
        # UDP-Lite ports (and the original direction's zone): not synced, so the committed
        # entry has other key fields (ports 0, no zone)
        (f"batch/{_fam}/p136/{_a}/1002", "<missing>"): None,
        (f"batch/{_fam}/p136/{_a}/None", "<extra>"): None,
        # GRE keys: not synced either (ports 0 on the backup)
        (f"batch/{_fam}/p47/{_a}/16", "<missing>"): None,
        (f"batch/{_fam}/p47/{_a}/None", "<extra>"): None,
        # an entry created with NAT attributes gets SRC_NAT/DST_NAT (16/32) on the backup
        # (the commit gives the NAT as attributes: the kernel sets the bit), where the
        # primary's ctnetlink-created entry has only the *_NAT_DONE bits (392)
        (f"batch/{_fam}/p6/{_a}/1004", "status"): 392 | 16,
        (f"batch/{_fam}/p17/{_a}/1003", "status"): 392 | 32,
        # the real TCP connections' window scales: sent with TCPWindowTracking on only, and
        # 0 on the backup even then (the kernel takes a scale over ctnetlink only when the
        # entry's TCP flags have WINDOW_SCALE, and the flags are not synced)
        (f"real/{_fam}/p6", "tcp.wscale_orig"): 0,
        (f"real/{_fam}/p6", "tcp.wscale_reply"): 0,
    })
# ``conntrack -I`` with an explicit reply tuple and no NAT attribute (a mangled reply the
# kernel did not make): the sync message has no reply tuple, the backup's is the inverse
C_LOSES[("batch/ipv4/p6/10.8.1.1/1000", "reply.dst")] = "10.8.1.1"
C_LOSES[("batch/ipv4/p6/10.8.1.1/1000", "reply.dport")] = 1000
del _fam, _a
C_BACKUP_BUG = {k for k in C_LOSES if k[1] == "sctp.vtag_orig"}
OURS_LOSES = {k: v for k, v in C_LOSES.items() if k not in C_BACKUP_BUG}
"""Our backup loses what the C pair loses but the C commit's SCTP bug (whichever the
primary): the wire carries nothing more."""
EXPECTED = {"c": C_LOSES, "ours": OURS_LOSES}


def _text_lost() -> tuple[set[str], set[str]]:
    """The lines of ``conntrack -L -o extended`` (timeouts as ``T``) that only the primary
    shows and those that only the backup shows: the same in every role (the reference
    tool prints no SCTP tag, window scale or TCP flags)."""
    primary, backup = set(), set()
    for fam, n, a, b in (("ipv4", 2, "10.7.0.1", "10.7.0.2"),
                         ("ipv6", 10, "2001:db8:7::1", "2001:db8:7::2")):
        head = f"{fam:<8} {n} "
        gre = head + ("gre      47 T src={a} dst={b} srckey={k1} dstkey={k2} [UNREPLIED] "
                      "src={b} dst={a} srckey={k2} dstkey={k1} mark=16 use=1")
        primary.add(gre.format(a=a, b=b, k1="0x10", k2="0x20"))
        backup.add(gre.format(a=a, b=b, k1="0x0", k2="0x0"))
        sctp = head + (f"sctp     132 T ESTABLISHED src={a} dst={b} sport=100 dport=200 "
                       f"[UNREPLIED] src={b} dst={a} sport=200 dport=100 {{z}}mark=0 use=1")
        primary.add(sctp.format(z="zone-reply=6 "))
        backup.add(sctp.format(z=""))
        lite = head + ("udplite  136 T src={a} dst={b} sport={p1} dport={p2} {z}[UNREPLIED] "
                       "src={b} dst={a} sport={p2} dport={p1} mark=0 use=1")
        primary.add(lite.format(a=a, b=b, p1=1002, p2=5000, z="zone-orig=4 "))
        backup.add(lite.format(a=a, b=b, p1=0, p2=0, z=""))
    tcp = ("ipv4     2 tcp      6 T ESTABLISHED src=10.8.1.1 dst=10.8.0.1 sport=1000 dport=80 "
           "src=10.8.0.1 dst={d} sport=80 dport={p} [ASSURED] mark=0 use=1")
    primary.add(tcp.format(d="192.0.2.5", p=2000))
    backup.add(tcp.format(d="10.8.1.1", p=1000))
    return primary, backup


TEXT_PRIMARY_ONLY, TEXT_BACKUP_ONLY = _text_lost()


def text_table(ns: NetNS) -> set[str]:
    """``conntrack -L -o extended`` of the reference tool, timeouts masked, without the
    sync link's entries."""
    return {line for line in table(ns) if "10.231." not in line and "fd00:231:" not in line}


# --- the tests -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    t = Topology()
    try:
        yield t.create()
    finally:
        t.close()


MODE_OPTS = {"alarm": "\t\tRefreshTime 2\n\t\tCacheTimeout 60\n"}
"""ALARM sends its cache every RefreshTime (default 60 s): 2 s keeps the test short."""


def replicate_and_commit(t: Topology, primary: str, backup: str, mode: str, kind: str,
                         kill: bool = False,
                         extra: str = "") -> tuple[list[Flow], list[Flow], float]:
    """Start the pair, wait until a first flow reached the backup (the pair is settled:
    handshake done, TCP connected), make the flows; wait until the backup's external
    cache has them all (``kill``: SIGKILL the primary as soon as its internal cache has
    them, without waiting for the backup); commit with the backup's own client. Both
    tables and the seconds since the flows were made."""
    from helpers.syncpair import PROGRAMS

    t.start(primary, backup, mode, kind, MODE_OPTS.get(mode, ""), extra)
    p = t.pair
    t0 = time.monotonic()
    t.a.conntrack("-I", *SETTLE)
    assert p.wait(lambda: len(p.external()) == 1, 30), p.external()
    t.traffic()
    t.batch()
    made = [f for f in dump(t.a) if ours_only(f)]
    if kill:
        assert p.wait(lambda: len(p.internal()) >= len(made), 30, step=0.01), \
            (len(made), p.internal())
        p.stop("a", kill=True)
        assert p.b.proc.poll() is None
    else:
        assert p.wait(lambda: len(p.external()) >= len(made), 30), (len(made), p.external())
    r = p.b.client("-c", program=PROGRAMS[backup])
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    return dump(t.a), dump(t.b), time.monotonic() - t0


SETTLE = ("-s", "10.9.9.9", "-d", "10.9.9.8", "-p", "udp", "--sport", "1", "--dport", "2",
          "-t", "600")


def check_flow_set(primary: list[Flow]) -> None:
    """The primary's table holds what the test is about: real NAT (masquerade) over IPv4
    and IPv6, TCP/UDP/ICMP(v6) from real packets, SCTP, marks, the three zones, labels."""
    mine = [f for f in primary if ours_only(f)]
    real = {(f.family, f.orig.proto) for f in mine if str(f.orig.src) in (CLI4, CLI6)
            and str(f.reply.dst) in (ROUTER_SRV4, ROUTER_SRV6)}
    assert real == {(2, 6), (2, 17), (2, 1), (10, 6), (10, 17), (10, 58)}
    assert {f.family for f in mine if f.orig.proto == 132} == {2, 10}
    assert any(f.mark for f in mine) and any(f.labels for f in mine)
    assert any(f.zone for f in mine) and any(f.orig.zone for f in mine) \
        and any(f.reply.zone for f in mine)
    # ctnetlink-made NAT too (the reply tuples mangled by the kernel)
    assert {str(f.reply.dst) for f in mine} >= {"10.7.0.9", "2001:db8:7::9"}


PAIRS = [("c", "c"), ("c", "ours"), ("ours", "c"), ("ours", "ours")]
PAIR_IDS = ["c-c", "c-ours", "ours-c", "ours-ours"]


@pytest.mark.parametrize("primary,backup", PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("kind", ["udp4", "multicast4", "tcp4", "udp6"])
@pytest.mark.parametrize("mode", ["ftfw", "notrack", "alarm"])
def test_backup_table_equals_the_primarys(topo: Topology, mode: str, kind: str, primary: str,
                                          backup: str) -> None:
    """Replicate, commit, compare field by field: each role loses exactly what is pinned
    for its backup, and ours never more than the C pair (C -> C is the control)."""
    try:
        a, b, elapsed = replicate_and_commit(topo, primary, backup, mode, kind)
        # the reference tool's view: the same lines but those of the lossy entries
        ta, tb = text_table(topo.a), text_table(topo.b)
    finally:
        topo.stop()
    assert (ta - tb, tb - ta) == (TEXT_PRIMARY_ONLY, TEXT_BACKUP_ONLY)
    assert len(ta) == len([f for f in a if ours_only(f)])
    check_flow_set(a)
    lost = losses(a, b)
    assert lost == EXPECTED[backup]
    assert set(OURS_LOSES) <= set(C_LOSES)
    check_timeouts(a, b, elapsed)
    committed_tcp = [f for f in b if f.tcp is not None and f.tcp.state is not None
                     and ours_only(f)]
    assert len(committed_tcp) >= 8
    assert all((f.tcp.flags_orig, f.tcp.flags_reply) == (LIBERAL, LIBERAL)
               for f in committed_tcp), committed_tcp


@pytest.mark.parametrize("primary,backup", PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("kind", ["udp4", "tcp4"])
@pytest.mark.parametrize("mode", ["ftfw", "notrack", "alarm"])
def test_sigkill_of_the_primary_then_commit(topo: Topology, mode: str, kind: str,
                                            primary: str, backup: str) -> None:
    """The primary dies (SIGKILL) as soon as its internal cache lists the flows, without
    waiting for the backup; the backup lives on and its commit puts every flow the
    primary had into its kernel table (with only the pinned losses of its role)."""
    try:
        a, b, _ = replicate_and_commit(topo, primary, backup, mode, kind, kill=True)
    finally:
        topo.stop()
    lost = losses(a, b)
    assert not [k for k in lost if k[1] == "<missing>" and k not in C_LOSES], lost
    assert lost == EXPECTED[backup]


WINDOW_TRACKING = "\tOptions {\n\t\tTCPWindowTracking On\n\t}\n"


@pytest.mark.parametrize("primary,backup", PAIRS, ids=PAIR_IDS)
def test_window_tracking_on(topo: Topology, primary: str, backup: str) -> None:
    """``TCPWindowTracking On``: no "be liberal" flags on the committed TCP entries, and
    the C backup's SCTP bug is gone (it lives in the liberal-flags branch): every role
    loses what our backup loses with the default."""
    try:
        a, b, _ = replicate_and_commit(topo, primary, backup, "ftfw", "udp4",
                                       extra=WINDOW_TRACKING)
    finally:
        topo.stop()
    assert losses(a, b) == OURS_LOSES
    committed_tcp = [f for f in b if f.tcp is not None and f.tcp.state is not None
                     and ours_only(f)]
    assert len(committed_tcp) >= 8
    assert all((f.tcp.flags_orig, f.tcp.flags_reply) == ((0, 0), (0, 0))
               for f in committed_tcp), committed_tcp
