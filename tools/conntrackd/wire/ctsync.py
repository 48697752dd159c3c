"""ctnetlink messages straight to sync messages (and sync messages to ctnetlink requests).

The daemon's caches hold flows as the kernel sent them (ctnetlink attributes); the C
sender turns each into a sync message (``ct2msg``). :func:`sync_message` does that
without building a :class:`~ctnetlink.model.Flow`: ctnetlink's decoder gives the
message's compiled layout and values (:meth:`ctnetlink.decode.Decoder.values`), and per
layout and protocol an encoder is generated whose variant functions are those of
:mod:`.flowenc`, with value expressions over the ctnetlink values instead of Flow
fields (one struct per variant, addresses copied as bytes). Layouts with a master
tuple or sequence adjustment, and names longer than the variant keys hold, take the
Flow path. The result equals ``flow_message(type, decode_flow(message), ...)``.

:func:`payload_flow_attrs` / :func:`payload_flow_message` turn a received sync payload
into the ctnetlink attributes of the flow it describes (what the kernel would report:
the form the daemon's caches store), and :func:`payload_commit_request` is the other
direction: a received sync payload to the
attributes of the ctnetlink request that creates its flow in the kernel (commit, or a
NEW injected with ``DisableExternalCache``), generated per payload layout, protocol
and variant (what NAT the values show, the timeout, the helper name) as one struct of
the whole nested request; it equals :func:`commit_request` of the decoded flow
(``ctnetlink.encode.encode_flow(kernel.commit_flow(flow, ...), nat_port_protos=...)``).
"""
from __future__ import annotations

import re
import struct

from ctnetlink.decode import _flow_decoder, _str
from ctnetlink.encode import encode_flow as ct_encode_flow

from . import flowenc
from . import kernel as KR
from .codec import CT_DECODER, flow_message
from .flowenc import (
    MAX_FORMATS, PORT_GROUPS, compile_variant, labels_payload, variant_parts, variant_source,
)
from .shapes import ICMP_REPLY, ICMPV6_REPLY, Slot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

_O, _R = "CTA_TUPLE_ORIG", "CTA_TUPLE_REPLY"
_IP, _PR = "CTA_TUPLE_IP", "CTA_TUPLE_PROTO"
_FALLBACK = ("CTA_TUPLE_MASTER", "CTA_SEQ_ADJ_ORIG", "CTA_SEQ_ADJ_REPLY")


def _leaf(shape, *path: str) -> int | None:
    hit = shape.leaves.get(path)
    return None if hit is None else hit[0]


def _encoder_source(shape, proto: int, wt: bool, ct: bool) -> tuple[str, dict, int, str] | None:
    """(dispatcher source, value expressions, address version, group) of a layout and
    protocol; None when the Flow path must be taken."""
    made = _encoder_lines(shape, proto, wt, ct)
    if made is None:
        return None
    L, x, version, group = made
    L = ["def enc(v, vt, flags, seq):", *L, "    fn = _V(bits)\n    if fn is None:\n"
         "        fn = _variant(bits)", "    return fn(vt, flags, seq, v, rd, rs, h, lb)"]
    return "\n".join(L) + "\n", x, version, group


