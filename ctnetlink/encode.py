"""Encoding :class:`Flow` / :class:`Expect` objects into ctnetlink request attributes.

The attribute order is that of libnetfilter_conntrack (``nfct_nlmsg_build``), which the
reference ``conntrack`` tool sends, so that our requests equal its requests byte for
byte. Only fields that are set are sent; reply-only fields (counters, use, id,
timestamps, security context) are never sent.
"""
from __future__ import annotations

import struct

from nfnl.codec import nla, nla_nest, nla_string, nla_u8, nla_u16, nla_u32, nla_u64
from nfnl.message import build_nfnl

from .constants import ICMP_PROTOS, PORT_ATTR_PROTOS
from .model import AF_INET6, Expect, Flow, NatRange, Tuple

_HDR = struct.Struct("=HH")

# nested attribute numbers
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS, CTA_PROTOINFO, CTA_HELP, CTA_NAT_SRC = 1, 2, 3, 4, 5, 6
CTA_TIMEOUT, CTA_MARK, CTA_NAT_DST, CTA_TUPLE_MASTER = 7, 8, 13, 14
CTA_SEQ_ADJ_ORIG, CTA_SEQ_ADJ_REPLY, CTA_SECMARK, CTA_ZONE = 15, 16, 17, 18
CTA_MARK_MASK, CTA_LABELS, CTA_LABELS_MASK, CTA_SYNPROXY, CTA_FILTER, CTA_STATUS_MASK = (
    21, 22, 23, 24, 25, 26)


def _ip(atype: int, addr) -> bytes:
    return nla(atype, addr.packed)


def encode_tuple(t: Tuple, family: int | None = None) -> bytes:
    """The content of a CTA_TUPLE_* nest (IP nest, PROTO nest, zone)."""
    fam = family or t.family
    parts = []
    if fam == AF_INET6:
        ip = []
        if t.src is not None:
            ip.append(_ip(3, t.src))
        if t.dst is not None:
            ip.append(_ip(4, t.dst))
    else:
        ip = []
        if t.src is not None:
            ip.append(_ip(1, t.src))
        if t.dst is not None:
            ip.append(_ip(2, t.dst))
    if ip:
        parts.append(nla_nest(1, *ip))
    if t.proto is not None:
        proto = [nla_u8(1, t.proto)]
        if t.proto in PORT_ATTR_PROTOS:
            if t.sport is not None:
                proto.append(nla_u16(2, t.sport))
            if t.dport is not None:
                proto.append(nla_u16(3, t.dport))
        elif t.proto in ICMP_PROTOS:
            base = 6 if t.proto == 1 else 9  # CODE, TYPE, ID attribute numbers descend
            if t.icmp_code is not None:
                proto.append(nla_u8(base, t.icmp_code))
            if t.icmp_type is not None:
                proto.append(nla_u8(base - 1, t.icmp_type))
            if t.icmp_id is not None:
                proto.append(nla_u16(base - 2, t.icmp_id))
        parts.append(nla_nest(2, *proto))
    if t.zone is not None:
        parts.append(nla_u16(3, t.zone))
    return b"".join(parts)


def _nat(atype: int, nat: NatRange, l4: int | None, port_protos) -> bytes:
    parts = []
    v6 = (nat.min_ip or nat.max_ip) is not None and (nat.min_ip or nat.max_ip).version == 6
    if nat.min_ip is not None:
        parts.append(_ip(4 if v6 else 1, nat.min_ip))
    if nat.max_ip is not None:
        parts.append(_ip(5 if v6 else 2, nat.max_ip))
    if nat.min_port is not None or nat.max_port is not None:
        ports = []
        if port_protos is None or l4 in port_protos:
            if nat.min_port is not None:
                ports.append(nla_u16(1, nat.min_port))
            if nat.max_port is not None:
                ports.append(nla_u16(2, nat.max_port))
        parts.append(nla_nest(3, *ports))
    return nla_nest(atype, *parts)


