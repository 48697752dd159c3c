"""Capture real ctnetlink traffic from the running kernel as unit-test data.

    sudo python tests/helpers/capture.py [tests/unit/data/kernel_messages.json]

Runs in a private network namespace (created and deleted here) with accounting,
timestamps, the label extension, connection tracking of local traffic and the ``ftp``
helper enabled, and records every datagram our library sends and receives:

* the catalogue of ``helpers.flows`` (every protocol, IPv4/IPv6, NAT both ways, all zone
  kinds, marks) created by the reference and by us, labelled entries, real UDP, ICMP,
  ICMPv6 and FTP traffic (counters, TCP window state, a helper, expectations);
* dumps (all, per family, kernel-filtered by mark and with ``CTA_FILTER``, counter
  zeroing, the dying and unconfirmed tables), gets, updates, deletes, flushes;
* expectation dumps, gets, creation and deletion; statistics (global, per CPU,
  expectations);
* every multicast event of all six groups caused by the above;
* error replies: ENOENT, EEXIST, EINVAL, EPERM (a child without CAP_NET_ADMIN), EOPNOTSUPP,
  ENOSPC, EBUSY, one with extended-ack attributes and one capped (``NETLINK_CAP_ACK``).

The JSON file lists ``{"scenario", "direction", "hex"}`` per datagram plus the kernel
release; ``tests/unit/test_codec_kernel.py`` and friends use it without root.
"""
from __future__ import annotations

import datetime
import json
import platform
import socket
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parents[1]))

from helpers.flows import all_cases  # noqa: E402
from helpers.ftp import FtpServer, enable_ftp_helper, enable_labels, enable_tracking  # noqa: E402
from helpers.netns import CONNTRACK, NetNS, run_in_child  # noqa: E402

from ctnetlink.client import Conntrack  # noqa: E402
from ctnetlink.constants import Group, Status  # noqa: E402
from ctnetlink.errors import ConntrackError  # noqa: E402
from ctnetlink.model import Expect, Flow, NatRange, Tuple  # noqa: E402
from nfnl.codec import nla, nla_nest, nla_u8  # noqa: E402
from nfnl.constants import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST  # noqa: E402
from nfnl.errors import NetlinkError  # noqa: E402
from nfnl.message import build_nfnl  # noqa: E402
from nfnl.socket import NetlinkSocket  # noqa: E402

DEFAULT_OUT = HERE.parents[1] / "tests" / "unit" / "data" / "kernel_messages.json"
NETLINK_CAP_ACK = 10
SOL_NETLINK = 270


class Recorder:
    """A socket tap: every datagram with the scenario it belongs to."""

    def __init__(self) -> None:
        self.scenario = "setup"
        self.datagrams: list[dict[str, str]] = []

    def write(self, data: bytes, direction: str, family: int = 0, ts_ns: int | None = None) -> None:
        self.datagrams.append({"scenario": self.scenario, "direction": direction,
                               "hex": bytes(data).hex()})

    def add(self, scenario: str, direction: str, data: bytes) -> None:
        self.datagrams.append({"scenario": scenario, "direction": direction, "hex": data.hex()})


def expect_error(fn, code: int) -> None:
    try:
        fn()
    except ConntrackError as e:
        assert e.errno == code, (e, code)
    else:
        raise AssertionError(f"expected errno {code}")


def _udp(family: int) -> None:
    addr = "127.0.0.1" if family == socket.AF_INET else "::1"
    with socket.socket(family, socket.SOCK_DGRAM) as srv, socket.socket(family, socket.SOCK_DGRAM) as cli:
        srv.bind((addr, 0))
        srv.settimeout(5)
        cli.settimeout(5)
        cli.sendto(b"q" * 12, srv.getsockname()[:2])
        _, peer = srv.recvfrom(100)
        srv.sendto(b"a" * 30, peer)
        cli.recv(100)


def _ping(family: int) -> None:
    if family == socket.AF_INET:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        body = bytearray(struct.pack(">BBHHH", 8, 0, 0, 0x4242, 7) + b"capture!")
        total = sum(struct.unpack(f">{len(body) // 2}H", body))
        total = (total >> 16) + (total & 0xFFFF)
        total += total >> 16
        body[2:4] = struct.pack(">H", ~total & 0xFFFF)
        dst, reply = "127.0.0.1", 0
    else:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        body = bytearray(struct.pack(">BBHHH", 128, 0, 0, 0x4242, 7) + b"capture!")
        dst, reply = "::1", 129
    with s:
        s.settimeout(5)
        s.sendto(bytes(body), (dst, 0))
        while True:
            data = s.recv(1500)
            if (data[20] if family == socket.AF_INET else data[0]) == reply:
                return