def _encoder_lines(shape, proto: int, wt: bool, ct: bool
                   ) -> tuple[list[str], dict, int, str] | None:
    """(the dispatcher's lines computing ``bits``, ``rd``, ``rs``, ``h`` and ``lb`` from
    the values ``v``, value expressions, address version, group): see
    :func:`_encoder_source`."""
    if any(path[0] in _FALLBACK for path in shape.leaves):
        return None
    g = _leaf
    o4s, o6s = g(shape, _O, _IP, "CTA_IP_V4_SRC"), g(shape, _O, _IP, "CTA_IP_V6_SRC")
    version = 4 if o4s is not None else 6 if o6s is not None else 0
    if not version:
        return None
    v6 = version == 6
    ip = ("CTA_IP_V6_SRC", "CTA_IP_V6_DST") if v6 else ("CTA_IP_V4_SRC", "CTA_IP_V4_DST")
    osrc, odst = g(shape, _O, _IP, ip[0]), g(shape, _O, _IP, ip[1])
    rsrc, rdst = g(shape, _R, _IP, ip[0]), g(shape, _R, _IP, ip[1])
    if odst is None:
        return None
    group = PORT_GROUPS.get(proto, "other")
    icmp = "ICMPV6_" if proto == 58 else "ICMP_"
    idx = {
        "status": g(shape, "CTA_STATUS"), "timeout": g(shape, "CTA_TIMEOUT"),
        "mark": g(shape, "CTA_MARK"), "zone": g(shape, "CTA_ZONE"),
        "sport": g(shape, _O, _PR, "CTA_PROTO_SRC_PORT"),
        "dport": g(shape, _O, _PR, "CTA_PROTO_DST_PORT"),
        "rsport": g(shape, _R, _PR, "CTA_PROTO_SRC_PORT"),
        "rdport": g(shape, _R, _PR, "CTA_PROTO_DST_PORT"),
        "itype": g(shape, _O, _PR, f"CTA_PROTO_{icmp}TYPE"),
        "icode": g(shape, _O, _PR, f"CTA_PROTO_{icmp}CODE"),
        "iid": g(shape, _O, _PR, f"CTA_PROTO_{icmp}ID"),
        "helper": g(shape, "CTA_HELP", "CTA_HELP_NAME"), "labels": g(shape, "CTA_LABELS"),
        "isn": g(shape, "CTA_SYNPROXY", "CTA_SYNPROXY_ISN"),
        "its": g(shape, "CTA_SYNPROXY", "CTA_SYNPROXY_ITS"),
        "tsoff": g(shape, "CTA_SYNPROXY", "CTA_SYNPROXY_TSOFF"),
    }
    info = {"tcp": ("CTA_PROTOINFO_TCP", "TCP", ("STATE", "WSCALE_ORIGINAL", "WSCALE_REPLY")),
            "sctp": ("CTA_PROTOINFO_SCTP", "SCTP", ("STATE", "VTAG_ORIGINAL", "VTAG_REPLY")),
            "dccp": ("CTA_PROTOINFO_DCCP", "DCCP", ("STATE", "ROLE"))}.get(group)
    pi: dict[str, int | None] = {}
    if info is not None:
        nest, short, fields = info
        for f in fields:
            pi[f] = g(shape, "CTA_PROTOINFO", nest, f"CTA_PROTOINFO_{short}_{f}")

    def v(i: int | None, default: str = "0") -> str:
        return default if i is None else f"v[{i}]"

    x = {"src": v(osrc), "dst": v(odst), "status": f"({v(idx['status'])} or 0)",
         "proto": str(proto), "sport": v(idx["sport"]), "dport": v(idx["dport"]),
         "state": v(pi.get("STATE")), "wscale_orig": v(pi.get("WSCALE_ORIGINAL")),
         "wscale_reply": v(pi.get("WSCALE_REPLY")), "itype": v(idx["itype"]),
         "icode": v(idx["icode"]), "iid": v(idx["iid"]),
         "vtag_orig": v(pi.get("VTAG_ORIGINAL")), "vtag_reply": v(pi.get("VTAG_REPLY")),
         "role": v(pi.get("ROLE")), "timeout": v(idx["timeout"]), "mark": v(idx["mark"]),
         "snat": v(rdst), "dnat": v(rsrc), "spat": "rd", "dpat": "rs", "helper": "h",
         "labels": "lb", "its": v(idx["its"]), "isn": v(idx["isn"]), "tsoff": v(idx["tsoff"]),
         "zone": v(idx["zone"])}
    st = v(idx["status"], "None")
    L = [f"    st = {st}; bits = 0; rd = rs = 0; h = lb = None"]
    if (group in ("tcp", "sctp", "dccp") and pi.get("STATE") is not None) or (
            group == "icmp" and idx["itype"] is not None):
        L.append("    bits = 1")
    if not ct and idx["timeout"] is not None:
        L.append("    bits |= 2")
    if idx["mark"] is not None:
        L.append("    bits |= 4")
    if rsrc is not None or rdst is not None:  # NAT as libnetfilter_conntrack detects it
        L.append("    s_ok = st is None or st & 0x80; d_ok = st is None or st & 0x100")
        if rdst is not None:
            L.append(f"    if s_ok and v[{rdst}] != v[{osrc}]:\n        bits |= 8")
        if rsrc is not None:
            L.append(f"    if d_ok and v[{rsrc}] != v[{odst}]:\n        bits |= 16")
        if group == "icmp":
            if idx["iid"] is not None:
                L.append(f"    if s_ok and v[{idx['iid']}]:\n        bits |= 32")
            if idx["itype"] is not None or idx["icode"] is not None:
                L.append(f"    if d_ok and ({v(idx['itype'])} or {v(idx['icode'])}):\n"
                         "        bits |= 64")
        else:
            L.append(f"    rd = {v(idx['rdport'])}; rs = {v(idx['rsport'])}")
            L.append(f"    if s_ok and rd != {v(idx['sport'])}:\n        bits |= 32")
            L.append(f"    if d_ok and rs != {v(idx['dport'])}:\n        bits |= 64")
    if idx["helper"] is not None:
        L.append(f"    h = _str(v[{idx['helper']}]).encode() + b'\\0'")
        L.append("    if len(h) > 31:\n        return None")
        L.append("    bits |= 128 | len(h) << 11")
    if idx["labels"] is not None:
        i = idx["labels"]
        L.append(f"    x = int.from_bytes(v[{i}], 'little')\n    if x:\n"
                 f"        lb = _labels(x, len(v[{i}]))\n        bits |= 256 | len(lb) << 16")
    if None not in (idx["isn"], idx["its"], idx["tsoff"]):
        L.append("    bits |= 512")
    if idx["zone"] is not None:
        L.append("    bits |= 1024")
    const, rest = 0, []
    for line in L[1:]:  # the bits every message of the layout has: one constant
        m = _CONST_BITS.fullmatch(line)
        if m:
            const |= int(m.group(1))
        else:
            rest.append(line)
    return [L[0].replace("bits = 0", f"bits = {const}"), *rest], x, version, group


