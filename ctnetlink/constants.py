"""ctnetlink constants from <linux/netfilter/nfnetlink_conntrack.h> and friends.

Message types, multicast groups, status bits, protocol states and the names the
reference ``conntrack`` tool prints for them.
"""
from __future__ import annotations

import enum

NFNL_SUBSYS_CTNETLINK = 1
NFNL_SUBSYS_CTNETLINK_EXP = 2


class CtMsg(enum.IntEnum):
    NEW = 0
    GET = 1
    DELETE = 2
    GET_CTRZERO = 3
    GET_STATS_CPU = 4
    GET_STATS = 5
    GET_DYING = 6
    GET_UNCONFIRMED = 7


class ExpMsg(enum.IntEnum):
    NEW = 0
    GET = 1
    DELETE = 2
    GET_STATS_CPU = 3


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


class Group(enum.IntFlag):
    """Multicast groups as a bind() ``nl_groups`` bit mask (bit n-1 = group n)."""

    NEW = 0x01
    UPDATE = 0x02
    DESTROY = 0x04
    EXP_NEW = 0x08
    EXP_UPDATE = 0x10
    EXP_DESTROY = 0x20
    CONNTRACK = 0x07
    EXPECT = 0x38


NFNLGRP_CONNTRACK_NEW = 1
NFNLGRP_CONNTRACK_UPDATE = 2
NFNLGRP_CONNTRACK_DESTROY = 3
NFNLGRP_CONNTRACK_EXP_NEW = 4
NFNLGRP_CONNTRACK_EXP_UPDATE = 5
NFNLGRP_CONNTRACK_EXP_DESTROY = 6


class Status(enum.IntFlag):
    """``enum ip_conntrack_status`` bits."""

    EXPECTED = 1 << 0
    SEEN_REPLY = 1 << 1
    ASSURED = 1 << 2
    CONFIRMED = 1 << 3
    SRC_NAT = 1 << 4
    DST_NAT = 1 << 5
    SEQ_ADJUST = 1 << 6
    SRC_NAT_DONE = 1 << 7
    DST_NAT_DONE = 1 << 8
    DYING = 1 << 9
    FIXED_TIMEOUT = 1 << 10
    TEMPLATE = 1 << 11
    NAT_CLASH = 1 << 12
    HELPER = 1 << 13
    OFFLOAD = 1 << 14
    HW_OFFLOAD = 1 << 15


class TcpState(enum.IntEnum):
    NONE = 0
    SYN_SENT = 1
    SYN_RECV = 2
    ESTABLISHED = 3
    FIN_WAIT = 4
    CLOSE_WAIT = 5
    LAST_ACK = 6
    TIME_WAIT = 7
    CLOSE = 8
    SYN_SENT2 = 9


class SctpState(enum.IntEnum):
    NONE = 0
    CLOSED = 1
    COOKIE_WAIT = 2
    COOKIE_ECHOED = 3
    ESTABLISHED = 4
    SHUTDOWN_SENT = 5
    SHUTDOWN_RECD = 6
    SHUTDOWN_ACK_SENT = 7
    HEARTBEAT_SENT = 8
    HEARTBEAT_ACKED = 9


class DccpState(enum.IntEnum):
    NONE = 0
    REQUEST = 1
    RESPOND = 2
    PARTOPEN = 3
    OPEN = 4
    CLOSEREQ = 5
    CLOSING = 6
    TIMEWAIT = 7
    IGNORE = 8
    INVALID = 9


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

L4_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 33: "dccp", 47: "gre", 58: "icmpv6", 132: "sctp",
            136: "udplite"}
L3_NAMES = {2: "ipv4", 10: "ipv6"}
PORT_PROTOS = frozenset((6, 17, 33, 132, 136))

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
