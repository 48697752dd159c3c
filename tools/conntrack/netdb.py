"""``getprotobyname``/``getprotobynumber`` over the system protocol database.

``/etc/protocols`` is read the first time a lookup is made, with glibc's "files" rules
(``#`` starts a comment, then name, decimal number, aliases; names are matched exactly).
If the file does not exist, an embedded copy of Debian's netbase table is used, so a
minimal container without netbase gives the same results as a normal system.
"""
from __future__ import annotations

import os

from .libc import C_SPACE, strtoul, to_int32

PROTOCOLS_FILE = "/etc/protocols"

# Debian netbase 6.4 /etc/protocols: "name number aliases..."
_NETBASE = """\
ip 0 IP;hopopt 0 HOPOPT;icmp 1 ICMP;igmp 2 IGMP;ggp 3 GGP;ipencap 4 IP-ENCAP;st 5 ST;tcp 6 TCP;
egp 8 EGP;igp 9 IGP;pup 12 PUP;udp 17 UDP;hmp 20 HMP;xns-idp 22 XNS-IDP;rdp 27 RDP;
iso-tp4 29 ISO-TP4;dccp 33 DCCP;xtp 36 XTP;ddp 37 DDP;idpr-cmtp 38 IDPR-CMTP;ipv6 41 IPv6;
ipv6-route 43 IPv6-Route;ipv6-frag 44 IPv6-Frag;idrp 45 IDRP;rsvp 46 RSVP;gre 47 GRE;
esp 50 IPSEC-ESP;ah 51 IPSEC-AH;skip 57 SKIP;ipv6-icmp 58 IPv6-ICMP;ipv6-nonxt 59 IPv6-NoNxt;
ipv6-opts 60 IPv6-Opts;rspf 73 RSPF CPHB;vmtp 81 VMTP;eigrp 88 EIGRP;ospf 89 OSPFIGP;
ax.25 93 AX.25;ipip 94 IPIP;etherip 97 ETHERIP;encap 98 ENCAP;pim 103 PIM;ipcomp 108 IPCOMP;
vrrp 112 VRRP;l2tp 115 L2TP;isis 124 ISIS;sctp 132 SCTP;fc 133 FC;
mobility-header 135 Mobility-Header;udplite 136 UDPLite;mpls-in-ip 137 MPLS-in-IP;manet 138;
hip 139 HIP;shim6 140 Shim6;wesp 141 WESP;rohc 142 ROHC;ethernet 143 Ethernet;mptcp 262 MPTCP
"""

Entry = tuple  # (name, number, aliases)
_cache: dict[str, list[Entry]] = {}


def parse_protocols(text: str) -> list[Entry]:
    """Entries of a protocols(5) file in file order, as glibc's parser accepts them."""
    entries: list[Entry] = []
    for line in text.split("\n"):
        line = line.split("#", 1)[0]
        i, n = 0, len(line)
        while i < n and line[i] in C_SPACE:
            i += 1
        start = i
        while i < n and line[i] not in C_SPACE:
            i += 1
        name = line[start:i]
        if not name:
            continue
        while i < n and line[i] in C_SPACE:
            i += 1
        rest = line[i:]
        value, end = strtoul(rest, 10)
        if end == 0:
            continue
        if end < len(rest) and rest[end] not in C_SPACE:
            continue
        aliases = tuple(rest[end:].split())
        entries.append((name, to_int32(value), aliases))
    return entries


def _entries(path: str | None = None) -> list[Entry]:
    path = path or os.environ.get("PYCONNTRACK_PROTOCOLS", PROTOCOLS_FILE)
    cached = _cache.get(path)
    if cached is None:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                cached = parse_protocols(f.read())
        except OSError:
            cached = parse_protocols(_NETBASE.replace(";", "\n"))
        _cache[path] = cached
    return cached


def getprotobyname(name: str, path: str | None = None) -> int | None:
    """The number of the protocol whose name or alias is exactly ``name``, or None."""
    for pname, number, aliases in _entries(path):
        if pname == name or name in aliases:
            return number
    return None


def getprotobynumber(number: int, path: str | None = None) -> str | None:
    """The name of the first protocol with this number, or None."""
    for pname, pnum, _aliases in _entries(path):
        if pnum == number:
            return pname
    return None