_CONST_BITS = re.compile(r"    bits \|?= (\d+)")


def _variant_namespace(version, group, wt: bool, x) -> dict:
    """The names a generated encoder needs: its variants (compiled on first use, at most
    MAX_FORMATS kept) and the payload helpers."""
    variants: dict[int, Callable] = {}

    def make_variant(key: int) -> Callable:
        fn = compile_variant(*variant_source(version, group, wt, key, x, "v, rd, rs, h, lb",
                                             v4_int=False))
        if len(variants) >= MAX_FORMATS:
            variants.clear()
        variants[key] = fn
        return fn

    return {"_V": variants.get, "_variant": make_variant, "_str": _str, "_labels": labels_payload}


def _compile(shape, proto: int, wt: bool, ct: bool) -> Callable | None:
    made = _encoder_source(shape, proto, wt, ct)
    if made is None:
        return None
    source, x, version, group = made
    ns = _variant_namespace(version, group, wt, x)
    exec(source, ns)  # noqa: S102 - generated from the ctnetlink layout and the sync schema
    return ns["enc"]


def _compile_fused(shape, proto: int, wt: bool, ct: bool, signature: str, head: list[str],
                   env: dict, inline: tuple[int, ...] = (), count: int | None = None
                   ) -> Callable | None:
    """A sync encoder of a layout and protocol (see :func:`_compile`) whose signature
    and first lines ``head`` are the caller's: they must set the ctnetlink values, ``vt``,
    ``flags`` and ``seq`` from their arguments and the names of ``env``; the values as
    the tuple ``v``, or (``count`` of them given) as the local names ``_v0``, ``_v1``...
    The variants ``inline`` (bits and lengths, see :func:`_bits_of`) are packed in
    place, the others by their own functions; None where the Flow path must be taken."""
    made = _encoder_lines(shape, proto, wt, ct)
    if made is None:
        return None
    L, x, version, group = made
    ns = _variant_namespace(version, group, wt, x)
    ns.update(env)
    src = [*L]
    for i, bits in enumerate(inline):
        fmt, body, size = variant_parts(version, group, wt, bits, x, v4_int=False)
        ns[f"_W{i}"] = struct.Struct(">BBHI" + fmt).pack
        src.append(f"    if bits == {bits}:\n        return _W{i}(vt, flags, {size}, seq, {body})")
    if count is not None:
        src = [_VALUE.sub(r"_v\1", line) for line in src]
        src.append(f"    v = ({''.join(f'_v{i}, ' for i in range(count))})")
    src.append("    fn = _V(bits)\n    if fn is None:\n        fn = _variant(bits)\n"
               "    return fn(vt, flags, seq, v, rd, rs, h, lb)")
    exec("\n".join([f"def send({signature}):", *head, *src]) + "\n", ns)  # noqa: S102
    return ns["send"]


_VALUE = re.compile(r"\bv\[(\d+)\]")


def _bits_of(shape, proto: int, wt: bool, ct: bool) -> Callable | None:
    """``bits(v)``: the variant (bits and lengths) the encoder of a layout and protocol
    chooses for the values ``v`` (None: the Flow path)."""
    made = _encoder_lines(shape, proto, wt, ct)
    if made is None:
        return None
    ns = {"_str": _str, "_labels": labels_payload}
    exec("\n".join(["def bits(v):", *made[0], "    return bits"]) + "\n", ns)  # noqa: S102
    return ns["bits"]


_NONE = object()


