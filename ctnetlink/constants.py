"""ctnetlink constants from <linux/netfilter/nfnetlink_conntrack.h> and friends.

Message types, multicast groups, status bits, protocol states and the names the
reference ``conntrack`` tool prints for them.
"""
from __future__ import annotations


NFNL_SUBSYS_CTNETLINK = 1
NFNL_SUBSYS_CTNETLINK_EXP = 2


IPCTNL_MSG_CT_NEW = 0x100
IPCTNL_MSG_CT_GET = 0x101
IPCTNL_MSG_CT_DELETE = 0x102
IPCTNL_MSG_CT_GET_CTRZERO = 0x103
IPCTNL_MSG_CT_GET_STATS_CPU = 0x104
IPCTNL_MSG_CT_GET_STATS = 0x105
IPCTNL_MSG_CT_GET_DYING = 0x106
IPCTNL_MSG_CT_GET_UNCONFIRMED = 0x107
IPCTNL_MSG_EXP_NEW = 0x200
IPCTNL_MSG_EXP_GET = 0x201
IPCTNL_MSG_EXP_DELETE = 0x202
IPCTNL_MSG_EXP_GET_STATS_CPU = 0x203


NFNLGRP_CONNTRACK_NEW = 1
NFNLGRP_CONNTRACK_UPDATE = 2
NFNLGRP_CONNTRACK_DESTROY = 3
NFNLGRP_CONNTRACK_EXP_NEW = 4
NFNLGRP_CONNTRACK_EXP_UPDATE = 5
NFNLGRP_CONNTRACK_EXP_DESTROY = 6


# TCP window tracking flags (CTA_PROTOINFO_TCP_FLAGS_*)
IP_CT_TCP_FLAG_WINDOW_SCALE = 0x01
IP_CT_TCP_FLAG_SACK_PERM = 0x02
IP_CT_TCP_FLAG_CLOSE_INIT = 0x04
IP_CT_TCP_FLAG_BE_LIBERAL = 0x08
IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED = 0x10
IP_CT_TCP_FLAG_MAXACK_SET = 0x20
IP_CT_TCP_FLAG_CHALLENGE_ACK = 0x40
IP_CT_TCP_SIMULTANEOUS_OPEN = 0x80

# expectation flags
NF_CT_EXPECT_PERMANENT = 0x1
NF_CT_EXPECT_INACTIVE = 0x2
NF_CT_EXPECT_USERSPACE = 0x4

# CTA_FILTER flags (kernel's CTA_FILTER_F_*)
CTA_FILTER_F_CTA_IP_SRC = 1 << 0
CTA_FILTER_F_CTA_IP_DST = 1 << 1
CTA_FILTER_F_CTA_TUPLE_ZONE = 1 << 2
CTA_FILTER_F_CTA_PROTO_NUM = 1 << 3
CTA_FILTER_F_CTA_PROTO_SRC_PORT = 1 << 4
CTA_FILTER_F_CTA_PROTO_DST_PORT = 1 << 5
CTA_FILTER_F_CTA_PROTO_ICMP_TYPE = 1 << 6
CTA_FILTER_F_CTA_PROTO_ICMP_CODE = 1 << 7
CTA_FILTER_F_CTA_PROTO_ICMP_ID = 1 << 8
CTA_FILTER_F_CTA_PROTO_ICMPV6_TYPE = 1 << 9
CTA_FILTER_F_CTA_PROTO_ICMPV6_CODE = 1 << 10
CTA_FILTER_F_CTA_PROTO_ICMPV6_ID = 1 << 11
CTA_FILTER_F_ALL = (1 << 12) - 1

# layer-4 protocol numbers with a built-in handler in the reference tool
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_DCCP = 33
IPPROTO_GRE = 47
IPPROTO_ICMPV6 = 58
IPPROTO_SCTP = 132
IPPROTO_UDPLITE = 136

PROTOCOLS: dict[int, tuple[str, str, str | None, bool]] = {
    # number: (name, tuple kind, protocol info, NAT ports in libnetfilter_conntrack requests)
    IPPROTO_ICMP: ("icmp", "icmp", None, False),
    IPPROTO_TCP: ("tcp", "ports", "tcp", True),
    IPPROTO_UDP: ("udp", "ports", None, True),
    IPPROTO_DCCP: ("dccp", "ports", "dccp", False),
    IPPROTO_GRE: ("gre", "keys", None, False),
    IPPROTO_ICMPV6: ("icmpv6", "icmp", None, False),
    IPPROTO_SCTP: ("sctp", "ports", "sctp", False),
    IPPROTO_UDPLITE: ("udplite", "ports", None, False),
}
"""The one table of per-protocol facts: the layer-4 protocols the reference tool knows.

The tuple kind says what a tuple carries besides the protocol number: ``ports``
(``sport``/``dport``), ``keys`` (GRE keys, carried in the same attributes as ports but
printed as ``srckey``/``dstkey`` and never compared by the reference's filters) or
``icmp`` (type, code and id). The protocol info names the :class:`~ctnetlink.model.Flow`
field of ``CTA_PROTOINFO`` (``tcp``, ``sctp``, ``dccp``). The last column says whether
libnetfilter_conntrack puts NAT ports in a request (TCP and UDP only). The sets below
are derived from it."""

