"""The sync wire format of conntrackd 1.4.7, declared with construct.

One declaration per C structure of the daemon's ``network.h``: the 8-byte message
header (``struct nethdr``), the 16-byte header of ACK/NACK/RESYNC (``struct
nethdr_ack``), the attribute header (``struct netattr``) and one
:class:`~nfnl.attrs.AttrSet` per payload kind (``enum nta_attr`` for conntrack
messages, ``enum nta_exp_attr`` for expectations), with the C constant names and
the byte order each attribute really has on an x86-64 sender (SPAT_PORT, DPAT_PORT
and ICMP_ID little-endian). Everything is big-endian otherwise; attributes are padded
to 4 bytes and their length excludes the padding. :func:`compiled_tables` derives
``_compiled.py`` (the struct formats and length rules the runtime codec uses);
:data:`Datagram` and :func:`parse_interpreted` run the same declarations through
construct's interpreter, which tests use to cross-check the fast path.
"""
from __future__ import annotations

import construct as cs

from nfnl.attrs import IPv4, IPv6, U8, U16, U32, Attr, AttrSet, String

from . import constants as K


class Bounded(cs.Subconstruct):
    """A variable-length payload of at most ``max_len`` bytes (the receiver's limit)."""

    def __init__(self, subcon: cs.Construct, max_len: int, multiple: int = 1) -> None:
        super().__init__(subcon)
        self.max_len = max_len
        self.multiple = multiple

    def _parse(self, stream, context, path):
        data = cs.stream_read_entire(stream, path)
        if not 0 < len(data) <= self.max_len or len(data) % self.multiple:
            raise cs.ValidationError(f"payload of {len(data)} bytes", path=path)
        return self.subcon._parsereport(cs.io.BytesIO(data), context, path)

    def _build(self, obj, stream, context, path):
        return self.subcon._build(obj, stream, context, path)


# --- headers -------------------------------------------------------------------------

NetHdr = cs.Struct(
    "version_type" / cs.Int8ub,  # version << 4 | type (C bitfields, same byte on any host)
    "flags" / cs.Int8ub,
    "len" / cs.Int16ub,
    "seq" / cs.Int32ub,
)
"""``struct nethdr``: every message starts with it; ``len`` counts the whole message."""

NetHdrAck = cs.Struct(
    "version_type" / cs.Int8ub,
    "flags" / cs.Int8ub,
    "len" / cs.Int16ub,
    "seq" / cs.Int32ub,
    "from" / cs.Int32ub,
    "to" / cs.Int32ub,
)
"""``struct nethdr_ack``: ACK, NACK (inclusive range) and RESYNC (0/0)."""

NetAttr = cs.Struct("nta_len" / cs.Int16ub, "nta_attr" / cs.Int16ub)
"""``struct netattr``: length of header and payload without padding, attribute number."""

# --- payload declarations ------------------------------------------------------------

AddrPair4 = cs.Struct("src" / IPv4, "dst" / IPv4)
"""``struct nfct_attr_grp_ipv4``."""
AddrPair6 = cs.Struct("src" / IPv6, "dst" / IPv6)
"""``struct nfct_attr_grp_ipv6``."""
PortPair = cs.Struct("sport" / U16, "dport" / U16)
"""``struct nfct_attr_grp_port``: copied from network order, so big-endian."""
U16Sender = cs.Int16ul
"""A 16-bit value the C sender byte-swaps although it is already in network order:
little-endian from an x86 sender (SPAT_PORT, DPAT_PORT, ICMP_ID)."""
NatSeqAdj = cs.Struct(
    "orig_correction_pos" / U32, "orig_offset_before" / U32, "orig_offset_after" / U32,
    "repl_correction_pos" / U32, "repl_offset_before" / U32, "repl_offset_after" / U32,
)
"""``struct nta_attr_natseqadj``."""
Synproxy = cs.Struct("its" / U32, "isn" / U32, "tsoff" / U32)
"""``struct nta_attr_synproxy`` (note the order: its before isn)."""
Labels = Bounded(cs.GreedyRange(U32), 1024, 4)
"""The label bitmap as big-endian 32-bit words, word i holding bits 32i..32i+31."""
HelperName = Bounded(String, 12)
"""NUL-terminated; the receiver accepts ``nta_len`` up to 16 (``NFCT_HELPER_NAME_MAX``)."""
ExpFn = Bounded(String, 28)
"""NUL-terminated; ``nta_len`` up to 32."""

