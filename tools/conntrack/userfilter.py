"""The reference's user-space entry filter (spec §6.2, §6.3) and ``-U`` selection (§6.4).

:func:`make_filter` turns an :class:`Invocation` into a predicate over decoded
:class:`~ctnetlink.model.Flow` objects, or None when nothing is filtered in user space.
The rules are the reference's, quirks included: GRE keys, secmark, SCTP tags and the
DCCP role never filter; zone and mark comparisons treat a missing attribute as 0 (zones)
or as no match (mark); IPv6 NAT filter addresses are accepted but never compared.
"""
from __future__ import annotations

from ctnetlink.constants import ICMP_PROTOS as _ICMP, PORT_PROTOS as _PORT_PROTOS
from ctnetlink.model import Flow, Tuple

from .invocation import Command, Invocation

_SRC_NAT_DONE = 0x80
_DST_NAT_DONE = 0x100
# options that turn on the attribute comparison of step 5
_COMPARE = frozenset({"protonum", "src", "dst", "reply-src", "reply-dst", "mark", "secmark",
                      "status", "id", "zone", "label", "orig-zone", "reply-zone"})

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def l4src(t: Tuple) -> int:
    """The 16 bits libnetfilter_conntrack keeps as a tuple's source "port" (a union: the
    port, the GRE key or the ICMP id), as the network-order value it compares."""
    if t.proto in _ICMP:
        return t.icmp_id or 0
    return t.sport or 0


def l4dst(t: Tuple) -> int:
    """The destination half of the union: port, GRE key, or ICMP type and code (the two
    bytes in that order, read as a network-order number)."""
    if t.proto in _ICMP:
        return ((t.icmp_type or 0) << 8) | (t.icmp_code or 0)
    return t.dport or 0


def _nat_flags(f: Flow) -> tuple[bool, bool, bool, bool]:
    """(SNAT'ed, DNAT'ed, SPAT'ed, DPAT'ed) per §6.2.1. The "ports" are the library's
    union, so an ICMP entry whose NAT is done compares id and type/code and counts as
    port-translated in both directions, as in the reference."""
    st = f.status_bits
    o, r = f.orig, f.reply
    if o is None or r is None:
        return False, False, False, False
    src_ok = st is None or bool(st & _SRC_NAT_DONE)
    dst_ok = st is None or bool(st & _DST_NAT_DONE)
    snat = src_ok and r.dst != o.src
    dnat = dst_ok and r.src != o.dst
    spat = src_ok and l4dst(r) != l4src(o)
    dpat = dst_ok and l4src(r) != l4dst(o)
    return snat, dnat, spat, dpat


def _nat_filter(inv: Invocation) -> Callable[[Flow], bool] | None:
    opts = inv.options
    any_nat = "any-nat" in opts
    want_src = "src-nat" in opts or any_nat
    want_dst = "dst-nat" in opts or any_nat
    if not (want_src or want_dst):
        return None
    t = inv.template

    def side(nat) -> tuple[object, int | None]:
        if nat is None:
            return None, None
        addr = nat.min_ip if nat.min_ip is not None and nat.min_ip.version == 4 else None
        return addr, nat.min_port

    s_addr, s_port = side(t.nat_src)
    d_addr, d_port = side(t.nat_dst)

    def one_side(nat: bool, pat: bool, addr_ok, port_ok, addr, port) -> bool:
        """§6.2.1 for one side: the given address and/or port, or any translation."""
        if addr is None and port is None:
            return nat or pat
        hit = nat and addr_ok() if addr is not None else True
        if port is not None:
            hit = hit and pat and port_ok()
        return hit

    def check(f: Flow) -> bool:
        snat, dnat, spat, dpat = _nat_flags(f)
        r = f.reply
        has_src = want_src and r is not None and one_side(
            snat, spat, lambda: r.dst == s_addr, lambda: l4dst(r) == s_port, s_addr, s_port)
        has_dst = want_dst and r is not None and one_side(
            dnat, dpat, lambda: r.src == d_addr, lambda: l4src(r) == d_port, d_addr, d_port)
        if any_nat:
            return has_src or has_dst
        if want_src and want_dst:
            return has_src and has_dst
        return has_src if want_src else has_dst

    return check


def _masked(a, mask) -> int:
    return int(a) & int(mask)


def _network_filter(inv: Invocation) -> Callable[[Flow], bool] | None:
    m = inv.mask
    checks = []
    fam = inv.family
    tmpl_o = inv.template.orig
    if "mask-src" in inv.options and m.src is not None:
        want = _masked(tmpl_o.src, m.src) if tmpl_o is not None and tmpl_o.src is not None else None
        checks.append(("src", m.src, want))
    if "mask-dst" in inv.options and m.dst is not None:
        want = _masked(tmpl_o.dst, m.dst) if tmpl_o is not None and tmpl_o.dst is not None else None
        checks.append(("dst", m.dst, want))
    if not checks:
        return None

    def check(f: Flow) -> bool:
        if f.family != fam or f.orig is None:
            return False
        for name, mask, want in checks:
            a = getattr(f.orig, name)
            if a is None or want is None or a.version != mask.version or _masked(a, mask) != want:
                return False
        return True

    return check


def _tuple_rules(t: Tuple | None, skip_addr: set[str]) -> list[tuple[str, object]]:
    """(field, value) pairs of the template tuple that step 5 compares."""
    if t is None:
        return []
    rules: list[tuple[str, object]] = []
    if t.family is not None:
        rules.append(("family", t.family))
    if t.proto is not None:
        rules.append(("proto", t.proto))
        if t.proto in _PORT_PROTOS:
            for f in ("sport", "dport"):
                v = getattr(t, f)
                if v is not None:
                    rules.append((f, v))
        elif t.proto in _ICMP:
            for f in ("icmp_id", "icmp_code", "icmp_type"):
                v = getattr(t, f)
                if v is not None:
                    rules.append((f, v))
    for f in ("src", "dst"):
        if f in skip_addr:
            continue
        v = getattr(t, f)
        if v is not None:
            rules.append((f, v))
    return rules