def sync_message(buf, off: int, ln: int, mtype: int, seq: int, flags: int = 0, *,
                 window_tracking: bool = False, commit_timeout: bool = False) -> bytes:
    """The sync message (type ``mtype`` 0-2, ``seq``, ``flags``) for the ctnetlink
    conntrack message at ``buf[off:off + ln]`` (header included), as the C sender
    builds it."""
    shape, v = _flow_decoder.values(buf, off, ln)
    proto = v[shape.leaves[(_O, _PR, "CTA_PROTO_NUM")][0]] if (
        _O, _PR, "CTA_PROTO_NUM") in shape.leaves else None
    key = ("sync", proto, window_tracking, commit_timeout)
    fn = shape.cache.get(key, _NONE)
    if fn is _NONE:
        fn = shape.cache[key] = _compile(shape, proto, window_tracking, commit_timeout) \
            if proto is not None else None
    if fn is not None:
        out = fn(v, 0x10 | mtype, flags, seq)
        if out is not None:
            return out
    return flow_message(mtype, shape.build(v, buf[off + 16]), seq, flags,
                        commit_timeout=commit_timeout, window_tracking=window_tracking)


def commit_request(flow, *, timeout: int | None = None, window_tracking: bool = False) -> bytes:
    """The attributes of the ctnetlink request creating a received flow (the C daemon's
    ``nl_create_conntrack`` of a committed or injected entry), from the Flow (the
    reference of :func:`payload_commit_request`)."""
    return ct_encode_flow(KR.commit_flow(flow, timeout=timeout, window_tracking=window_tracking),
                          nat_port_protos=KR.NAT_PORT_PROTOS)


# --- sync payload -> ctnetlink commit request -----------------------------------------------

_NESTED = 0x8000
_HDR = struct.Struct("=HH")
PORT_L4 = frozenset((6, 17, 33, 132, 47, 136))
"""Protocols whose tuples carry ports (GRE keys) in ctnetlink requests."""


class _Leaf:
    __slots__ = ("atype", "code", "exprs")

    def __init__(self, atype: int, code: str, *exprs: str) -> None:
        self.atype, self.code, self.exprs = atype, code, exprs


class _Nest:
    __slots__ = ("atype", "children")

    def __init__(self, atype: int, children: list) -> None:
        self.atype, self.children = atype, children


def _flatten(nodes: list) -> tuple[str, list[str], int]:
    """(struct format, argument expressions, length) of attributes; headers are the
    native-endian constants of the lengths the layout gives."""
    fmt, args, total = "", [], 0
    for n in nodes:
        if type(n) is _Nest:
            cf, ca, cl = _flatten(n.children)
            ln = 4 + cl
            fmt += "4s" + cf
            args += [repr(_HDR.pack(ln, n.atype | _NESTED))] + ca
            total += ln
            continue
        size = struct.calcsize(">" + n.code)
        ln = 4 + size
        pad = -ln % 4
        fmt += "4s" + n.code + "x" * pad
        args += [repr(_HDR.pack(ln, n.atype))] + list(n.exprs)
        total += ln + pad
    return fmt, args, total


# variant bits of a commit request: what the values decide
R_SNAT, R_DNAT, R_SPAT, R_DPAT, R_RTYPE, R_TIMEOUT = (1 << i for i in range(6))