NTA_CT = AttrSet("nta_attr", [
    Attr(0, "NTA_IPV4", AddrPair4),
    Attr(1, "NTA_IPV6", AddrPair6),
    Attr(2, "NTA_L4PROTO", U8),
    Attr(3, "NTA_PORT", PortPair),
    Attr(4, "NTA_TCP_STATE", U8),
    Attr(5, "NTA_STATUS", U32),
    Attr(6, "NTA_TIMEOUT", U32),
    Attr(7, "NTA_MARK", U32),
    Attr(8, "NTA_MASTER_IPV4", AddrPair4),
    Attr(9, "NTA_MASTER_IPV6", AddrPair6),
    Attr(10, "NTA_MASTER_L4PROTO", U8),
    Attr(11, "NTA_MASTER_PORT", PortPair),
    Attr(12, "NTA_SNAT_IPV4", IPv4),
    Attr(13, "NTA_DNAT_IPV4", IPv4),
    Attr(14, "NTA_SPAT_PORT", U16Sender),
    Attr(15, "NTA_DPAT_PORT", U16Sender),
    Attr(16, "NTA_NAT_SEQ_ADJ", NatSeqAdj),
    Attr(17, "NTA_SCTP_STATE", U8),
    Attr(18, "NTA_SCTP_VTAG_ORIG", U32),
    Attr(19, "NTA_SCTP_VTAG_REPL", U32),
    Attr(20, "NTA_DCCP_STATE", U8),
    Attr(21, "NTA_DCCP_ROLE", U8),
    Attr(22, "NTA_ICMP_TYPE", U8),
    Attr(23, "NTA_ICMP_CODE", U8),
    Attr(24, "NTA_ICMP_ID", U16Sender),
    Attr(25, "NTA_TCP_WSCALE_ORIG", U8),
    Attr(26, "NTA_TCP_WSCALE_REPL", U8),
    Attr(27, "NTA_HELPER_NAME", HelperName),
    Attr(28, "NTA_LABELS", Labels),
    Attr(29, "NTA_SNAT_IPV6", IPv6),
    Attr(30, "NTA_DNAT_IPV6", IPv6),
    Attr(31, "NTA_SYNPROXY", Synproxy),
    Attr(32, "NTA_ZONE", U16),
])
"""Conntrack message payload (types CT_NEW, CT_UPD, CT_DEL)."""

NTA_EXP = AttrSet("nta_exp_attr", [
    Attr(0, "NTA_EXP_MASTER_IPV4", AddrPair4),
    Attr(1, "NTA_EXP_MASTER_IPV6", AddrPair6),
    Attr(2, "NTA_EXP_MASTER_L4PROTO", U8),
    Attr(3, "NTA_EXP_MASTER_PORT", PortPair),
    Attr(4, "NTA_EXP_EXPECT_IPV4", AddrPair4),
    Attr(5, "NTA_EXP_EXPECT_IPV6", AddrPair6),
    Attr(6, "NTA_EXP_EXPECT_L4PROTO", U8),
    Attr(7, "NTA_EXP_EXPECT_PORT", PortPair),
    Attr(8, "NTA_EXP_MASK_IPV4", AddrPair4),
    Attr(9, "NTA_EXP_MASK_IPV6", AddrPair6),
    Attr(10, "NTA_EXP_MASK_L4PROTO", U8),
    Attr(11, "NTA_EXP_MASK_PORT", PortPair),
    Attr(12, "NTA_EXP_TIMEOUT", U32),
    Attr(13, "NTA_EXP_FLAGS", U32),
    Attr(14, "NTA_EXP_CLASS", U32),
    Attr(15, "NTA_EXP_NAT_IPV4", AddrPair4),
    Attr(16, "NTA_EXP_NAT_PORT", PortPair),
    Attr(17, "NTA_EXP_NAT_L4PROTO", U8),
    Attr(18, "NTA_EXP_NAT_DIR", U32),
    Attr(19, "NTA_EXP_HELPER_NAME", HelperName),
    Attr(20, "NTA_EXP_FN", ExpFn),
])
"""Expectation message payload (types EXP_NEW, EXP_UPD, EXP_DEL)."""

PAYLOADS = {K.NET_T_STATE_CT_NEW: NTA_CT, K.NET_T_STATE_CT_UPD: NTA_CT,
            K.NET_T_STATE_CT_DEL: NTA_CT, K.NET_T_STATE_EXP_NEW: NTA_EXP,
            K.NET_T_STATE_EXP_UPD: NTA_EXP, K.NET_T_STATE_EXP_DEL: NTA_EXP}

# --- whole datagrams through the interpreter ------------------------------------------


def _has_range(ctx) -> bool:
    return K.is_ack_nack_resync(ctx.version_type & 0x0F, ctx.flags)


NtaStream = cs.GreedyRange(cs.Struct(
    "nta_len" / cs.Int16ub,
    "nta_attr" / cs.Int16ub,
    "payload" / cs.Bytes(lambda ctx: ctx.nta_len - 4),
    cs.Padding(lambda ctx: -ctx.nta_len % 4),
))
"""The padded attribute list of a state message."""

Message = cs.Struct(
    "version_type" / cs.Int8ub,
    "flags" / cs.Int8ub,
    "len" / cs.Int16ub,
    "seq" / cs.Int32ub,
    "range" / cs.If(_has_range, cs.Struct("from" / cs.Int32ub, "to" / cs.Int32ub)),
    "attrs" / cs.FixedSized(lambda ctx: ctx.len - (16 if ctx.range is not None else 8), NtaStream),
)
"""One message: header, the ACK/NACK/RESYNC range, then the attributes."""

Datagram = cs.GreedyRange(Message)
"""Messages back to back, as a UDP datagram or a TCP stream carries them."""