def labels_bytes(labels: int, size: int | None = None) -> bytes:
    """A label bitmap as the kernel wants it: 32-bit host-order words."""
    if size is None:
        size = ((max(labels.bit_length() - 1, 0) // 32) + 1) * 4
    return labels.to_bytes(size, "little")


def encode_flow(flow: Flow, *, nat_port_protos: frozenset[int] | None = None) -> bytes:
    """The attributes of a conntrack request carrying ``flow`` (libnetfilter_conntrack order).

    ``nat_port_protos`` restricts the NAT port attributes to those layer-4 protocols
    (the reference tool leaves the port nest empty for others).
    """
    fam = flow.family
    out = []
    if flow.orig is not None:
        out.append(nla_nest(CTA_TUPLE_ORIG, encode_tuple(flow.orig, fam)))
    if flow.reply is not None:
        out.append(nla_nest(CTA_TUPLE_REPLY, encode_tuple(flow.reply, fam)))
    if flow.master is not None:
        out.append(nla_nest(CTA_TUPLE_MASTER, encode_tuple(flow.master, fam)))
    if flow.status_bits is not None:
        out.append(nla_u32(CTA_STATUS, flow.status_bits))
    if flow.timeout is not None:
        out.append(nla_u32(CTA_TIMEOUT, flow.timeout))
    if flow.mark is not None:
        out.append(nla_u32(CTA_MARK, flow.mark))
    if flow.secmark is not None:
        out.append(nla_u32(CTA_SECMARK, flow.secmark))
    pinfo = _protoinfo(flow)
    if pinfo:
        out.append(nla_nest(CTA_PROTOINFO, pinfo))
    l4 = flow.orig.proto if flow.orig is not None else None
    if flow.nat_src is not None:
        out.append(_nat(CTA_NAT_SRC, flow.nat_src, l4, nat_port_protos))
    if flow.nat_dst is not None:
        out.append(_nat(CTA_NAT_DST, flow.nat_dst, l4, nat_port_protos))
    for atype, adj in ((CTA_SEQ_ADJ_ORIG, flow.seq_adj_orig), (CTA_SEQ_ADJ_REPLY, flow.seq_adj_reply)):
        if adj is not None:
            out.append(nla_nest(atype, *(nla_u32(i, v) for i, v in (
                (1, adj.correction_pos), (2, adj.offset_before), (3, adj.offset_after))
                if v is not None)))
    if flow.helper is not None:
        out.append(nla_nest(CTA_HELP, nla_string(1, flow.helper)))
    if flow.zone is not None:
        out.append(nla_u16(CTA_ZONE, flow.zone))
    if flow.labels is not None:
        lb = labels_bytes(flow.labels, flow.labels_size)
        out.append(nla(CTA_LABELS, lb))
        if flow.labels_mask is not None:
            out.append(nla(CTA_LABELS_MASK, labels_bytes(flow.labels_mask, len(lb))))
    if flow.synproxy is not None:
        sp = flow.synproxy
        out.append(nla_nest(CTA_SYNPROXY, *(nla_u32(i, v) for i, v in (
            (1, sp.isn), (2, sp.its), (3, sp.tsoff)) if v is not None)))
    return b"".join(out)


_PUT = {"u8": nla_u8, "u32": nla_u32, "u64": nla_u64, "raw": lambda t, v: nla(t, bytes(v))}
_PROTOINFO = (  # (model slot, nest type, ((field, attribute type, encoding), ...)), in
    # libnetfilter_conntrack's order (TCP flags before window scales, unlike the kernel)
    ("tcp", 1, (("state", 1, "u8"), ("flags_orig", 4, "raw"), ("flags_reply", 5, "raw"),
                ("wscale_orig", 2, "u8"), ("wscale_reply", 3, "u8"))),
    ("sctp", 3, (("state", 1, "u8"), ("vtag_orig", 2, "u32"), ("vtag_reply", 3, "u32"))),
    ("dccp", 2, (("state", 1, "u8"), ("role", 2, "u8"), ("handshake_seq", 3, "u64"))),
)


def _protoinfo(flow: Flow) -> bytes:
    """The content of CTA_PROTOINFO: the first of tcp/sctp/dccp that is set."""
    for slot, nest, fields in _PROTOINFO:
        info = getattr(flow, slot)
        if info is None:
            continue
        parts = [_PUT[enc](atype, v) for name, atype, enc in fields
                 if (v := getattr(info, name)) is not None]
        return nla_nest(nest, *parts) if parts else b""
    return b""


def encode_expect(exp: Expect) -> bytes:
    """The attributes of an expectation request (order observed from the reference)."""
    fam = exp.family
    out = []
    if exp.tuple is not None:
        out.append(nla_nest(2, encode_tuple(exp.tuple, fam)))
    if exp.master is not None:
        out.append(nla_nest(1, encode_tuple(exp.master, fam)))
    if exp.mask is not None:
        out.append(nla_nest(3, encode_tuple(exp.mask, fam)))
    if exp.timeout is not None:
        out.append(nla_u32(4, exp.timeout))
    if exp.id is not None:
        out.append(nla_u32(5, exp.id))
    if exp.zone is not None:
        out.append(nla_u16(7, exp.zone))
    if exp.flags is not None:
        out.append(nla_u32(8, exp.flags))
    if exp.helper is not None:
        out.append(nla_string(6, exp.helper))
    if exp.klass is not None:
        out.append(nla_u32(9, exp.klass))
    if exp.nat_tuple is not None or exp.nat_dir is not None:
        parts = []
        if exp.nat_dir is not None:
            parts.append(nla_u32(1, exp.nat_dir))
        if exp.nat_tuple is not None:
            parts.append(nla_nest(2, encode_tuple(exp.nat_tuple, fam)))
        out.append(nla_nest(10, *parts))
    if exp.fn is not None:
        out.append(nla_string(11, exp.fn))
    return b"".join(out)


def flow_message(mtype: int, flags: int, flow: Flow, seq: int = 0, family: int | None = None,
                 **kw) -> bytes:
    """A complete ctnetlink message carrying ``flow``."""
    fam = family if family is not None else (flow.family or 0)
    return build_nfnl(mtype, flags, fam, encode_flow(flow, **kw), seq)



# --- requests re-sent from dumped messages, without decoding ---------------------------

LIBNFCT_ORDER: dict[str, tuple[str, ...]] = {
    "": ("CTA_TUPLE_ORIG", "CTA_TUPLE_REPLY", "CTA_TUPLE_MASTER", "CTA_STATUS", "CTA_TIMEOUT",
         "CTA_MARK", "CTA_SECMARK", "CTA_PROTOINFO", "CTA_NAT_SRC", "CTA_NAT_DST",
         "CTA_SEQ_ADJ_ORIG", "CTA_SEQ_ADJ_REPLY", "CTA_HELP", "CTA_ZONE", "CTA_LABELS",
         "CTA_LABELS_MASK", "CTA_SYNPROXY"),
    "CTA_TUPLE_ORIG": ("CTA_TUPLE_IP", "CTA_TUPLE_PROTO", "CTA_TUPLE_ZONE"),
    "CTA_TUPLE_REPLY": ("CTA_TUPLE_IP", "CTA_TUPLE_PROTO", "CTA_TUPLE_ZONE"),
    "CTA_TUPLE_MASTER": ("CTA_TUPLE_IP", "CTA_TUPLE_PROTO", "CTA_TUPLE_ZONE"),
    "CTA_TUPLE_IP": ("CTA_IP_V4_SRC", "CTA_IP_V4_DST", "CTA_IP_V6_SRC", "CTA_IP_V6_DST"),
    "CTA_TUPLE_PROTO": ("CTA_PROTO_NUM", "CTA_PROTO_SRC_PORT", "CTA_PROTO_DST_PORT",
                        "CTA_PROTO_ICMP_CODE", "CTA_PROTO_ICMP_TYPE", "CTA_PROTO_ICMP_ID",
                        "CTA_PROTO_ICMPV6_CODE", "CTA_PROTO_ICMPV6_TYPE", "CTA_PROTO_ICMPV6_ID"),
    "CTA_PROTOINFO": ("CTA_PROTOINFO_TCP", "CTA_PROTOINFO_DCCP", "CTA_PROTOINFO_SCTP"),
    "CTA_PROTOINFO_TCP": ("CTA_PROTOINFO_TCP_STATE", "CTA_PROTOINFO_TCP_FLAGS_ORIGINAL",
                          "CTA_PROTOINFO_TCP_FLAGS_REPLY", "CTA_PROTOINFO_TCP_WSCALE_ORIGINAL",
                          "CTA_PROTOINFO_TCP_WSCALE_REPLY"),
    "CTA_PROTOINFO_SCTP": ("CTA_PROTOINFO_SCTP_STATE", "CTA_PROTOINFO_SCTP_VTAG_ORIGINAL",
                           "CTA_PROTOINFO_SCTP_VTAG_REPLY"),
    "CTA_PROTOINFO_DCCP": ("CTA_PROTOINFO_DCCP_STATE", "CTA_PROTOINFO_DCCP_ROLE",
                           "CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ"),
    "CTA_SEQ_ADJ_ORIG": ("CTA_SEQADJ_CORRECTION_POS", "CTA_SEQADJ_OFFSET_BEFORE",
                         "CTA_SEQADJ_OFFSET_AFTER"),
    "CTA_SEQ_ADJ_REPLY": ("CTA_SEQADJ_CORRECTION_POS", "CTA_SEQADJ_OFFSET_BEFORE",
                          "CTA_SEQADJ_OFFSET_AFTER"),
    "CTA_HELP": ("CTA_HELP_NAME",),
    "CTA_SYNPROXY": ("CTA_SYNPROXY_ISN", "CTA_SYNPROXY_ITS", "CTA_SYNPROXY_TSOFF"),
}
"""The attribute order :func:`encode_flow` writes (libnetfilter_conntrack's), per nest;
at the top level attributes not listed are not sent."""


def _plan(nodes: list, key: str, out: list[tuple[int, int]], top: bool) -> bool:
    order = LIBNFCT_ORDER.get(key)
    if order is None:
        return False
    rank = {name: i for i, name in enumerate(order)}
    kept = [n for n in nodes if n[0] in rank]
    if not top and len(kept) != len(nodes):
        return False  # an inner attribute encode_flow would not send: lengths change
    for node in sorted(kept, key=lambda n: rank[n[0]]):
        name, start, end, children = node
        if children is None or _in_order(children, name):
            out.append((start, end))
            continue
        out.append((start, start + 4))  # the nest header: its length does not change
        if not _plan(children, name, out, False):
            return False
    return True


def _in_order(children: list, key: str) -> bool:
    order = LIBNFCT_ORDER.get(key)
    if order is None:
        return False
    rank = {name: i for i, name in enumerate(order)}
    ranks = [rank.get(c[0]) for c in children]
    if None in ranks or ranks != sorted(ranks):
        return False
    return all(c[3] is None or _in_order(c[3], c[0]) for c in children)


def resend_plan(shape) -> "Callable[[bytes, int], bytes] | None":
    """For messages of a decoder ``Shape`` (conntrack entries): a function
    ``(datagram, message offset) -> attributes`` giving exactly :func:`encode_flow` of
    the decoded entry (as ``-D`` re-sends it), by copying byte ranges instead of
    decoding and encoding. None when the shape holds something that cannot be copied
    (the caller then encodes the decoded Flow)."""
    cached = shape.cache.get("resend")
    if cached is not None or "resend" in shape.cache:
        return cached
    spans: list[tuple[int, int]] = []
    fn = None
    names = {n[0] for n in shape.tree}
    if "CTA_STATUS" in names and _plan(shape.tree, "", spans, True):
        merged: list[list[int]] = []
        for a, b in spans:
            if merged and merged[-1][1] == a:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        parts = ", ".join(f"b[o + {20 + a}:o + {20 + b}]" for a, b in merged)
        src = f"def body(b, o):\n    return b''.join(({parts},))\n"
        ns: dict = {}
        exec(src, ns)  # noqa: S102 - generated from the shape's byte offsets
        fn = ns["body"]
    shape.cache["resend"] = fn
    return fn


TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