def _commit_nodes(slots: dict, proto: int, wt: bool, bits: int, hlen: int,
                  commit: bool = True) -> list:
    """The ctnetlink attributes (libnetfilter_conntrack's order, as
    :func:`ctnetlink.encode.encode_flow` writes them) of a variant: of the commit
    request, or (``commit`` False) of the flow as decoded (the kernel's view: the reply
    tuple with the NAT applied, status and timeout as received)."""

    def val(a: int, k: int = 0) -> str:
        s = slots[a]
        e = f"v[{s.index + k}]"
        return f"(({e} & 255) << 8 | {e} >> 8)" if s.swap else e

    has = slots.__contains__
    a = 1 if has(1) else 0
    v6 = a == 1
    acode = "16s" if v6 else "4s"
    src, dst = val(a, 0), val(a, 1)
    icmp = proto in (1, 58)

    def tuple_nodes(s: str, d: str, reply: bool) -> list:
        ip = _Nest(1, [_Leaf(3 if v6 else 1, acode, s), _Leaf(4 if v6 else 2, acode, d)])
        pr = [_Leaf(1, "B", str(proto))]
        if proto in PORT_L4 and commit:  # request tuples always carry ports
            sp = val(3, 0) if has(3) else "0"
            dp = val(3, 1) if has(3) else "0"
            if reply:
                sp, dp = dp, sp
            pr += [_Leaf(2, "H", sp), _Leaf(3, "H", dp)]
        elif proto in PORT_L4:  # the decoded tuples: as sent, NAT ports in the reply
            sp = val(3, 0) if has(3) else None
            dp = val(3, 1) if has(3) else None
            if reply:
                sp, dp = (val(15) if has(15) else dp), (val(14) if has(14) else sp)
            pr += [_Leaf(2, "H", sp)] if sp is not None else []
            pr += [_Leaf(3, "H", dp)] if dp is not None else []
        elif icmp:
            base = 6 if proto == 1 else 9  # CODE, TYPE, ID attribute numbers descend
            if has(23):
                pr.append(_Leaf(base, "B", val(23)))
            if has(22) and (not reply or bits & R_RTYPE):
                pr.append(_Leaf(base - 1, "B", "ri" if reply else val(22)))
            if has(24):
                pr.append(_Leaf(base - 2, "H", val(24)))
        return [ip, _Nest(2, pr)]

    if commit:  # the plain inversion: the kernel applies the NAT requests
        rsrc, rdst = dst, src
    else:
        rsrc = val(30) if has(30) else val(13) if has(13) else dst
        rdst = val(29) if has(29) else val(12) if has(12) else src
    out: list = [_Nest(1, tuple_nodes(src, dst, False)), _Nest(2, tuple_nodes(rsrc, rdst, True))]
    if has(5):
        out.append(_Leaf(3, "I", f"{val(5)} & 0xFFFFFFFE" if commit else val(5)))
    if bits & R_TIMEOUT:
        out.append(_Leaf(7, "I", "t" if commit else val(6)))
    if has(7):
        out.append(_Leaf(8, "I", val(7)))
    if has(4) or has(25) or has(26):
        tcp = [_Leaf(1, "B", val(4))] if has(4) else []
        if has(4) and not wt and commit:  # the "be liberal" flag in both directions
            tcp += [_Leaf(4, "BB", "8", "8"), _Leaf(5, "BB", "8", "8")]
        tcp += [_Leaf(2, "B", val(25))] if has(25) else []
        tcp += [_Leaf(3, "B", val(26))] if has(26) else []
        out.append(_Nest(4, [_Nest(1, tcp)]))
    elif has(17) or has(18) or has(19):
        out.append(_Nest(4, [_Nest(3, [_Leaf(n, c, val(x)) for n, c, x in
                                       ((1, "B", 17), (2, "I", 18), (3, "I", 19)) if has(x)])]))
    elif has(20) or has(21):
        out.append(_Nest(4, [_Nest(2, [_Leaf(n, "B", val(x)) for n, x in ((1, 20), (2, 21))
                                       if has(x)])]))
    for nat_bit, pat_bit, atype, addr_attrs, pat_attr, port in (
            (R_SNAT, R_SPAT, 6, (29, 12), 14, "rd"), (R_DNAT, R_DPAT, 13, (30, 13), 15, "rs")):
        if not commit or not bits & (nat_bit | pat_bit):
            continue
        parts: list = []
        if bits & nat_bit:
            at = addr_attrs[0] if has(addr_attrs[0]) else addr_attrs[1]
            six = at in (29, 30)
            parts.append(_Leaf(4 if six else 1, "16s" if six else "4s", val(at)))
        if bits & pat_bit:
            ports = [_Leaf(1, "H", port), _Leaf(2, "H", port)] if proto in KR.NAT_PORT_PROTOS else []
            parts.append(_Nest(3, ports))
        out.append(_Nest(atype, parts))
    if has(27):
        out.append(_Nest(5, [_Leaf(1, f"{hlen}s", "h")]))
    if has(32):
        out.append(_Leaf(18, "H", val(32)))
    if has(28):
        out.append(_Leaf(22, f"{4 * slots[28].count}s", "lb"))
    if has(31):
        out.append(_Nest(24, [_Leaf(1, "I", val(31, 1)), _Leaf(2, "I", val(31, 0)),
                              _Leaf(3, "I", val(31, 2))]))
    return out