def _tuple_matches(have: Tuple | None, rules: list[tuple[str, object]]) -> bool:
    if not rules:
        return True
    if have is None:
        return False
    for f, v in rules:
        if f == "family":
            if have.family != v:
                return False
        elif getattr(have, f) != v:
            return False
    return True


def _state_of(f: Flow, which: str) -> int | None:
    info = getattr(f, which)
    return None if info is None else info.state


def _attribute_filter(inv: Invocation) -> Callable[[Flow], bool] | None:
    if not inv.options & _COMPARE:
        return None
    t = inv.template
    skip = {name for name, opt in (("src", "mask-src"), ("dst", "mask-dst")) if opt in inv.options}
    orig_rules = _tuple_rules(t.orig, skip)
    reply_rules = _tuple_rules(t.reply, set())
    checks: list[Callable[[Flow], bool]] = []
    if orig_rules:
        checks.append(lambda f: _tuple_matches(f.orig, orig_rules))
    if reply_rules:
        checks.append(lambda f: _tuple_matches(f.reply, reply_rules))
    if t.orig is not None and t.orig.zone is not None:
        oz = t.orig.zone
        checks.append(lambda f: ((f.orig.zone if f.orig is not None else None) or 0) == oz)
    if t.reply is not None and t.reply.zone is not None:
        rz = t.reply.zone
        checks.append(lambda f: ((f.reply.zone if f.reply is not None else None) or 0) == rz)
    if t.id is not None:
        cid = t.id
        checks.append(lambda f: f.id == cid)
    if t.timeout is not None and inv.command == Command.DELETE:
        to = t.timeout
        checks.append(lambda f: f.timeout == to)
    if t.status_bits is not None:
        bits = t.status_bits
        checks.append(lambda f: f.status_bits is not None and f.status_bits & bits == bits)
    for which in ("tcp", "sctp", "dccp"):
        info = getattr(t, which)
        if info is not None and info.state is not None:
            want = info.state
            checks.append(lambda f, w=which, s=want: _state_of(f, w) == s)
    if t.zone is not None:
        z = t.zone
        checks.append(lambda f: (f.zone or 0) == z)
    if not checks:
        return lambda f: True

    def check(f: Flow) -> bool:
        for c in checks:
            if not c(f):
                return False
        return True

    return check


def make_filter(inv: Invocation, *, events: bool = False) -> Callable[[Flow], bool] | None:
    """The §6.2 predicate for -L/-G/-D/-E, or None when it would accept everything."""
    steps: list[Callable[[Flow], bool]] = []
    if events and inv.family:
        fam = inv.family
        steps.append(lambda f: f.family == fam)
    nat = _nat_filter(inv)
    if nat is not None:
        steps.append(nat)
    if inv.mark is not None and "mark" in inv.options:
        value, mask = inv.mark
        steps.append(lambda f: f.mark is not None and f.mark & mask == value)
    if inv.labels is not None:
        want = inv.labels
        steps.append(lambda f: f.labels is not None and f.labels & want == want)
    net = _network_filter(inv)
    if net is not None:
        steps.append(net)
    attrs = _attribute_filter(inv)
    if attrs is not None:
        steps.append(attrs)
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]

    def check(f: Flow) -> bool:
        for s in steps:
            if not s(f):
                return False
        return True

    return check


def _both_rules(t: Tuple | None) -> list[str]:
    if t is None:
        return []
    return [f for f in ("src", "dst", "proto", "sport", "dport", "icmp_type", "icmp_code",
                        "icmp_id") if getattr(t, f) is not None]


def make_update_selector(inv: Invocation) -> Callable[[Flow], bool]:
    """§6.4: which dumped entries ``-U`` updates."""
    steps: list[Callable[[Flow], bool]] = []
    nat = _nat_filter(inv)
    if nat is not None:
        steps.append(nat)
    if inv.labels is not None:
        want = inv.labels
        steps.append(lambda f: f.labels is not None and f.labels & want == want)
    net = _network_filter(inv)
    if net is not None:
        steps.append(net)
    t = inv.template
    if t.id is not None:
        cid = t.id
        steps.append(lambda f: f.id is None or f.id == cid)
    opts = inv.options
    skip = {name for name, opt in (("src", "mask-src"), ("dst", "mask-dst")) if opt in opts}
    if opts & {"src", "dst", "protonum"}:
        steps.append(_present_in_both("orig", t.orig, skip))
    if opts & {"reply-src", "reply-dst", "protonum"}:
        steps.append(_present_in_both("reply", t.reply, set()))

    def check(f: Flow) -> bool:
        for s in steps:
            if not s(f):
                return False
        return True

    return check


def _present_in_both(direction: str, want: Tuple | None, skip: set[str]) -> Callable[[Flow], bool]:
    """§6.4 tuple check: every field set in both the template and the entry is equal."""
    fields = [(name, getattr(want, name)) for name in _both_rules(want) if name not in skip]
    fam = want.family if want is not None else None

    def ok(f: Flow) -> bool:
        have = getattr(f, direction)
        if have is None:
            return True
        if fam is not None and have.family is not None and have.family != fam:
            return False
        for name, value in fields:
            v = getattr(have, name)
            if v is not None and v != value:
                return False
        return True

    return ok
