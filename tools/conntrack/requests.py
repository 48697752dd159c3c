"""Requests built from a parsed command line, as libnetfilter_conntrack builds them.

A tuple sent to the kernel always carries both addresses and, for port protocols,
both ports (0 when not given); ICMP tuples carry code, type and id. For ``-I``/``-A``
the missing direction is derived from the given one. These rules reproduce the
reference's requests byte for byte (checked by the request-equality tests).
"""
from __future__ import annotations

from ctnetlink.constants import ICMP_PROTOS as _ICMP, NAT_PORT_PROTOS, PORT_ATTR_PROTOS as _PORTS
from ctnetlink.model import Expect, Flow, Tuple

from .invocation import Invocation



def complete(t: Tuple | None, proto: int | None = None) -> Tuple | None:
    """A copy of ``t`` with the fields libnetfilter_conntrack always sends filled in."""
    if t is None:
        return None
    t = t.copy()
    if (t.src is None) != (t.dst is None):  # both addresses, the missing one all zero
        have = t.src if t.src is not None else t.dst
        if t.src is None:
            t.src = type(have)(0)
        else:
            t.dst = type(have)(0)
    p = t.proto if t.proto is not None else proto
    t.proto = p
    if p in _PORTS:
        t.sport = t.sport or 0
        t.dport = t.dport or 0
    elif p in _ICMP:
        t.icmp_type = t.icmp_type or 0
        t.icmp_code = t.icmp_code or 0
        t.icmp_id = t.icmp_id or 0
    return t


def _reply_icmp(inv: Invocation, t: Tuple, o: Tuple | None) -> None:
    """ICMP setters of the reference set both directions: reply type = derived type."""
    if o is None or o.proto not in _ICMP:
        return
    if o.icmp_type is not None:
        t.icmp_type = inv.icmp_reply_type if inv.icmp_reply_type is not None else 255
    if o.icmp_code is not None:
        t.icmp_code = o.icmp_code
    if o.icmp_id is not None:
        t.icmp_id = o.icmp_id


def object_tuples(inv: Invocation, create: bool) -> tuple[Tuple | None, Tuple | None]:
    """(orig, reply) tuples of the ``-I``/``-A``/``-G`` object."""
    tmpl = inv.template
    o, r = tmpl.orig, tmpl.reply
    has_o = o is not None and o.src is not None and o.dst is not None
    has_r = r is not None and r.src is not None and r.dst is not None
    if r is not None:
        r = r.copy()
        if r.proto is None and o is not None and (r.src is not None or r.dst is not None):
            r.proto = o.proto if o.proto in _ICMP else r.proto
        _reply_icmp(inv, r, o)
    if create:
        # like nfct_setobjopt(SETUP_REPLY/SETUP_ORIGINAL): a direction is derived only
        # when none of its address options was given; otherwise it is sent as given
        orig_given = o is not None and (o.src is not None or o.dst is not None)
        reply_given = r is not None and (r.src is not None or r.dst is not None)
        if has_o and not reply_given:
            r = Tuple(o.dst, o.src, o.proto, o.dport, o.sport, None, None, None,
                      r.zone if r is not None else None)
            if o.proto in _PORTS:
                r.sport, r.dport = o.dport or 0, o.sport or 0
            elif o.proto in _ICMP:
                r.icmp_type = (inv.icmp_reply_type if o.icmp_type is not None
                               and inv.icmp_reply_type is not None else
                               255 if o.icmp_type is not None else 0)
                r.icmp_code = o.icmp_code or 0
                r.icmp_id = o.icmp_id or 0
        elif has_r and not orig_given:
            assert r is not None
            zone = o.zone if o is not None else None
            base = o if o is not None else Tuple()
            o = Tuple(r.dst, r.src, r.proto, r.dport, r.sport, base.icmp_type, base.icmp_code,
                      base.icmp_id, zone)
            if r.proto in _PORTS:
                o.sport, o.dport = r.dport or 0, r.sport or 0
    if r is not None and r.proto is None:
        r.proto = 0  # a reply tuple as given: no reply-side protocol option, protocol 0
    proto = o.proto if o is not None else None
    return complete(o), complete(r, proto)


def flow_object(inv: Invocation, create: bool) -> Flow:
    """The template as sent by ``-I``/``-A`` (``create``) or ``-G``."""
    tmpl = inv.template
    orig, reply = object_tuples(inv, create)
    f = tmpl.copy(family=inv.family, orig=orig, reply=reply)
    if f.status is not None:
        f.status |= 0x8  # IPS_CONFIRMED, always OR-ed in by the reference
    if inv.mark is not None and create:
        f.mark = inv.mark[0]
    for nat in (f.nat_src, f.nat_dst):
        if nat is not None and nat.min_port is not None and nat.max_port is None:
            nat.max_port = nat.min_port
    f.id = None
    return f


def expect_object(inv: Invocation) -> Expect:
    """The ``-I expect`` object: expected tuple, master, mask, timeout."""
    proto = inv.protonum
    tmpl = inv.template
    exp = inv.exptuple.copy() if inv.exptuple is not None else Tuple()
    # the 1.4.7 tool stores ``port >> 8`` as the expected protocol for tcp/sctp/dccp;
    # we send what the user meant: the -p protocol (the 1.4.8+git behaviour)
    exp.proto = proto
    mask = inv.mask.copy()
    mask.proto = proto
    return Expect(family=inv.family, tuple=complete(exp, proto),
                  master=complete(tmpl.orig, proto), mask=complete(mask, proto),
                  timeout=tmpl.timeout)


def expect_key(inv: Invocation) -> Tuple:
    """The tuple ``-G expect``/``-D expect`` send (built from -s -d -p and ports)."""
    return complete(inv.template.orig, inv.protonum) or Tuple()