def _commit_dispatch(slots: dict, proto: int) -> str:
    """The source of ``req(v, t) -> bytes | None`` for a payload layout and protocol:
    it computes what the values decide (NAT as the C daemon detects it on the decoded
    flow, the reply ICMP type, the timeout, the helper name) and calls the variant."""
    has = slots.__contains__

    def val(a: int, k: int = 0) -> str:
        s = slots[a]
        e = f"v[{s.index + k}]"
        return f"(({e} & 255) << 8 | {e} >> 8)" if s.swap else e

    a = 1 if has(1) else 0
    icmp = proto in (1, 58)
    L = ["def req(v, t):", "    bits = R_TIMEOUT if t else 0; rd = rs = 0; h = lb = ri = None"]
    st = val(5) if has(5) else "None"
    L.append(f"    st = {st}; s_ok = st is None or st & 0x80; d_ok = st is None or st & 0x100")
    snat = 29 if has(29) else 12 if has(12) else None
    dnat = 30 if has(30) else 13 if has(13) else None
    if snat is not None:
        L.append(f"    if s_ok and {val(snat)} != {val(a, 0)}:\n        bits |= R_SNAT")
    if dnat is not None:
        L.append(f"    if d_ok and {val(dnat)} != {val(a, 1)}:\n        bits |= R_DNAT")
    if icmp:
        iid = val(24) if has(24) else "0"
        itype = val(22) if has(22) else "0"
        icode = val(23) if has(23) else "0"
        L.append(f"    if s_ok and {iid}:\n        bits |= R_SPAT")
        L.append(f"    if d_ok and ({itype} or {icode}):\n        bits |= R_DPAT")
        if has(22):
            table = "_I6" if proto == 58 else "_I4"
            L.append(f"    ri = {table}.get({val(22)})\n    if ri is not None:\n"
                     "        bits |= R_RTYPE")
    else:
        sport = val(3, 0) if has(3) else "0"
        dport = val(3, 1) if has(3) else "0"
        if has(14):
            L.append(f"    rd = {val(14)}\n    if s_ok and rd != {sport}:\n        bits |= R_SPAT")
        if has(15):
            L.append(f"    rs = {val(15)}\n    if d_ok and rs != {dport}:\n        bits |= R_DPAT")
    if has(27):
        L.append(f"    h = _str(v[{slots[27].index}]).encode() + b'\\0'\n"
                 "    if len(h) > 255:\n        return None\n    bits |= len(h) << 8")
    if has(28):
        s28 = slots[28]
        L.append(f"    lb = _le(v[{s28.index}:{s28.index + s28.count}])")
    L.append("    fn = _V(bits)\n    if fn is None:\n        fn = _variant(bits)")
    L.append("    return fn(v, t, h, lb, ri, rd, rs)")
    return "\n".join(L) + "\n"


def _le(words: tuple) -> bytes:
    return struct.pack(f"<{len(words)}I", *words)


def _event_dispatch(slots: dict, proto: int) -> str:
    """The source of ``req(v, t)`` for the decoded-flow attributes: only the reply ICMP
    type and the helper name depend on the values."""
    has = slots.__contains__
    L = ["def req(v, t):", f"    bits = {'R_TIMEOUT' if has(6) else '0'}; h = lb = ri = None"]
    if proto in (1, 58) and has(22):
        s = slots[22]
        L.append(f"    ri = {'_I6' if proto == 58 else '_I4'}.get(v[{s.index}])\n"
                 "    if ri is not None:\n        bits |= R_RTYPE")
    if has(27):
        L.append(f"    h = _str(v[{slots[27].index}]).encode() + b'\\0'\n"
                 "    if len(h) > 255:\n        return None\n    bits |= len(h) << 8")
    if has(28):
        s28 = slots[28]
        L.append(f"    lb = _le(v[{s28.index}:{s28.index + s28.count}])")
    L.append("    fn = _V(bits)\n    if fn is None:\n        fn = _variant(bits)")
    L.append("    return fn(v, t, h, lb, ri, 0, 0)")
    return "\n".join(L) + "\n"


def _compile_commit(slots: dict, proto: int, wt: bool, commit: bool = True) -> Callable | None:
    if any(a in slots for a in (8, 9, 10, 11, 16)) or not (0 in slots or 1 in slots):
        return None  # master tuple, sequence adjustment, no addresses: the Flow path
    variants: dict[int, Callable] = {}

    def make_variant(bits: int) -> Callable:
        fmt, args, _ = _flatten(_commit_nodes(slots, proto, wt, bits & 0xFF, bits >> 8,
                                              commit))
        src = f"def var(v, t, h, lb, ri, rd, rs):\n    return _P({', '.join(args)})\n"
        ns = {"_P": struct.Struct(">" + fmt).pack}
        exec(src, ns)  # noqa: S102 - generated from the schema tables
        if len(variants) >= MAX_FORMATS:
            variants.clear()
        fn = variants[bits] = ns["var"]
        return fn

    ns = {"_V": variants.get, "_variant": make_variant, "_str": _str, "_le": _le,
          "_I4": ICMP_REPLY, "_I6": ICMPV6_REPLY, "R_SNAT": R_SNAT, "R_DNAT": R_DNAT,
          "R_SPAT": R_SPAT, "R_DPAT": R_DPAT, "R_RTYPE": R_RTYPE, "R_TIMEOUT": R_TIMEOUT}
    source = _commit_dispatch(slots, proto) if commit else _event_dispatch(slots, proto)
    exec(source, ns)  # noqa: S102 - generated from the schema tables
    return ns["req"]


