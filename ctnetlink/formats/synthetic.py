"""Synthetic conntrack entries and kernel-style messages, for format tests and benchmarks.

:func:`random_flow` draws a :class:`~ctnetlink.model.Flow` covering every protocol
handler, both families and every optional attribute the formats print;
:func:`kernel_message` encodes a Flow the way a dump reply carries it (the request
attributes of :mod:`ctnetlink.encode` plus the reply-only ones: counters, use, id,
timestamps, security context, event timestamp), with the same schema-derived encoder
and a longer attribute order (:data:`DUMP_ORDER`).
"""
from __future__ import annotations

import ipaddress
import random

from nfnl.message import build_nfnl

from ..constants import ICMP_PROTOS, IPCTNL_MSG_CT_NEW, NO_ICMP_REPLY, PORT_ATTR_PROTOS
from .._compiled import REQUEST_ORDER
from ..encodegen import Encoder
from ..model import Counters, DccpInfo, Flow, SctpInfo, TcpInfo, Timestamp, Tuple

NLM_F_MULTI = 0x2
PROTOS = (6, 17, 136, 1, 58, 132, 47, 33, 2, 200, 0)


DUMP_ORDER = {
    **REQUEST_ORDER,
    "ctattr_type": REQUEST_ORDER["ctattr_type"] + (
        "CTA_COUNTERS_ORIG", "CTA_COUNTERS_REPLY", "CTA_TIMESTAMP", "CTA_SECCTX", "CTA_USE",
        "CTA_ID", "CTA_TIMESTAMP_EVENT"),
    "ctattr_counters": ("CTA_COUNTERS_PACKETS", "CTA_COUNTERS_BYTES"),
    "ctattr_tstamp": ("CTA_TIMESTAMP_START", "CTA_TIMESTAMP_STOP"),
    "ctattr_secctx": ("CTA_SECCTX_NAME",),
}
"""What :func:`kernel_message` writes: a request's attributes, then the reply-only ones."""
_DUMP: list[Encoder] = []


def kernel_message(flow: Flow, mtype: int = IPCTNL_MSG_CT_NEW, flags: int = NLM_F_MULTI,
                   seq: int = 0) -> bytes:
    """A complete ctnetlink message carrying every set field of ``flow``."""
    if not _DUMP:
        _DUMP.append(Encoder(DUMP_ORDER))
    return build_nfnl(mtype, flags, flow.family or 0, _DUMP[0].flow(flow), seq)


def _addr(rng: random.Random, v6: bool):
    if v6:
        kind = rng.random()
        if kind < 0.15:
            return ipaddress.IPv6Address("::ffff:" + ".".join(str(rng.randrange(256)) for _ in range(4)))
        if kind < 0.25:
            return ipaddress.IPv6Address(rng.randrange(1 << 32))
        if kind < 0.35:
            return ipaddress.IPv6Address("::1")
        return ipaddress.IPv6Address((0x2001_0db8 << 96) | rng.randrange(1 << 16) << rng.choice((0, 16, 64)))
    return ipaddress.IPv4Address(rng.randrange(1 << 32))


def _tuple(rng: random.Random, v6: bool, proto: int | None, reply_of: Tuple | None = None) -> Tuple:
    if reply_of is not None:
        t = reply_of.reversed()
        if t.icmp_type == NO_ICMP_REPLY:
            t = t.replace(icmp_type=reply_of.icmp_type)
        if rng.random() < 0.2:
            t = t.replace(src=_addr(rng, v6))
        if rng.random() < 0.2:
            t = t.replace(dst=_addr(rng, v6))
    else:
        t = Tuple(src=_addr(rng, v6), dst=_addr(rng, v6), proto=proto)
        if proto in PORT_ATTR_PROTOS:
            if rng.random() < 0.95:
                t = t.replace(sport=rng.randrange(65536), dport=rng.randrange(65536))
        elif proto in ICMP_PROTOS:
            if rng.random() < 0.95:
                t = t.replace(icmp_type=rng.choice((8, 0, 3, 128, 139, 255)),
                              icmp_code=rng.randrange(256), icmp_id=rng.randrange(65536))
    if rng.random() < 0.1:
        t = t.replace(zone=rng.randrange(65536))
    return t


def random_flow(rng: random.Random, rich: float = 0.5) -> Flow:
    """A random entry; ``rich`` is the probability of each optional attribute."""
    v6 = rng.random() < 0.4
    proto = rng.choice(PROTOS)
    p = proto if proto != 0 else None
    orig = _tuple(rng, v6, p)
    reply = _tuple(rng, v6, p, orig)
    f = Flow(family=10 if v6 else 2, orig=orig, reply=reply)
    if rng.random() < 0.03:
        f.orig = None
    if rng.random() < 0.03:
        f.reply = None
    if rng.random() < 0.97:
        f.status = rng.choice((0x8, 0xA, 0xE, 0x188, 0x10E, 0x18E, 0x4008, 0xC00E, 0x40F,
                               rng.randrange(1 << 16)))
    if rng.random() < 0.95:
        f.timeout = rng.randrange(1 << 20)
    if proto == 6 and rng.random() < 0.95:
        f.tcp = TcpInfo(state=rng.randrange(12), wscale_orig=7, wscale_reply=7,
                        flags_orig=(0x23, 0x23), flags_reply=(0x23, 0x23))
    if proto == 132 and rng.random() < 0.9:
        f.sctp = SctpInfo(state=rng.randrange(11), vtag_orig=rng.randrange(1 << 32),
                          vtag_reply=rng.randrange(1 << 32))
    if proto == 33 and rng.random() < 0.9:
        f.dccp = DccpInfo(state=rng.randrange(11), role=rng.randrange(3), handshake_seq=rng.randrange(1 << 48))
    if rng.random() < 0.9:
        f.mark = rng.choice((0, 1, 0xFFFFFFFF, rng.randrange(1 << 32)))
    if rng.random() < rich * 0.1:
        f.secmark = rng.randrange(1 << 32)
    if rng.random() < rich * 0.1:
        f.secctx = rng.choice(("system_u:object_r:unlabeled_t:s0", "x"))
    if rng.random() < rich * 0.3:
        f.zone = rng.randrange(65536)
    if rng.random() < rich:
        f.counters_orig = Counters(packets=rng.randrange(1 << 40), bytes=rng.randrange(1 << 50))
        if rng.random() < 0.95:
            f.counters_reply = Counters(packets=rng.randrange(1 << 40),
                                        bytes=rng.randrange(1 << 50))
    elif rng.random() < 0.05:
        f.counters_reply = Counters(packets=rng.randrange(100), bytes=rng.randrange(10000))
    if rng.random() < rich:
        start = 1_795_625_000_000_000_000 + rng.randrange(10**12)
        stop = start + rng.randrange(10**11) if rng.random() < 0.3 else None
        if rng.random() < 0.05:
            stop = 0
        f.timestamp = Timestamp(start=start, stop=stop)
    if rng.random() < rich * 0.3:
        f.helper = rng.choice(("ftp", "sip", "tftp"))
    if rng.random() < 0.9:
        f.use = rng.randrange(1, 4)
    if rng.random() < 0.9:
        f.id = rng.randrange(1 << 32)
    if rng.random() < rich * 0.3:
        f.labels = rng.choice((1, 2, 6, 1 << 127, 0x10, rng.randrange(1 << 128)))
        f.labels_size = 16
    if rng.random() < rich * 0.05:
        f.event_timestamp = 1_795_625_000_000_000_000 + rng.randrange(10**12)
    return f


__all__ = ["kernel_message", "random_flow", "PROTOS"]