def _plain(value):
    if isinstance(value, cs.Container):
        return {k: _plain(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, cs.ListContainer):
        return [_plain(v) for v in value]
    return value


def parse_interpreted(data: bytes) -> list[dict]:
    """Decode a datagram with construct's interpreter (slow; for tests and tooling).

    Each message is ``{"version", "type", "flags", "seq", "from", "to", "attrs"}``,
    attributes as ``(name, value)`` with the values construct parses (addresses as
    ipaddress objects, pairs as dicts)."""
    out = []
    for m in Datagram.parse(data):
        mtype = m.version_type & 0x0F
        aset = PAYLOADS.get(mtype)
        attrs = []
        for raw in m.attrs:
            attr = aset.attrs.get(raw.nta_attr) if aset is not None else None
            if attr is None:
                attrs.append((raw.nta_attr, bytes(raw.payload)))
            else:
                attrs.append((attr.name, _plain(attr.payload.parse(bytes(raw.payload)))))
        out.append({
            "version": m.version_type >> 4, "type": mtype, "flags": m.flags, "seq": m.seq,
            "from": m.range["from"] if m.range is not None else None,
            "to": m.range["to"] if m.range is not None else None,
            "attrs": attrs,
        })
    return out


def build_interpreted(messages: list[dict]) -> bytes:
    """Inverse of :func:`parse_interpreted` (padding written as zeros)."""
    out = bytearray()
    for m in messages:
        aset = PAYLOADS.get(m["type"])
        attrs = []
        for name, value in m["attrs"]:
            if isinstance(name, int):
                atype, payload = name, value
            else:
                attr = aset.by_name[name]
                atype, payload = attr.type, attr.payload.build(value)
            attrs.append(dict(nta_len=4 + len(payload), nta_attr=atype, payload=payload))
        body = NtaStream.build(attrs)
        rng = None if m.get("from") is None else {"from": m["from"], "to": m["to"]}
        out += Message.build(dict(version_type=(m.get("version", 1) << 4) | m["type"],
                                  flags=m["flags"], len=(16 if rng else 8) + len(body),
                                  seq=m["seq"], range=rng, attrs=attrs))
    return bytes(out)


# --- the tables the runtime uses --------------------------------------------------------

def _layout(payload: cs.Construct) -> tuple[str, str | None, int | None]:
    """(kind, struct format of the payload, maximum payload length) of a declaration."""
    if isinstance(payload, Bounded):
        inner = payload.subcon
        kind = "u32array" if isinstance(inner, cs.GreedyRange) else "string"
        return kind, None, payload.max_len
    if payload is AddrPair4:
        return "addr4pair", ">4s4s", None
    if payload is AddrPair6:
        return "addr6pair", ">16s16s", None
    if payload is IPv4:
        return "addr4", ">4s", None
    if payload is IPv6:
        return "addr6", ">16s", None
    if isinstance(payload, cs.FormatField):
        kind = {"B": "u8", "H": "u16", "L": "u32", "I": "u32"}[payload.fmtstr[1:]]
        return kind, payload.fmtstr.replace("L", "I"), None
    if isinstance(payload, cs.Struct):
        fmt = ""
        for sub in payload.subcons:
            inner = sub.subcon if isinstance(sub, cs.Renamed) else sub
            if not isinstance(inner, cs.FormatField) or inner.fmtstr[0] != ">":
                raise TypeError(f"struct payloads hold big-endian integers: {payload!r}")
            fmt += inner.fmtstr[1:].replace("L", "I")
        return "struct", ">" + fmt, None
    raise TypeError(f"cannot derive a layout from {payload!r}")


def attr_table(aset: AttrSet) -> dict[int, tuple]:
    """``{number: (name, kind, payload format, exact nta_len, maximum nta_len)}``.

    Fixed payloads must have exactly ``exact`` bytes with the header (the C receiver's
    ``size``); variable ones at most ``maximum`` (its ``max_size``)."""
    import struct

    rows = {}
    for attr in aset:
        kind, fmt, max_payload = _layout(attr.payload)
        if fmt is not None:
            rows[attr.type] = (attr.name, kind, fmt, 4 + struct.calcsize(fmt), None)
        else:
            rows[attr.type] = (attr.name, kind, None, None, 4 + max_payload)
    return dict(sorted(rows.items()))


def _struct_format(decl: cs.Struct) -> str:
    fmt = ""
    for sub in decl.subcons:
        fmt += sub.subcon.fmtstr[1:].replace("L", "I")
    return ">" + fmt


def compiled_tables() -> dict[str, object]:
    """What ``python -m nfnl.compile`` writes to ``_compiled.py`` (this module is found
    through the ``nfnl.compile`` entry point ``conntrackd-wire``)."""
    return {
        "NETHDR_FMT": _struct_format(NetHdr),
        "NETHDR_ACK_FMT": _struct_format(NetHdrAck),
        "NETATTR_FMT": _struct_format(NetAttr),
        "CT_ATTRS": attr_table(NTA_CT),
        "EXP_ATTRS": attr_table(NTA_EXP),
    }
