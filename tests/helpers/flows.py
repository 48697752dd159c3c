"""A catalogue of conntrack entries, each as a reference ``conntrack -I`` command line and
as the equivalent :class:`~ctnetlink.model.Flow` for our ``Conntrack.create``.

Every layer-4 protocol the reference tool knows (tcp, udp, udplite, sctp, dccp, icmp /
icmpv6, gre) plus protocol numbers 200 and 2, for IPv4 and IPv6, with source and
destination NAT, the three kinds of zone (``-w``, ``--orig-zone``, ``--reply-zone``) and
marks and a label. ``net`` shifts the addresses so several catalogues can live in one table.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ctnetlink.constants import Status
from ctnetlink.model import DccpInfo, Flow, NatRange, SctpInfo, TcpInfo, Tuple

from .reference import label_map

KERNEL_TRACKS_DCCP = os.path.exists("/proc/sys/net/netfilter/nf_conntrack_dccp_loose")
"""DCCP tracking was removed from Linux 6.16; without it DCCP entries are generic."""
TIMEOUT = 300
CONFIRMED = int(Status.CONFIRMED)
LIBERAL = (0x0A, 0x0A)
"""TCP window flags the reference sends for every ``-p tcp`` (BE_LIBERAL|SACK_PERM)."""


@dataclass(frozen=True)
class Case:
    name: str
    family: int
    args: tuple[str, ...]
    """Arguments of ``conntrack -I`` (the reference)."""
    flow: Flow
    """The same entry as our request."""

    @property
    def key(self) -> Tuple:
        return self.flow.orig


def bswap32(v: int) -> int:
    """The reference (1.4.7) converts SCTP verification tags to network order twice: the
    kernel stores (and our library shows) ``bswap32`` of what ``--orig-vtag`` says, and
    ``-o save`` converts back. Catalogue commands pass swapped values so that both
    tools create the same kernel entry."""
    return int.from_bytes(v.to_bytes(4, "big"), "little")


def addrs(family: int, net: int) -> tuple[str, str, str]:
    """(client, server, NAT address) of catalogue ``net``."""
    if family == 10:
        return (f"2001:db8:{net:x}::1", f"2001:db8:{net:x}::2", f"2001:db8:{net:x}::9")
    return (f"10.{net}.0.1", f"10.{net}.0.2", f"10.{net}.0.9")


def catalogue(family: int, net: int = 1) -> list[Case]:
    a, b, nat = addrs(family, net)
    v6 = family == 10

    def T(proto: int, sport=None, dport=None, zone=None, src=a, dst=b, **kw) -> Tuple:
        return Tuple(src=src, dst=dst, proto=proto, sport=sport, dport=dport, zone=zone, **kw)

    def R(t: Tuple, **kw) -> Tuple:
        r = t.reversed()
        return r.replace(**kw) if kw else r

    def base(*extra: str) -> tuple[str, ...]:
        return ("-s", a, "-d", b, *extra, "-t", str(TIMEOUT))

    # a label (the lowest named bit of the reference's map): entries keep it only when
    # the namespace uses labels (see helpers.ftp.enable_labels)
    names = label_map()
    bit = min(names) if names else None
    lab = ("--label-add", names[bit]) if names else ()

    cases = []
    o = T(6, 1000, 80)
    cases.append(Case("tcp", family, base("-p", "tcp", "--sport", "1000", "--dport", "80",
                                          "--state", "ESTABLISHED", "-u", "SEEN_REPLY,ASSURED",
                                          "-m", "7", *lab),
                      Flow(family=family, orig=o, reply=R(o), timeout=TIMEOUT, mark=7,
                           status=int(Status.SEEN_REPLY | Status.ASSURED) | CONFIRMED,
                           tcp=TcpInfo(state=3, flags_orig=LIBERAL, flags_reply=LIBERAL),
                           labels=None if bit is None else 1 << bit)))
    o = T(17, 1001, 53)
    cases.append(Case("udp-zone", family, base("-p", "udp", "--sport", "1001", "--dport", "53",
                                               "-w", "9"),
                      Flow(family=family, orig=o, reply=R(o), timeout=TIMEOUT, zone=9)))
    o = T(136, 1002, 5000, zone=4)
    cases.append(Case("udplite-orig-zone", family,
                      base("-p", "udplite", "--sport", "1002", "--dport", "5000", "--orig-zone", "4"),
                      Flow(family=family, orig=o, reply=R(o), timeout=TIMEOUT)))
    o = T(132, 100, 200)
    cases.append(Case("sctp-reply-zone", family,
                      base("-p", "sctp", "--sport", "100", "--dport", "200", "--state", "ESTABLISHED",
                           "--orig-vtag", str(bswap32(1234)), "--reply-vtag", str(bswap32(5678)),
                           "--reply-zone", "6"),
                      Flow(family=family, orig=o, reply=R(o, zone=6), timeout=TIMEOUT,
                           sctp=SctpInfo(state=4, vtag_orig=1234, vtag_reply=5678))))
    o = T(33, 5, 6)
    cases.append(Case("dccp", family, base("-p", "dccp", "--sport", "5", "--dport", "6",
                                           "--state", "OPEN", "--role", "client"),
                      Flow(family=family, orig=o, reply=R(o), timeout=TIMEOUT,
                           dccp=DccpInfo(state=4, role=0))))
    if v6:
        o = T(58, icmp_type=128, icmp_code=0, icmp_id=77)
        cases.append(Case("icmpv6", family, base("-p", "icmpv6", "--icmpv6-type", "128",
                                                 "--icmpv6-code", "0", "--icmpv6-id", "77"),
                          Flow(family=family, orig=o, reply=R(o, icmp_type=129), timeout=TIMEOUT)))
    else:
        o = T(1, icmp_type=8, icmp_code=0, icmp_id=77)
        cases.append(Case("icmp", family, base("-p", "icmp", "--icmp-type", "8", "--icmp-code", "0",
                                               "--icmp-id", "77"),
                          Flow(family=family, orig=o, reply=R(o, icmp_type=0), timeout=TIMEOUT)))
    o = T(47, 0x10, 0x20)
    cases.append(Case("gre-mark", family, base("-p", "gre", "--srckey", "0x10", "--dstkey", "0x20",
                                               "-m", "16"),
                      Flow(family=family, orig=o, reply=R(o), timeout=TIMEOUT, mark=16)))
    o = T(200)
    cases.append(Case("proto-200", family, base("-p", "200", "-m", "255"),
                      Flow(family=family, orig=o, reply=R(o), timeout=TIMEOUT, mark=255)))
    o = T(2)
    cases.append(Case("proto-2", family, base("-p", "2"),
                      Flow(family=family, orig=o, reply=R(o), timeout=TIMEOUT)))
    o = T(17, 1003, 53)
    natarg = f"[{nat}]:5353" if v6 else f"{nat}:5353"
    cases.append(Case("udp-dnat", family, base("-p", "udp", "--sport", "1003", "--dport", "53",
                                               "--dst-nat", natarg),
                      Flow(family=family, orig=o, reply=Tuple(src=nat, dst=a, proto=17, sport=5353, dport=1003),
                           timeout=TIMEOUT, nat_dst=NatRange(min_ip=nat, min_port=5353, max_port=5353))))
    o = T(6, 1004, 443)
    cases.append(Case("tcp-snat", family, base("-p", "tcp", "--sport", "1004", "--dport", "443",
                                               "--state", "SYN_SENT", "--src-nat", nat),
                      Flow(family=family, orig=o, reply=Tuple(src=b, dst=nat, proto=6, sport=443, dport=1004),
                           timeout=TIMEOUT, nat_src=NatRange(min_ip=nat),
                           tcp=TcpInfo(state=1, flags_orig=LIBERAL, flags_reply=LIBERAL))))
    return cases


def all_cases(net: int = 1) -> list[Case]:
    return catalogue(2, net) + catalogue(10, net)


def request_view(case: Case) -> dict:
    """The fields of a reference view (``helpers.reference``) fixed by the request."""
    from .reference import flow_view

    f = case.flow
    v = flow_view(f.copy(status=f.status), labels={})
    keep = ("family", "proto", "orig", "reply", "mark", "zone", "state", "vtags")
    out = {k: v[k] for k in keep}
    if f.mark is None:
        out["mark"] = 0
    if f.sctp is None:
        out["vtags"] = None
    if f.proto == 33 and not KERNEL_TRACKS_DCCP:
        # this kernel has no DCCP tracker: the entry is generic, without ports or state
        out["orig"] = out["orig"][:2] + (("ports", 0, 0),) + out["orig"][3:]
        out["reply"] = out["reply"][:2] + (("ports", 0, 0),) + out["reply"][3:]
        out["state"] = None
    return out
