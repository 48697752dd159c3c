"""Dump filters as pairs: our ``dump()`` keyword arguments and the reference's ``-L``
arguments that select the same entries, plus the table they are tried on."""
from __future__ import annotations

from ctnetlink.constants import Status
from ctnetlink.model import Flow, Tuple

from .flows import addrs, all_cases

A4, B4, N4 = addrs(2, 1)
A6, B6, N6 = addrs(10, 1)
SR, AS = int(Status.SEEN_REPLY), int(Status.ASSURED)

# (id, our dump() keyword arguments, the reference's -L arguments)
FILTERS = [
    ("mark", dict(mark=7), ["-m", "7"]),
    ("mark-mask", dict(mark=0x10, mark_mask=0xF0), ["-m", "0x10/0xf0"]),
    ("mark-mask-zero", dict(mark=0, mark_mask=0xFFFFFF00), ["-m", "0/0xffffff00"]),
    ("mark-v4", dict(family=2, mark=16), ["-f", "ipv4", "-m", "16"]),
    ("status-assured", dict(status=AS), ["-u", "ASSURED"]),
    ("status-seen-reply", dict(status=SR), ["-u", "SEEN_REPLY"]),
    ("status-unreplied", dict(status=0, status_mask=SR), ["-u", "UNREPLIED"]),
    ("status-v6", dict(family=10, status=SR), ["-f", "ipv6", "-u", "SEEN_REPLY"]),
    ("zone", dict(zone=9), ["-w", "9"]),
    ("orig-zone", dict(zone=4), ["--orig-zone", "4"]),
    ("reply-zone", dict(zone=6), ["--reply-zone", "6"]),
    ("src-v4", dict(orig=Tuple(src=A4)), ["-s", A4]),
    ("src-v6", dict(orig=Tuple(src=A6)), ["-s", A6]),
    ("dst-v4-fam", dict(family=2, orig=Tuple(dst=B4)), ["-f", "ipv4", "-d", B4]),
    ("proto-any-family", dict(orig=Tuple(proto=17)), ["-p", "udp"]),
    ("proto-v6", dict(family=10, orig=Tuple(proto=17)), ["-f", "ipv6", "-p", "udp"]),
    ("proto-v4", dict(family=2, orig=Tuple(proto=6)), ["-f", "ipv4", "-p", "tcp"]),
    ("dport", dict(orig=Tuple(proto=6, dport=80)), ["-p", "tcp", "--dport", "80"]),
    ("sport-dport-v6", dict(family=10, orig=Tuple(proto=17, sport=1001, dport=53)),
     ["-f", "ipv6", "-p", "udp", "--sport", "1001", "--dport", "53"]),
    ("icmp-type", dict(orig=Tuple(proto=1, icmp_type=8)), ["-p", "icmp", "--icmp-type", "8"]),
    ("icmpv6-id", dict(family=10, orig=Tuple(proto=58, icmp_id=77)),
     ["-f", "ipv6", "-p", "icmpv6", "--icmpv6-id", "77"]),
    ("reply-src-dnat", dict(reply=Tuple(src=N4)), ["-r", N4]),
    ("reply-dst-snat-v6", dict(reply=Tuple(dst=N6)), ["-q", N6]),
    ("reply-port", dict(reply=Tuple(proto=6, sport=443)),
     ["-p", "tcp", "--reply-port-src", "443"]),
    ("src-and-mark", dict(orig=Tuple(src=A4), mark=7), ["-s", A4, "-m", "7"]),
    ("proto-and-status", dict(orig=Tuple(proto=6), status=AS), ["-p", "tcp", "-u", "ASSURED"]),
]


def build_table(ct) -> list[Flow]:
    """The catalogue for IPv4 and IPv6 plus entries with more marks and statuses."""
    for case in all_cases():
        ct.create(case.flow)
    for fam in (2, 10):
        a, b, _ = addrs(fam, 3)
        for j, (mark, status) in enumerate([(0x13, SR), (0x1F0, SR | AS), (0x20, None)]):
            o = Tuple(src=a, dst=b, proto=17, sport=3000 + j, dport=9)
            ct.create(Flow(family=fam, orig=o, reply=o.reversed(), timeout=300, mark=mark,
                           status=None if status is None else status | int(Status.CONFIRMED)))
    return list(ct.dump())


