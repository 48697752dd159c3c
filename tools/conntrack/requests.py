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
    """``t`` with the fields libnetfilter_conntrack always sends filled in."""
    if t is None:
        return None
    changes: dict = {}
    if (t.src is None) != (t.dst is None):  # both addresses, the missing one all zero
        have = t.src if t.src is not None else t.dst
        changes["src" if t.src is None else "dst"] = type(have)(0)
    p = t.proto if t.proto is not None else proto
    changes["proto"] = p
    if p in _PORTS:
        changes.update(sport=t.sport or 0, dport=t.dport or 0)
    elif p in _ICMP:
        changes.update(icmp_type=t.icmp_type or 0, icmp_code=t.icmp_code or 0,
                       icmp_id=t.icmp_id or 0)
    return t.replace(**changes)


def _reply_icmp(inv: Invocation, t: Tuple, o: Tuple | None) -> Tuple:
    """ICMP setters of the reference set both directions: reply type = derived type."""
    if o is None or o.proto not in _ICMP:
        return t
    changes: dict = {}
    if o.icmp_type is not None:
        changes["icmp_type"] = inv.icmp_reply_type if inv.icmp_reply_type is not None else 255
    if o.icmp_code is not None:
        changes["icmp_code"] = o.icmp_code
    if o.icmp_id is not None:
        changes["icmp_id"] = o.icmp_id
    return t.replace(**changes)


def object_tuples(inv: Invocation, create: bool) -> tuple[Tuple | None, Tuple | None]:
    """(orig, reply) tuples of the ``-I``/``-A``/``-G`` object."""
    tmpl = inv.template
    o, r = tmpl.orig, tmpl.reply
    has_o = o is not None and o.src is not None and o.dst is not None
    has_r = r is not None and r.src is not None and r.dst is not None
    if r is not None:
        if r.proto is None and o is not None and (r.src is not None or r.dst is not None):
            r = r.replace(proto=o.proto if o.proto in _ICMP else r.proto)
        r = _reply_icmp(inv, r, o)
    if create:
        # like nfct_setobjopt(SETUP_REPLY/SETUP_ORIGINAL): a direction is derived only
        # when none of its address options was given; otherwise it is sent as given
        orig_given = o is not None and (o.src is not None or o.dst is not None)
        reply_given = r is not None and (r.src is not None or r.dst is not None)
        if has_o and not reply_given:
            assert o is not None
            # the library's derivation, with what the reference adds: zeros for ports
            # and ICMP fields not given, the ICMP answer type looked up when the type
            # option was parsed (with the family known then) and a given reply zone
            rev = o.reversed()
            if o.proto in _PORTS:
                rev = rev.replace(sport=o.dport or 0, dport=o.sport or 0)
            elif o.proto in _ICMP:
                rev = rev.replace(icmp_type=(inv.icmp_reply_type if o.icmp_type is not None
                                             and inv.icmp_reply_type is not None else
                                             255 if o.icmp_type is not None else 0),
                                  icmp_code=o.icmp_code or 0, icmp_id=o.icmp_id or 0)
            r = rev.replace(zone=r.zone if r is not None else None)
        elif has_r and not orig_given:
            assert r is not None
            zone = o.zone if o is not None else None
            base = o if o is not None else Tuple()
            o = Tuple(src=r.dst, dst=r.src, proto=r.proto, sport=r.dport, dport=r.sport,
                      icmp_type=base.icmp_type, icmp_code=base.icmp_code,
                      icmp_id=base.icmp_id, zone=zone)
            if r.proto in _PORTS:
                o = o.replace(sport=r.dport or 0, dport=r.sport or 0)
    if r is not None and r.proto is None:
        r = r.replace(proto=0)  # a reply tuple as given: no reply-side protocol option, protocol 0
    proto = o.proto if o is not None else None
    return complete(o), complete(r, proto)


def flow_object(inv: Invocation, create: bool) -> Flow:
    """The template as sent by ``-I``/``-A`` (``create``) or ``-G``."""
    tmpl = inv.template
    orig, reply = object_tuples(inv, create)
    f = tmpl.copy(family=inv.family, orig=orig, reply=reply)
    if f.status_bits is not None:
        f.status = f.status_bits | 0x8  # IPS_CONFIRMED, always OR-ed in by the reference
    if inv.mark is not None and create:
        f.mark = inv.mark[0]
    if f.nat_src is not None and f.nat_src.min_port is not None and f.nat_src.max_port is None:
        f.nat_src = f.nat_src.replace(max_port=f.nat_src.min_port)
    if f.nat_dst is not None and f.nat_dst.min_port is not None and f.nat_dst.max_port is None:
        f.nat_dst = f.nat_dst.replace(max_port=f.nat_dst.min_port)
    f.id = None
    return f


def expect_object(inv: Invocation) -> Expect:
    """The ``-I expect`` object: expected tuple, master, mask, timeout."""
    proto = inv.protonum
    tmpl = inv.template
    exp = inv.exptuple if inv.exptuple is not None else Tuple()
    # the 1.4.7 tool stores ``port >> 8`` as the expected protocol for tcp/sctp/dccp;
    # we send what the user meant: the -p protocol (the 1.4.8+git behaviour)
    exp = exp.replace(proto=proto)
    mask = inv.mask.replace(proto=proto)
    return Expect(family=inv.family, tuple=complete(exp, proto),
                  master=complete(tmpl.orig, proto), mask=complete(mask, proto),
                  timeout=tmpl.timeout)


def expect_key(inv: Invocation) -> Tuple:
    """The tuple ``-G expect``/``-D expect`` send (built from -s -d -p and ports)."""
    return complete(inv.template.orig, inv.protonum) or Tuple()

