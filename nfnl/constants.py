"""Netlink and nfnetlink constants (from <linux/netlink.h> and <linux/netfilter/nfnetlink.h>).

Plain integers and small IntFlag/IntEnum types; nothing here knows about conntrack.
"""
from __future__ import annotations


NETLINK_NETFILTER = 12
SOL_NETLINK = 270
ARPHRD_NETLINK = 824

# socket options (SOL_NETLINK)
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_DROP_MEMBERSHIP = 2
NETLINK_BROADCAST_ERROR = 4
NETLINK_NO_ENOBUFS = 5
NETLINK_LISTEN_ALL_NSID = 8
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12

# SOL_SOCKET options not named by the socket module everywhere
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32


NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_ECHO = 0x8
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP_FILTERED = 0x20
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_ATOMIC = 0x400
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200

# control message types
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4
NLMSG_MIN_TYPE = 0x10

# attribute type flags
NLA_F_NESTED = 0x8000
NLA_F_NET_BYTEORDER = 0x4000
NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF

# extended ack attributes (NLMSGERR_ATTR_*)
NLMSGERR_ATTR_MSG = 1
NLMSGERR_ATTR_OFFS = 2
NLMSGERR_ATTR_COOKIE = 3
NLMSGERR_ATTR_POLICY = 4
NLMSGERR_ATTR_MISS_TYPE = 5
NLMSGERR_ATTR_MISS_NEST = 6

NFNETLINK_V0 = 0


def nfnl_msg_type(subsys: int, msg: int) -> int:
    """Compose an nlmsg_type from an nfnetlink subsystem and a message id."""
    return (subsys << 8) | msg


def nfnl_subsys(msg_type: int) -> int:
    return (msg_type >> 8) & 0xFF


def nfnl_msg(msg_type: int) -> int:
    return msg_type & 0xFF


_ENUMS = frozenset(('NlmFlag', 'Subsys'))

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .enums import NlmFlag, Subsys  # noqa: F401


def __getattr__(name: str):
    """NlmFlag and Subsys are built on first use, from :mod:`nfnl.enums`."""
    if name in _ENUMS:
        from . import enums

        value = getattr(enums, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
