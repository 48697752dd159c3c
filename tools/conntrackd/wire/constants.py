"""Numbers of the sync protocol: version, message types, flags, header sizes, limits.

Plain integers (no enum import on the daemon's start-up path), named after the C
daemon's ``network.h``.
"""
from __future__ import annotations

PROTOCOL_VERSION = 1
"""``CONNTRACKD_PROTOCOL_VERSION``: the high nibble of the first header byte."""

# message types (low nibble of the first header byte)
NET_T_STATE_CT_NEW = 0
NET_T_STATE_CT_UPD = 1
NET_T_STATE_CT_DEL = 2
NET_T_STATE_EXP_NEW = 3
NET_T_STATE_EXP_UPD = 4
NET_T_STATE_EXP_DEL = 5
NET_T_STATE_MAX = NET_T_STATE_EXP_DEL
NET_T_CTL = 10

TYPE_NAMES = {0: "CT_NEW", 1: "CT_UPD", 2: "CT_DEL", 3: "EXP_NEW", 4: "EXP_UPD", 5: "EXP_DEL",
              10: "CTL"}

# flags (second header byte)
NET_F_UNUSED = 0x01
NET_F_RESYNC = 0x02
NET_F_NACK = 0x04
NET_F_ACK = 0x08
NET_F_ALIVE = 0x10
NET_F_HELLO = 0x20
NET_F_HELLO_BACK = 0x40

FLAG_NAMES = ((NET_F_UNUSED, "UNUSED"), (NET_F_RESYNC, "RESYNC"), (NET_F_NACK, "NACK"),
              (NET_F_ACK, "ACK"), (NET_F_ALIVE, "ALIVE"), (NET_F_HELLO, "HELLO"),
              (NET_F_HELLO_BACK, "HELLO_BACK"), (0x80, "0x80"))

NETHDR_SIZ = 8
"""Header of state messages and ALIVE."""
NETHDR_ACK_SIZ = 16
"""Header of ACK, NACK and RESYNC control messages (``from`` and ``to`` follow ``seq``)."""
NTA_HDR_SIZ = 4
ALIGNTO = 4

MAX_DATAGRAM = 65536
"""The C receiver's buffer: a datagram (or stream read) never holds more."""

# conntrack status bits the codec needs (IPS_*)
IPS_EXPECTED = 0x0001
IPS_SRC_NAT = 0x0010
IPS_DST_NAT = 0x0020
IPS_NAT_MASK = IPS_SRC_NAT | IPS_DST_NAT
IPS_SRC_NAT_DONE = 0x0080
IPS_DST_NAT_DONE = 0x0100

# decode error reasons: the C receiver's counters (``conntrackd -s``, "message tracking")
TRUNCATED = "truncated"
"""Fewer bytes left than a header needs ("Truncated message")."""
BAD_SIZE = "bad-size"
"""A length of 0, beyond the datagram or below the header ("Bad message size")."""
BAD_VERSION = "bad-version"
"""A version other than 1 ("Wrong protocol version"); the next message is still read."""
BAD_TYPE = "bad-type"
"""A payload decode asked of a type above EXP_DEL ("Bad message type")."""
BAD_PAYLOAD = "bad-payload"
"""An attribute of wrong number, length or content ("Malformed payload")."""
OVERSIZED = "oversized"
"""A datagram larger than the C receiver's 65536-byte buffer (it would truncate it)."""
REASONS = (TRUNCATED, BAD_SIZE, BAD_VERSION, BAD_TYPE, BAD_PAYLOAD, OVERSIZED)


def is_ack_nack_resync(mtype: int, flags: int) -> bool:
    """Whether the message has the 16-byte control header (``IS_ACK || IS_NACK || IS_RESYNC``)."""
    return mtype == NET_T_CTL and bool(flags & (NET_F_ACK | NET_F_NACK | NET_F_RESYNC))


def is_data(mtype: int, flags: int) -> bool:
    """``IS_DATA``: a state message whose flags are at most HELLO and HELLO_BACK."""
    return mtype <= NET_T_STATE_MAX and not flags & ~(NET_F_HELLO | NET_F_HELLO_BACK)


def flag_names(flags: int) -> list[str]:
    """The names of the set flag bits, lowest first."""
    return [name for bit, name in FLAG_NAMES if flags & bit]