def _eperm_child() -> list[tuple[str, str, bytes]]:
    rec: list[tuple[str, str, bytes]] = []

    class Tap:
        scenario = "error-eperm"

        def write(self, data, direction, family=0, ts_ns=None):
            rec.append((self.scenario, direction, bytes(data)))

    tap = Tap()
    with Conntrack(NetlinkSocket(tap=tap)) as c:
        for op in (lambda: list(c.dump()), c.count,
                   lambda: c.create(all_cases(7)[1].flow), c.flush):
            try:
                op()
            except ConntrackError as e:
                assert e.errno == 1
    return rec


def capture(ns: NetNS) -> dict:
    rec = Recorder()
    ns.sysctl("net.netfilter.nf_conntrack_acct", 1)
    ns.sysctl("net.netfilter.nf_conntrack_timestamp", 1)

    ct = Conntrack(NetlinkSocket(tap=rec))
    # created before labels are in use: no label extension (ENOSPC below)
    bare = Tuple(src="10.77.0.1", dst="10.77.0.2", proto=17, sport=7, dport=7)
    rec.scenario = "create-bare"
    ct.create(Flow(family=2, orig=bare, reply=bare.reversed(), timeout=900))

    enable_labels(ns)
    enable_tracking(ns)
    enable_ftp_helper(ns)
    events = NetlinkSocket(groups=int(Group.CONNTRACK | Group.EXPECT), rcvbuf=16 << 20, tap=rec)

    for case in all_cases(1):
        ns.run(CONNTRACK, "-I", *case.args)
    ns.run(CONNTRACK, "-I", "-s", "10.1.9.1", "-d", "10.1.9.2", "-p", "tcp", "--sport", "5",
           "--dport", "6", "--state", "ESTABLISHED", "-t", "500", "--label-add", "web,high")
    rec.scenario = "create"
    for case in all_cases(2):
        ct.create(case.flow)
    rec.scenario = "create-labels"
    lab = Tuple(src="2001:db8:77::1", dst="2001:db8:77::2", proto=6, sport=1, dport=2)
    ct.create(Flow(family=10, orig=lab, reply=lab.reversed(), timeout=900,
                   labels=(1 << 0) | (1 << 5) | (1 << 127), labels_size=16))
    lab4 = Tuple(src="10.77.1.1", dst="10.77.1.2", proto=132, sport=1, dport=2)
    ct.create(Flow(family=2, orig=lab4, reply=lab4.reversed(), timeout=900, labels=1 << 2))

    server = FtpServer()
    for fam in (socket.AF_INET, socket.AF_INET6):
        _udp(fam)
        _ping(fam)
    server.session(socket.AF_INET, "PORT")
    server.session(socket.AF_INET6, "EPSV")
    server.session(socket.AF_INET, "PASV")
    server.session(socket.AF_INET6, "EPRT")

    rec.scenario = "dump"
    flows = list(ct.dump())
    rec.scenario = "dump-ipv6"
    list(ct.dump(10))
    rec.scenario = "dump-mark"
    list(ct.dump(mark=7))
    rec.scenario = "dump-status"
    list(ct.dump(status=int(Status.ASSURED)))
    rec.scenario = "dump-cta-filter"
    list(ct.dump(orig=Tuple(proto=17), zone=9))
    list(ct.dump(2, reply=Tuple(src="10.1.0.9")))
    rec.scenario = "dump-dying"
    list(ct.dump(table="dying"))
    rec.scenario = "dump-unconfirmed"
    list(ct.dump(table="unconfirmed"))
    rec.scenario = "get"
    for f in flows[:6]:
        ct.get(f.orig, zone=f.zone)
    rec.scenario = "dump-ctrzero"
    list(ct.dump(2, zero=True))

    rec.scenario = "update"
    tcp = next(f for f in flows if f.proto == 6 and f.helper is None and f.family == 2
               and f.status & Status.SEEN_REPLY)
    ct.update(Flow(family=2, orig=tcp.orig, zone=tcp.zone, mark=0x5A5A, timeout=4000))
    ct.update(Flow(family=10, orig=lab, labels=1 << 3, labels_mask=1 << 3, labels_size=16))
    rec.scenario = "batch"
    many = []
    for i in range(12):
        o = Tuple(src=f"10.88.0.{i + 1}", dst="10.88.1.1", proto=17, sport=4000 + i, dport=53)
        many.append(Flow(family=2, orig=o, reply=o.reversed(), timeout=100, mark=i))
    ct.create_many(many)
    ct.update_many([m.copy(mark=1000 + i) for i, m in enumerate(many)])
    ct.delete_many(many[::2])

    rec.scenario = "expect-dump"
    exps = list(ct.dump_expect(0))
    rec.scenario = "expect-get"
    for e in exps:
        ct.get_expect(e.tuple)
    rec.scenario = "expect-create"
    master = next(f for f in flows if f.helper == "ftp" and f.family == 2)
    mine = Expect(family=2, master=master.orig, tuple=Tuple(src="127.0.0.1", dst="127.0.0.1", proto=6, sport=1800, dport=1801),
                  mask=Tuple(src="255.255.255.255", dst="255.255.255.255", proto=6, sport=0xFFFF, dport=0xFFFF), timeout=60)
    ct.create_expect(mine)
    rec.scenario = "expect-dump"
    list(ct.dump_expect(2))
    rec.scenario = "expect-delete"
    ct.delete_expect(mine.tuple)

    rec.scenario = "stats"
    ct.count()
    ct.stats()
    ct.expect_stats()

    rec.scenario = "error-enoent"
    expect_error(lambda: ct.get(Tuple(src="10.99.0.1", dst="10.99.0.2", proto=6, sport=1, dport=2)), 2)
    expect_error(lambda: ct.get_expect(Tuple(src="127.0.0.1", dst="127.0.0.1", proto=6, sport=3, dport=4)), 2)
    rec.scenario = "error-eexist"
    expect_error(lambda: ct.create(all_cases(2)[0].flow), 17)
    rec.scenario = "error-einval"
    expect_error(lambda: ct.create(all_cases(3)[0].flow.copy(timeout=None)), 22)
    rec.scenario = "error-eopnotsupp"
    expect_error(lambda: ct.create_expect(mine.copy(master=bare)), 95)
    expect_error(lambda: ct.update(Flow(family=2, orig=bare, nat_src=NatRange(min_ip="10.77.0.9"))), 95)
    rec.scenario = "error-enospc"
    expect_error(lambda: ct.update(Flow(family=2, orig=bare, labels=1)), 28)
    rec.scenario = "error-ebusy"
    expect_error(lambda: ct.update(Flow(family=2, orig=tcp.orig, zone=tcp.zone, status=8)), 16)
    for scenario, direction, data in run_in_child(_eperm_child, privileges="nobody"):
        rec.add(scenario, direction, data)

    rec.scenario = "error-extack"
    with NetlinkSocket(ext_ack=True, tap=rec) as s:
        # CTA_TIMEOUT with a 2-byte payload fails the kernel's attribute policy
        bad = nla_nest(1, nla_nest(2, nla_u8(1, 17))) + nla(7, b"\0\1")
        try:
            s.request(build_nfnl(0x100, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, 2,
                                 bad, s.next_seq()))
        except NetlinkError as e:
            assert e.errno in (22, 34), e
    rec.scenario = "error-capped"
    raw = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
    raw.bind((0, 0))
    raw.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
    with NetlinkSocket(sock=raw, tap=rec) as s:
        with Conntrack(s) as c:
            expect_error(lambda: c.get(Tuple(src="10.99.0.1", dst="10.99.0.2", proto=6, sport=1, dport=2)), 2)

    rec.scenario = "flush"
    ct.flush(mark=0x5A5A)
    ct.flush_expect()
    ct.flush()

    server.close()
    rec.scenario = "events"
    events.setblocking(False)
    while events.recv(1 << 20) is not None:
        pass
    events.close()
    ct.close()
    return {
        "kernel": platform.release(),
        "reference": "conntrack v1.4.7 (conntrack-tools)",
        "generator": "tests/helpers/capture.py",
        "captured": datetime.date.today().isoformat(),
        "datagrams": rec.datagrams,
    }


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    with NetNS("pyct-capture") as ns:
        with ns.enter():
            data = capture(ns)
    out.write_text(json.dumps(data, indent=1) + "\n")
    counts: dict[str, int] = {}
    for d in data["datagrams"]:
        counts[d["scenario"]] = counts.get(d["scenario"], 0) + 1
    print(f"{out}: {len(data['datagrams'])} datagrams", counts)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