L4_NAMES = {n: row[0] for n, row in PROTOCOLS.items()}
L3_NAMES = {2: "ipv4", 10: "ipv6"}
PORT_PROTOS = frozenset(n for n, row in PROTOCOLS.items() if row[1] == "ports")
"""Protocols whose tuples have source and destination ports."""
KEY_PROTOS = frozenset(n for n, row in PROTOCOLS.items() if row[1] == "keys")
"""Protocols whose tuples have keys in the port attributes (GRE)."""
PORT_ATTR_PROTOS = PORT_PROTOS | KEY_PROTOS
"""Protocols whose tuples use ``CTA_PROTO_SRC_PORT``/``CTA_PROTO_DST_PORT``."""
ICMP_PROTOS = frozenset(n for n, row in PROTOCOLS.items() if row[1] == "icmp")
"""ICMP and ICMPv6: tuples with type, code and id."""
NAT_PORT_PROTOS = frozenset(n for n, row in PROTOCOLS.items() if row[3])
"""Protocols whose NAT ports libnetfilter_conntrack (and so the reference tool) sends."""
PROTOINFO = {n: row[2] for n, row in PROTOCOLS.items() if row[2] is not None}
"""Protocol number -> the Flow field of its ``CTA_PROTOINFO`` (``tcp``, ``sctp``, ``dccp``)."""
ICMP_REPLY_TYPES = {
    IPPROTO_ICMP: {0: 8, 8: 0, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17},
    IPPROTO_ICMPV6: {128: 129, 129: 128, 139: 140, 140: 139},
}
"""The type of the answer to an ICMP/ICMPv6 query (echo -> echo reply, ...), as
libnetfilter_conntrack derives a reply tuple; other types have none (255)."""
NO_ICMP_REPLY = 255

TCP_STATE_NAMES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
                   "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2")
SCTP_STATE_NAMES = ("NONE", "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTABLISHED",
                    "SHUTDOWN_SENT", "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT", "HEARTBEAT_SENT",
                    "HEARTBEAT_ACKED")
DCCP_STATE_NAMES = ("NONE", "REQUEST", "RESPOND", "PARTOPEN", "OPEN", "CLOSEREQ", "CLOSING",
                    "TIMEWAIT", "IGNORE", "INVALID")

STATS_CPU_NAMES = {1: "searched", 2: "found", 3: "new", 4: "invalid", 5: "ignore", 6: "delete",
                   7: "delete_list", 8: "insert", 9: "insert_failed", 10: "drop",
                   11: "early_drop", 12: "error", 13: "search_restart", 14: "clash_resolve",
                   15: "chaintoolong"}
STATS_EXP_NAMES = {1: "expect_new", 2: "expect_create", 3: "expect_delete"}


# plain-int forms of often used enum members
NL_GROUPS_CONNTRACK = 0x07
NL_GROUPS_EXPECT = 0x38
IPS_CONFIRMED = 0x8
STATUS_NAMES = ("EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED", "SRC_NAT", "DST_NAT",
                "SEQ_ADJUST", "SRC_NAT_DONE", "DST_NAT_DONE", "DYING", "FIXED_TIMEOUT",
                "TEMPLATE", "NAT_CLASH", "HELPER", "OFFLOAD", "HW_OFFLOAD")
"""``enum ip_conntrack_status`` bit names, bit 0 first."""

_ENUMS = frozenset(('CtMsg', 'ExpMsg', 'Group', 'Status', 'TcpState', 'SctpState', 'DccpState'))

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .enums import CtMsg, ExpMsg, Group, Status, TcpState, SctpState, DccpState  # noqa: F401


def __getattr__(name: str):
    """The enum types (CtMsg, ExpMsg, Group, Status, TcpState, SctpState, DccpState) are built on first use, from :mod:`ctnetlink.enums`."""
    if name in _ENUMS:
        from . import enums

        value = getattr(enums, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
