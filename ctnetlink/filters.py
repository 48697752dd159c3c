"""Dump filters: what the kernel can select (mark/mask, status/mask, family, and with
``CTA_FILTER`` tuple fields and zone) and the identical check in user space.

A :class:`Filter` is turned into dump-request attributes by :meth:`Filter.attributes`;
:meth:`Filter.matches` applies the same rules to a decoded :class:`Flow`, so results are
the same whether or not the running kernel understands ``CTA_FILTER``.
"""
from __future__ import annotations

from nfnl.codec import nla, nla_nest, nla_u16, nla_u32

from . import constants as K
from .encode import (
    CTA_FILTER, CTA_MARK, CTA_MARK_MASK, CTA_STATUS, CTA_STATUS_MASK, CTA_TUPLE_ORIG,
    CTA_TUPLE_REPLY, CTA_ZONE, attr_type, encode_tuple,
)
from .model import Flow, Tuple, status_value

_ORIG_FLAGS = attr_type("ctattr_filter", "CTA_FILTER_ORIG_FLAGS")
_REPLY_FLAGS = attr_type("ctattr_filter", "CTA_FILTER_REPLY_FLAGS")
_TUPLE_FLAG_FIELDS = (
    ("src", K.CTA_FILTER_F_CTA_IP_SRC),
    ("dst", K.CTA_FILTER_F_CTA_IP_DST),
    ("proto", K.CTA_FILTER_F_CTA_PROTO_NUM),
    ("sport", K.CTA_FILTER_F_CTA_PROTO_SRC_PORT),
    ("dport", K.CTA_FILTER_F_CTA_PROTO_DST_PORT),
)


def tuple_filter_flags(t: Tuple) -> int:
    """The CTA_FILTER_F_* bits for the fields set in ``t``."""
    flags = 0
    for name, bit in _TUPLE_FLAG_FIELDS:
        value = getattr(t, name)
        if value is None:
            continue
        if bit in (K.CTA_FILTER_F_CTA_IP_SRC, K.CTA_FILTER_F_CTA_IP_DST) and \
                getattr(value, "version", 4) == 6:
            # the kernel's IPv6 address comparison is inverted (ctnetlink_filter_match_tuple
            # tests ``!ipv6_addr_cmp``: it drops exactly the entries with that address),
            # so IPv6 addresses are left to the user-space check (Filter.matches)
            continue
        flags |= bit
    v6 = t.proto == 58
    if t.icmp_type is not None:
        flags |= K.CTA_FILTER_F_CTA_PROTO_ICMPV6_TYPE if v6 else K.CTA_FILTER_F_CTA_PROTO_ICMP_TYPE
    if t.icmp_code is not None:
        flags |= K.CTA_FILTER_F_CTA_PROTO_ICMPV6_CODE if v6 else K.CTA_FILTER_F_CTA_PROTO_ICMP_CODE
    if t.icmp_id is not None:
        flags |= K.CTA_FILTER_F_CTA_PROTO_ICMPV6_ID if v6 else K.CTA_FILTER_F_CTA_PROTO_ICMP_ID
    if flags & ~(K.CTA_FILTER_F_CTA_IP_SRC | K.CTA_FILTER_F_CTA_IP_DST | K.CTA_FILTER_F_CTA_TUPLE_ZONE):
        flags |= K.CTA_FILTER_F_CTA_PROTO_NUM
    return flags


class Filter:
    """Kernel-side dump selection.

    ``mark``/``mark_mask``: keep ``(mark & mask) == mark``; ``status``/``status_mask``
    likewise; ``zone``: the entry's zone id in any direction (the kernel treats zone 0
    as "any zone"); ``orig``/``reply``: tuple fields that must be equal (set fields
    only, ``Tuple.zone`` is ignored).
    """

    __slots__ = ("family", "mark", "mark_mask", "status", "status_mask", "zone", "orig", "reply")

    def __init__(self, family: int = 0, mark: int | None = None, mark_mask: int | None = None,
                 status: int | None = None, status_mask: int | None = None,
                 zone: int | None = None, orig: Tuple | None = None,
                 reply: Tuple | None = None) -> None:
        self.family = family
        self.mark = mark
        self.mark_mask = mark_mask
        self.status = status_value(status)
        self.status_mask = status_value(status_mask)
        self.zone = zone
        self.orig = orig
        self.reply = reply

    def copy(self, **changes) -> "Filter":
        kw = {n: getattr(self, n) for n in self.__slots__}
        kw.update(changes)
        return Filter(**kw)

    def __repr__(self) -> str:
        body = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__
                         if getattr(self, n) is not None)
        return f"Filter({body})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Filter) and all(
            getattr(self, n) == getattr(other, n) for n in self.__slots__)

    @property
    def selects(self) -> bool:
        """Whether this filter selects anything at all (family aside)."""
        return any(getattr(self, n) is not None for n in self.__slots__[1:])

    @property
    def uses_cta_filter(self) -> bool:
        return bool(self.orig is not None or self.reply is not None or self.zone)

    def attributes(self, cta_filter: bool = True) -> bytes:
        """Dump-request attributes (order: MARK, MARK_MASK, STATUS, STATUS_MASK, then the
        CTA_FILTER part when ``cta_filter``)."""
        out = []
        if self.mark is not None:
            out.append(nla_u32(CTA_MARK, self.mark))
            out.append(nla_u32(CTA_MARK_MASK, 0xFFFFFFFF if self.mark_mask is None else self.mark_mask))
        if self.status is not None:
            out.append(nla_u32(CTA_STATUS, self.status))
            out.append(nla_u32(CTA_STATUS_MASK, self.status if self.status_mask is None else self.status_mask))
        if cta_filter and self.uses_cta_filter:
            oflags = tuple_filter_flags(self.orig) if self.orig is not None else 0
            rflags = tuple_filter_flags(self.reply) if self.reply is not None else 0
            if self.orig is not None and oflags:
                out.append(nla_nest(CTA_TUPLE_ORIG,
                                    encode_tuple(self.orig.replace(zone=None), self.family)))
            if self.reply is not None and rflags:
                out.append(nla_nest(CTA_TUPLE_REPLY,
                                    encode_tuple(self.reply.replace(zone=None), self.family)))
            if self.zone:
                out.append(nla_u16(CTA_ZONE, self.zone))
            out.append(nla_nest(CTA_FILTER, nla(_ORIG_FLAGS, oflags.to_bytes(4, "little")),
                                nla(_REPLY_FLAGS, rflags.to_bytes(4, "little"))))
        return b"".join(out)

    def matches(self, flow: Flow) -> bool:
        """The same selection applied to a decoded entry."""
        if self.family and flow.family != self.family:
            return False
        if self.mark is not None:
            mask = 0xFFFFFFFF if self.mark_mask is None else self.mark_mask
            if ((flow.mark or 0) & mask) != self.mark:
                return False
        if self.status is not None:
            mask = self.status if self.status_mask is None else self.status_mask
            if ((flow.status_bits or 0) & mask) != self.status:
                return False
        if self.zone is not None:
            zones = {flow.zone or 0}
            for t in (flow.orig, flow.reply):
                if t is not None and t.zone is not None:
                    zones.add(t.zone)
            if self.zone and self.zone not in zones:
                return False
        for want, have in ((self.orig, flow.orig), (self.reply, flow.reply)):
            if want is None:
                continue
            if have is None:
                return False
            for name in Tuple._fields:
                if name == "zone":
                    continue
                v = getattr(want, name)
                if v is not None and getattr(have, name) != v:
                    return False
        return True