def payload_commit_request(payload: bytes, *, timeout: int | None = None,
                           window_tracking: bool = False, shape=None, values=None) -> bytes:
    """The attributes of the ctnetlink request creating the flow a sync conntrack payload
    describes, straight from the payload's values (no Flow): equal to
    :func:`commit_request` of the decoded flow. ``shape``/``values`` may be given when
    known (:class:`~..sync.common.CacheOp` has them). Raises
    :class:`~.errors.SyncDecodeError` for an invalid payload."""
    if shape is None:
        shape, values = CT_DECODER.values(payload, 0, len(payload))
    slots = shape.slots
    proto_slot = slots.get(2)
    proto = values[proto_slot.index] if proto_slot is not None else None
    key = ("commit", proto, window_tracking)
    fn = shape.cache.get(key, _NONE)
    if fn is _NONE:
        fn = shape.cache[key] = _compile_commit(slots, proto, window_tracking) \
            if proto is not None else None
    if fn is not None:
        out = fn(values, timeout)
        if out is not None:
            return out
    return commit_request(shape.build(values), timeout=timeout, window_tracking=window_tracking)


def payload_flow_attrs(payload: bytes, *, shape=None, values=None) -> tuple[int, bytes]:
    """(family, ctnetlink attributes) of the flow a sync conntrack payload describes, as
    the kernel would report it (what a cache of ctnetlink entries stores for a received
    message), straight from the payload's values: the attributes equal
    :func:`ctnetlink.encode.encode_flow` of the decoded flow."""
    if shape is None:
        shape, values = CT_DECODER.values(payload, 0, len(payload))
    slots = shape.slots
    family = 10 if 1 in slots else 2
    proto_slot = slots.get(2)
    proto = values[proto_slot.index] if proto_slot is not None else None
    key = ("flow", proto)
    fn = shape.cache.get(key, _NONE)
    if fn is _NONE:
        fn = shape.cache[key] = _compile_commit(slots, proto, False, commit=False) \
            if proto is not None else None
    if fn is not None:
        out = fn(values, None)
        if out is not None:
            return family, out
    flow = shape.build(values)
    return flow.family or family, ct_encode_flow(flow)


def payload_flow_message(payload: bytes, mtype: int = 0x100, *, shape=None,
                         values=None) -> bytes:
    """:func:`payload_flow_attrs` as a complete ctnetlink message (``IPCTNL_MSG_CT_NEW``
    by default), the form the daemon's caches take."""
    family, attrs = payload_flow_attrs(payload, shape=shape, values=values)
    return _NLMSG.pack(20 + len(attrs), mtype, 0, 0, 0, family, 0, 0) + attrs



_NOT_FUSED = frozenset(("CTA_TUPLE_MASTER", "CTA_SEQ_ADJ_ORIG", "CTA_SEQ_ADJ_REPLY", "CTA_HELP",
                        "CTA_LABELS"))


def _fused_commit(shape, proto: int, wt: bool) -> Callable | None:
    """``req(v, t)``: the commit request straight from the ctnetlink values of a TCP or
    UDP layout, without the sync message in between (None: the layout takes that way).

    The commit generator (:func:`_compile_commit`) is given the values the sync message
    would carry, as one tuple built from the ctnetlink values, with the NAT attributes
    always present: its NAT tests are the sender's (the received status decides as the
    sender's status did; a missing status is sent as 0 and then allows no NAT at either
    end), so the request is the same whether the sender included them or not."""
    if proto not in (6, 17):
        return None
    leaves = shape.leaves
    if any(path[0] in _NOT_FUSED for path in leaves):
        return None

    def g(*path: str) -> int | None:
        hit = leaves.get(path)
        return None if hit is None else hit[0]

    v6 = g(_O, _IP, "CTA_IP_V6_SRC") is not None
    ip = ("CTA_IP_V6_SRC", "CTA_IP_V6_DST") if v6 else ("CTA_IP_V4_SRC", "CTA_IP_V4_DST")
    osrc, odst, rsrc, rdst = (g(_O, _IP, ip[0]), g(_O, _IP, ip[1]), g(_R, _IP, ip[0]),
                              g(_R, _IP, ip[1]))
    sp, dp = g(_O, _PR, "CTA_PROTO_SRC_PORT"), g(_O, _PR, "CTA_PROTO_DST_PORT")
    rsp, rdp = g(_R, _PR, "CTA_PROTO_SRC_PORT"), g(_R, _PR, "CTA_PROTO_DST_PORT")
    if None in (osrc, odst, rsrc, rdst, sp, dp, rsp, rdp):
        return None
    exprs: list[str] = []
    slots: dict = {}

    def add(attr: int, *es: str) -> None:
        slots[attr] = Slot(len(exprs), len(es), "fused", False)
        exprs.extend(es)

    add(1 if v6 else 0, f"v[{osrc}]", f"v[{odst}]")
    add(2, str(proto))
    add(3, f"v[{sp}]", f"v[{dp}]")
    st = g("CTA_STATUS")
    add(5, "0" if st is None else f"(v[{st}] or 0)")
    if proto == 6:
        pi = ("CTA_PROTOINFO", "CTA_PROTOINFO_TCP")
        state = g(*pi, "CTA_PROTOINFO_TCP_STATE")
        if state is not None:
            add(4, f"v[{state}]")
            for attr, leaf in ((25, "WSCALE_ORIGINAL"), (26, "WSCALE_REPLY")):
                i = g(*pi, f"CTA_PROTOINFO_TCP_{leaf}")
                add(attr, "0" if i is None else f"(v[{i}] or 0)")
    mark = g("CTA_MARK")
    if mark is not None:
        add(7, f"v[{mark}]")
    add(29 if v6 else 12, f"v[{rdst}]")
    add(30 if v6 else 13, f"v[{rsrc}]")
    add(14, f"v[{rdp}]")
    add(15, f"v[{rsp}]")
    syn = [g("CTA_SYNPROXY", f"CTA_SYNPROXY_{x}") for x in ("ITS", "ISN", "TSOFF")]
    if None not in syn:
        add(31, *(f"v[{i}]" for i in syn))
    zone = g("CTA_ZONE")
    if zone is not None:
        add(32, f"v[{zone}]")
    req = _compile_commit(slots, proto, wt)
    if req is None:
        return None
    ns = {"_req": req}
    exec(f"def fused(v, t):\n    return _req(({', '.join(exprs)},), t)\n", ns)  # noqa: S102
    return ns["fused"]


