"""The enum types of :mod:`nfnl.constants`, imported on first use (enum classes cost
start-up time)."""
from __future__ import annotations

import enum


class NlmFlag(enum.IntFlag):
    """nlmsg_flags bits (request and reply meanings share bit values)."""

    REQUEST = 0x1
    MULTI = 0x2
    ACK = 0x4
    ECHO = 0x8
    DUMP_INTR = 0x10
    DUMP_FILTERED = 0x20
    ROOT = 0x100
    MATCH = 0x200
    ATOMIC = 0x400
    DUMP = 0x300
    # NEW-request modifiers (same bits as ROOT/MATCH/ATOMIC)
    REPLACE = 0x100
    EXCL = 0x200
    CREATE = 0x400
    APPEND = 0x800
    # ACK-message flags
    CAPPED = 0x100
    ACK_TLVS = 0x200


class Subsys(enum.IntEnum):
    """nfnetlink subsystem ids: the high byte of nlmsg_type."""

    NONE = 0
    CTNETLINK = 1
    CTNETLINK_EXP = 2
    QUEUE = 3
    ULOG = 4
    OSF = 5
    IPSET = 6
    ACCT = 7
    CTNETLINK_TIMEOUT = 8
    CTHELPER = 9
    NFTABLES = 10
    NFT_COMPAT = 11
    HOOK = 12

