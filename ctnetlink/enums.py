"""The enum types of :mod:`ctnetlink.constants` (imported on first use: building enum
classes costs start-up time the command-line tools do not want to pay)."""
from __future__ import annotations

import enum


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


class EventType(enum.IntEnum):
    """The kind of a multicast notification (:class:`~ctnetlink.model.Event`)."""

    NEW = 1
    UPDATE = 2
    DESTROY = 3