def stored_commit_request(buf, off: int, ln: int, elapsed: int, configured: int = 0,
                          window_tracking: bool = False) -> tuple[bytes, bool]:
    """(attributes of the commit request, is it a related flow) for the ctnetlink form of
    a received flow (a complete message at ``buf[off:off + ln]``, as a cache stores it),
    ``elapsed`` seconds after its last update: the flow's sync message (every attribute
    the C receiver would hold) turned into the request :func:`payload_commit_request`
    builds. The timeout is ``configured`` (``CommitTimeout``) if set, else the stored
    timeout minus ``elapsed``; where 1.4.7 would send no timeout (an estimate of exactly
    0, refused by the kernel) or a negative one, it is 60 s."""
    shape, v = _flow_decoder.values(buf, off, ln)
    info = shape.cache.get("commit")
    if info is None:
        leaf = shape.leaves.get((_O, _PR, "CTA_PROTO_NUM"))
        ti = shape.leaves.get(("CTA_TIMEOUT",))
        related = any(path[0] == "CTA_TUPLE_MASTER" for path in shape.leaves)
        # (proto index, timeout index, related, the sync encoder of each protocol)
        info = shape.cache["commit"] = (None if leaf is None else leaf[0],
                                        None if ti is None else ti[0], related, {})
    pi, ti, related, encoders = info
    proto = None if pi is None else v[pi]
    if configured:
        timeout = configured
    else:
        timeout = (0 if ti is None else v[ti]) - elapsed
        if timeout <= 0:
            timeout = KR.FALLBACK_TIMEOUT
    fused = encoders.get(("fused", proto, window_tracking), _NONE)
    if fused is _NONE:
        fused = encoders[("fused", proto, window_tracking)] = \
            _fused_commit(shape, proto, window_tracking) if proto is not None else None
    if fused is not None:
        attrs = fused(v, timeout)
        if attrs is not None:
            return attrs, related
    fn = encoders.get(proto, _NONE)
    if fn is _NONE:
        fn = encoders[proto] = _compile(shape, proto, True, True) if proto is not None else None
    out = fn(v, 0x10, 0, 0) if fn is not None else None
    if out is None:
        out = flow_message(0, shape.build(v, buf[off + 16]), 0, commit_timeout=True,
                           window_tracking=True)
    # payload_commit_request(out[8:], ...) without the copy and the call
    pshape, values = CT_DECODER.values(out, 8, len(out))
    slot = pshape.slots.get(2)
    p = values[slot.index] if slot is not None else None
    key = ("commit", p, window_tracking)
    req = pshape.cache.get(key, _NONE)
    if req is _NONE:
        req = pshape.cache[key] = _compile_commit(pshape.slots, p, window_tracking) \
            if p is not None else None
    if req is not None:
        attrs = req(values, timeout)
        if attrs is not None:
            return attrs, related
    return commit_request(pshape.build(values), timeout=timeout,
                          window_tracking=window_tracking), related


_NLMSG = struct.Struct("=IHHIIBBH")

__all__ = ["sync_message", "commit_request", "stored_commit_request", "payload_commit_request", "payload_flow_attrs",
           "payload_flow_message", "flowenc"]
