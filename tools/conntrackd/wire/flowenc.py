"""Generated encoders of conntrack payloads, one per flow kind.

The C sender's ``ct2msg`` writes a fixed sequence of attributes whose presence depends
on the address family, the layer-4 protocol, two options (``TCPWindowTracking``,
``CommitTimeout``) and which optional fields the flow has. For every *kind* (address
class, protocol, the two options) a function is generated from the compiled attribute
table (``_compiled``, derived from :mod:`.schema`): the mandatory attributes are one
constant ``struct`` format, each optional attribute appends its format piece and
values, and the whole message (header included) is packed by a single cached
``struct.Struct``. :func:`encoder` returns the function of a kind;
:func:`.codec.encode_flow` and :func:`.codec.flow_message` use it. The reference
implementation it must equal byte for byte is :func:`.codec.encode_flow_reference`.
"""
from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

from . import _compiled as C

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

_BY_NAME = {row[0]: (num, row) for num, row in C.CT_ATTRS.items()}
MAX_FORMATS = 4096
PORT_GROUPS = {6: "tcp", 17: "udp", 132: "sctp", 33: "dccp", 1: "icmp", 58: "icmp"}


def _piece(name: str, v4_int: bool = False) -> tuple[str, tuple[int, int], bool]:
    """(struct format piece, header values, little-endian u16?) of a fixed attribute;
    with ``v4_int`` IPv4 addresses are packed from their integer value (same bytes)."""
    num, (_n, kind, fmt, exact, _max) = _BY_NAME[name]
    pad = -exact % 4
    code = fmt[1:]
    if v4_int and kind in ("addr4pair", "addr4"):
        code = code.replace("4s", "I")
    return f"HH{code}" + (f"{pad}x" if pad else ""), (exact, num), fmt[0] == "<"


_ADDR4, _ADDR6 = IPv4Address("1.2.3.4"), IPv6Address("2001:db8::1")
V4_INT = (getattr(_ADDR4, "_ip", None) == 0x01020304
          and getattr(_ADDR6, "_ip", None) == int.from_bytes(_ADDR6.packed, "big"))
"""ipaddress objects keep their value in ``_ip`` (checked at import): reading it saves
the ``packed`` property and the slow ``__eq__``."""
_V4 = "._ip" if V4_INT else ".packed"
_V6 = "._ip.to_bytes(16, 'big')" if V4_INT else ".packed"
_EQ = "._ip" if V4_INT else ""


def _put(name: str, *exprs: str, indent: str = "    ") -> str:
    """Generated lines appending attribute ``name`` with payload values ``exprs``."""
    piece, (exact, num), swap = _piece(name, V4_INT)
    if swap:
        (x,) = exprs
        return (f"{indent}_x = {x}\n"
                f"{indent}fmt += {piece!r}; a += ({exact}, {num}, (_x & 255) << 8 | _x >> 8)\n")
    return f"{indent}fmt += {piece!r}; a += ({exact}, {num}, {', '.join(exprs)})\n"


def _const(names_exprs: list[tuple[str, tuple[str, ...]]]) -> tuple[str, str]:
    """The format and argument list of attributes every flow of a kind has."""
    fmt, args = "", []
    for name, exprs in names_exprs:
        piece, hdr, swap = _piece(name, V4_INT)
        assert not swap
        fmt += piece
        args.extend(map(str, hdr))
        args.extend(exprs)
    return fmt, ", ".join(args)


def _variable(num: int, payload: bytes) -> tuple[str, tuple]:
    """Format piece and values of a variable-length attribute (helper name, labels)."""
    ln = 4 + len(payload)
    pad = -ln % 4
    return f"HH{len(payload)}s" + (f"{pad}x" if pad else ""), (ln, num, payload)


def labels_payload(labels: int, size: int | None = None) -> bytes:
    """NTA_LABELS: ``maxbit / 32 + 1`` big-endian words, where ``maxbit`` is the last bit of
    the kernel's bitmap (``size`` bytes; without a size, the highest set bit)."""
    maxbit = size * 8 - 1 if size else labels.bit_length() - 1
    words = maxbit // 32 + 1
    return struct.pack(f">{words}I", *((labels >> (32 * i)) & 0xFFFFFFFF for i in range(words)))


def _master(m) -> tuple[str, tuple]:
    fmt, args = "", []
    for name, exprs in ((("NTA_MASTER_IPV4" if m.src.version == 4 else "NTA_MASTER_IPV6"),
                         (m.src.packed, m.dst.packed)),
                        ("NTA_MASTER_L4PROTO", (m.proto or 0,))):
        piece, hdr, _ = _piece(name)
        fmt += piece
        args += [*hdr, *exprs]
    if m.sport is not None and m.dport is not None:
        piece, hdr, _ = _piece("NTA_MASTER_PORT")
        fmt += piece
        args += [*hdr, m.sport, m.dport]
    return fmt, tuple(args)


def _source(version: int, group: str, window_tracking: bool, commit_timeout: bool) -> str:
    """The source of the encoder of one kind (``version`` 0: no addresses)."""
    const: list = []
    if version == 4:
        const.append(("NTA_IPV4", (f"o.src{_V4}", f"o.dst{_V4}")))
    elif version == 6:
        const.append(("NTA_IPV6", (f"o.src{_V6}", f"o.dst{_V6}")))
    const.append(("NTA_STATUS", ("st or 0",)))
    const.append(("NTA_L4PROTO", ("o.proto or 0",)))
    ports = group in ("tcp", "udp", "sctp", "dccp")
    if ports:
        const.append(("NTA_PORT", ("o.sport or 0", "o.dport or 0")))
    fmt, args = _const(const)
    src = ["def enc(f, vt, flags, seq):\n",
           "    o = f.orig\n    st = f.status_bits\n",
           f"    fmt = {fmt!r}\n    a = [{args}]\n"]
    if group == "tcp":
        src.append("    p = f.tcp\n    if p is not None and p.state is not None:\n")
        src.append(_put("NTA_TCP_STATE", "p.state", indent="        "))
        if window_tracking:
            src.append(_put("NTA_TCP_WSCALE_ORIG", "p.wscale_orig or 0", indent="        "))
            src.append(_put("NTA_TCP_WSCALE_REPL", "p.wscale_reply or 0", indent="        "))
    elif group == "icmp":
        src.append("    if o.icmp_type is not None:\n")
        src.append(_put("NTA_ICMP_TYPE", "o.icmp_type", indent="        "))
        src.append(_put("NTA_ICMP_CODE", "o.icmp_code or 0", indent="        "))
        src.append(_put("NTA_ICMP_ID", "o.icmp_id or 0", indent="        "))
    elif group == "sctp":
        src.append("    p = f.sctp\n    if p is not None and p.state is not None:\n")
        src.append(_put("NTA_SCTP_STATE", "p.state", indent="        "))
        src.append(_put("NTA_SCTP_VTAG_ORIG", "p.vtag_orig or 0", indent="        "))
        src.append(_put("NTA_SCTP_VTAG_REPL", "p.vtag_reply or 0", indent="        "))
    elif group == "dccp":
        src.append("    p = f.dccp\n    if p is not None and p.state is not None:\n")
        src.append(_put("NTA_DCCP_STATE", "p.state", indent="        "))
        src.append(_put("NTA_DCCP_ROLE", "p.role or 0", indent="        "))
    if not commit_timeout:
        src.append("    x = f.timeout\n    if x is not None:\n")
        src.append(_put("NTA_TIMEOUT", "x", indent="        "))
    src.append("    x = f.mark\n    if x is not None:\n")
    src.append(_put("NTA_MARK", "x", indent="        "))
    src.append("    x = f.master\n    if x is not None and x.src is not None:\n"
               "        p, x = _master(x); fmt += p; a += x\n")
    # NAT as libnetfilter_conntrack detects it (NFCT_GOPT_IS_SNAT/DNAT/SPAT/DPAT)
    v6 = version == 6
    src.append("    r = f.reply\n    if r is not None:\n"
               "        s_ok = st is None or st & 0x80\n        d_ok = st is None or st & 0x100\n"
               f"        if s_ok and r.dst is not None and r.dst{_EQ} != o.src{_EQ}:\n")
    src.append(_put("NTA_SNAT_IPV6" if v6 else "NTA_SNAT_IPV4",
                    f"r.dst{_V6}" if v6 else f"r.dst{_V4}", indent="            "))
    src.append(f"        if d_ok and r.src is not None and r.src{_EQ} != o.dst{_EQ}:\n")
    src.append(_put("NTA_DNAT_IPV6" if v6 else "NTA_DNAT_IPV4",
                    f"r.src{_V6}" if v6 else f"r.src{_V4}", indent="            "))
    if group == "icmp":  # the C sender holds no layer-4 reply part of ICMP: it reads 0
        src.append("        if s_ok and o.icmp_id:\n")
        src.append(_put("NTA_SPAT_PORT", "0", indent="            "))
        src.append("        if d_ok and (o.icmp_type or o.icmp_code):\n")
        src.append(_put("NTA_DPAT_PORT", "0", indent="            "))
    else:
        src.append("        x = r.dport or 0\n        if s_ok and x != (o.sport or 0):\n")
        src.append(_put("NTA_SPAT_PORT", "x", indent="            "))
        src.append("        x = r.sport or 0\n        if d_ok and x != (o.dport or 0):\n")
        src.append(_put("NTA_DPAT_PORT", "x", indent="            "))
    src.append("    p = f.seq_adj_orig; x = f.seq_adj_reply\n"
               "    if p is not None and x is not None:\n"
               "        six = (p.correction_pos, p.offset_before, p.offset_after,\n"
               "               x.correction_pos, x.offset_before, x.offset_after)\n"
               "        if None not in six:\n")
    piece, (exact, num), _ = _piece("NTA_NAT_SEQ_ADJ")
    src.append(f"            fmt += {piece!r}; a += ({exact}, {num}, *six)\n")
    src.append("    x = f.helper\n    if x is not None:\n"
               "        p, x = _variable(27, x.encode() + b'\\0'); fmt += p; a += x\n")
    src.append("    x = f.labels\n    if x:\n"
               "        p, x = _variable(28, _labels(x, f.labels_size)); fmt += p; a += x\n")
    src.append("    p = f.synproxy\n"
               "    if p is not None and p.isn is not None and p.its is not None "
               "and p.tsoff is not None:\n")
    src.append(_put("NTA_SYNPROXY", "p.its", "p.isn", "p.tsoff", indent="        "))
    src.append("    x = f.zone\n    if x is not None:\n")
    src.append(_put("NTA_ZONE", "x", indent="        "))
    src.append("    if vt is None:\n"
               "        S = _SB.get(fmt)\n        if S is None:\n            S = _body(fmt)\n"
               "        return S.pack(*a)\n"
               "    S = _SH.get(fmt)\n    if S is None:\n        S = _whole(fmt)\n"
               "    return S.pack(vt, flags, S.size, seq, *a)\n")
    return "".join(src)


_SB: dict[str, struct.Struct] = {}
_SH: dict[str, struct.Struct] = {}


def _body(fmt: str) -> struct.Struct:
    if len(_SB) >= MAX_FORMATS:
        _SB.clear()
    st = _SB[fmt] = struct.Struct(">" + fmt)
    return st


def _whole(fmt: str) -> struct.Struct:
    if len(_SH) >= MAX_FORMATS:
        _SH.clear()
    st = _SH[fmt] = struct.Struct(">BBHI" + fmt)
    return st


_NS = {"_master": _master, "_variable": _variable, "_labels": labels_payload, "_SB": _SB,
       "_SH": _SH, "_body": _body, "_whole": _whole}

# --- the common flows: one function and one struct per variant ------------------------------
#
# A variant is the set of optional attributes a flow has among the frequent ones (bit
# values below), plus the lengths of the helper name and label payload. Flows with a
# master or sequence adjustment take the general encoder of their kind (:func:`_source`).
# The variant functions are generated from value expressions (:data:`FLOW_VALUES`):
# :mod:`.ctsync` generates them over the values of a ctnetlink message instead.

STATE, TIMEOUT, MARK, SNAT, DNAT, SPAT, DPAT, HELPER, LABELS, SYNPROXY, ZONE = (
    1 << i for i in range(11))
LENGTHS = 1 << 11
"""Variant keys above the bits: the helper name's length (bits 11-15) and the label
payload's length (from bit 16)."""

FLOW_ARGS = "o, r, st, p, t, m, sp, z, rd, rs, h, lb"
"""The arguments of a variant function generated for Flow objects: ``o`` orig, ``r``
reply, ``st`` status, ``p`` protocol info, ``t`` timeout, ``m`` mark, ``sp`` synproxy,
``z`` zone, ``rd``/``rs`` the reply ports, ``h`` the helper name (with its NUL), ``lb``
the label payload."""


def flow_values(version: int) -> dict[str, str]:
    """Value expressions over :data:`FLOW_ARGS` (addresses as the ints of ``_ip`` for
    IPv4 when :data:`V4_INT`, else as bytes)."""
    addr = _V6 if version == 6 else _V4
    return {"src": f"o.src{addr}", "dst": f"o.dst{addr}", "status": "st or 0",
            "proto": "o.proto or 0", "sport": "o.sport or 0", "dport": "o.dport or 0",
            "state": "p.state", "wscale_orig": "p.wscale_orig or 0",
            "wscale_reply": "p.wscale_reply or 0", "itype": "o.icmp_type",
            "icode": "o.icmp_code or 0", "iid": "(o.icmp_id or 0)",
            "vtag_orig": "p.vtag_orig or 0", "vtag_reply": "p.vtag_reply or 0",
            "role": "p.role or 0", "timeout": "t", "mark": "m", "snat": f"r.dst{addr}",
            "dnat": f"r.src{addr}", "spat": "rd", "dpat": "rs", "helper": "h",
            "labels": "lb", "its": "sp.its", "isn": "sp.isn", "tsoff": "sp.tsoff",
            "zone": "z"}


def _variant_attrs(version: int, group: str, wt: bool, bits: int,
                   x: dict[str, str]) -> list[tuple[str, tuple]]:
    """(attribute, value expressions) of a variant, in ``ct2msg``'s order."""
    out: list[tuple[str, tuple]] = []
    v6 = version == 6
    out.append(("NTA_IPV6" if v6 else "NTA_IPV4", (x["src"], x["dst"])))
    out.append(("NTA_STATUS", (x["status"],)))
    out.append(("NTA_L4PROTO", (x["proto"],)))
    if group in ("tcp", "udp", "sctp", "dccp"):
        out.append(("NTA_PORT", (x["sport"], x["dport"])))
    if bits & STATE:
        if group == "tcp":
            out.append(("NTA_TCP_STATE", (x["state"],)))
            if wt:
                out.append(("NTA_TCP_WSCALE_ORIG", (x["wscale_orig"],)))
                out.append(("NTA_TCP_WSCALE_REPL", (x["wscale_reply"],)))
        elif group == "icmp":
            out.append(("NTA_ICMP_TYPE", (x["itype"],)))
            out.append(("NTA_ICMP_CODE", (x["icode"],)))
            out.append(("NTA_ICMP_ID", (x["iid"],)))
        elif group == "sctp":
            out.append(("NTA_SCTP_STATE", (x["state"],)))
            out.append(("NTA_SCTP_VTAG_ORIG", (x["vtag_orig"],)))
            out.append(("NTA_SCTP_VTAG_REPL", (x["vtag_reply"],)))
        elif group == "dccp":
            out.append(("NTA_DCCP_STATE", (x["state"],)))
            out.append(("NTA_DCCP_ROLE", (x["role"],)))
    if bits & TIMEOUT:
        out.append(("NTA_TIMEOUT", (x["timeout"],)))
    if bits & MARK:
        out.append(("NTA_MARK", (x["mark"],)))
    if bits & SNAT:
        out.append(("NTA_SNAT_IPV6" if v6 else "NTA_SNAT_IPV4", (x["snat"],)))
    if bits & DNAT:
        out.append(("NTA_DNAT_IPV6" if v6 else "NTA_DNAT_IPV4", (x["dnat"],)))
    if bits & SPAT:
        out.append(("NTA_SPAT_PORT", (x["spat"],)))
    if bits & DPAT:
        out.append(("NTA_DPAT_PORT", (x["dpat"],)))
    if bits & HELPER:
        out.append(("NTA_HELPER_NAME", (x["helper"],)))
    if bits & LABELS:
        out.append(("NTA_LABELS", (x["labels"],)))
    if bits & SYNPROXY:
        out.append(("NTA_SYNPROXY", (x["its"], x["isn"], x["tsoff"])))
    if bits & ZONE:
        out.append(("NTA_ZONE", (x["zone"],)))
    return out


def variant_parts(version: int, group: str, wt: bool, key: int, x: dict[str, str],
                  v4_int: bool = V4_INT) -> tuple[str, str, int]:
    """(body format, argument expressions, message size) of the variant ``key`` (bits and
    lengths) with values from the expressions ``x``: the message is
    ``struct.pack(">BBHI" + format, vt, flags, size, seq, <arguments>)``."""
    fmt, out = "", []
    lengths = {"NTA_HELPER_NAME": (key >> 11) & 0x1F, "NTA_LABELS": key >> 16}
    for name, exprs in _variant_attrs(version, group, wt, key & (LENGTHS - 1), x):
        if name in lengths:
            n = lengths[name]
            num = _BY_NAME[name][0]
            fmt += f"I{n}s" + "x" * (-n % 4)
            out += [str((4 + n) << 16 | num), exprs[0]]
            continue
        piece, (exact, num), swap = _piece(name, v4_int)
        fmt += "I" + piece[2:]  # the attribute header as one word
        out.append(str(exact << 16 | num))
        for e in exprs:
            out.append(f"(({e}) & 255) << 8 | ({e}) >> 8" if swap else e)
    return fmt, ", ".join(out), struct.calcsize(">BBHI" + fmt)


def variant_source(version: int, group: str, wt: bool, key: int, x: dict[str, str],
                   args: str = FLOW_ARGS, v4_int: bool = V4_INT) -> tuple[str, str]:
    """(source of ``var(vt, flags, seq, <args>)``, body format) of the variant ``key``
    (bits and lengths) with values from the expressions ``x``."""
    fmt, body, size = variant_parts(version, group, wt, key, x, v4_int)
    return (f"def var(vt, flags, seq, {args}):\n"
            f"    if vt is None:\n        return _B({body})\n"
            f"    return _W(vt, flags, {size}, seq, {body})\n"), fmt


def compile_variant(source: str, fmt: str) -> Callable:
    ns = {"_B": struct.Struct(">" + fmt).pack, "_W": struct.Struct(">BBHI" + fmt).pack}
    exec(source, ns)  # noqa: S102 - generated from the schema tables
    return ns["var"]


def _dispatch_source(version: int, group: str, wt: bool, ct: bool) -> str:
    """The source of the kind's ``enc(f, vt, flags, seq)``: it finds the variant of a
    flow and calls its function (generated on first use)."""
    eq = _EQ
    src = ["def enc(f, vt, flags, seq):\n",
           "    if f.master is not None or f.seq_adj_orig is not None:\n"
           "        return _general(f, vt, flags, seq)\n",
           "    o = f.orig; st = f.status_bits; r = f.reply; bits = 0; rd = rs = 0; h = lb = None\n"]
    if group in ("tcp", "sctp", "dccp"):
        src.append(f"    p = f.{group}\n    if p is not None and p.state is not None:\n"
                   "        bits = 1\n")
    else:
        src.append("    p = None\n")
        if group == "icmp":
            src.append("    if o.icmp_type is not None:\n        bits = 1\n")
    if ct:
        src.append("    t = None\n")
    else:
        src.append("    t = f.timeout\n    if t is not None:\n        bits |= 2\n")
    src.append("    m = f.mark\n    if m is not None:\n        bits |= 4\n"
               "    if r is not None:\n"
               "        s_ok = st is None or st & 0x80\n        d_ok = st is None or st & 0x100\n"
               f"        if s_ok and r.dst is not None and r.dst{eq} != o.src{eq}:\n"
               "            bits |= 8\n"
               f"        if d_ok and r.src is not None and r.src{eq} != o.dst{eq}:\n"
               "            bits |= 16\n")
    if group == "icmp":  # the C sender holds no layer-4 reply part of ICMP: it reads 0
        src.append("        if s_ok and o.icmp_id:\n            bits |= 32\n"
                   "        if d_ok and (o.icmp_type or o.icmp_code):\n            bits |= 64\n")
    else:
        src.append("        rd = r.dport or 0\n        if s_ok and rd != (o.sport or 0):\n"
                   "            bits |= 32\n"
                   "        rs = r.sport or 0\n        if d_ok and rs != (o.dport or 0):\n"
                   "            bits |= 64\n")
    src.append("    x = f.helper\n    if x is not None:\n"
               "        h = x.encode() + b'\\0'\n"
               "        if len(h) > 31:\n            return _general(f, vt, flags, seq)\n"
               "        bits |= 128 | len(h) << 11\n"
               "    x = f.labels\n    if x:\n        lb = _labels(x, f.labels_size)\n"
               "        bits |= 256 | len(lb) << 16\n"
               "    sp = f.synproxy\n"
               "    if sp is not None and sp.isn is not None and sp.its is not None "
               "and sp.tsoff is not None:\n        bits |= 512\n"
               "    z = f.zone\n    if z is not None:\n        bits |= 1024\n"
               "    fn = _V(bits)\n    if fn is None:\n        fn = _variant(bits)\n"
               "    return fn(vt, flags, seq, o, r, st, p, t, m, sp, z, rd, rs, h, lb)\n")
    return "".join(src)


def _kind(version: int, group: str, wt: bool, ct: bool) -> Callable:
    """The encoder of a kind: the variant dispatcher, or the general encoder for flows
    without addresses."""
    ns = dict(_NS)
    exec(_source(version, group, wt, ct), ns)  # noqa: S102 - generated from the schema tables
    general = ns["enc"]
    if not version:
        return general
    variants: dict[int, Callable] = {}
    values = flow_values(version)

    def make_variant(key: int) -> Callable:
        fn = compile_variant(*variant_source(version, group, wt, key, values))
        if len(variants) >= MAX_FORMATS:
            variants.clear()
        variants[key] = fn
        return fn

    dns = {"_general": general, "_V": variants.get, "_variant": make_variant,
           "_labels": labels_payload}
    exec(_dispatch_source(version, group, wt, ct), dns)  # noqa: S102 - generated
    return dns["enc"]


_generated: dict[tuple, Callable] = {}
_kinds: dict[tuple, Callable] = {}
_VERSIONS = {IPv4Address: 4, IPv6Address: 6, type(None): 0}


def encoder(addr_class: type, proto: int | None, window_tracking: bool,
            commit_timeout: bool) -> Callable:
    """The encoder ``enc(flow, vt, flags, seq)`` of a flow kind: with ``vt`` None it
    returns the attributes only, else the whole message with header byte ``vt``."""
    key = (addr_class, proto, window_tracking, commit_timeout)
    fn = _kinds.get(key)
    if fn is None:
        gen = (_VERSIONS.get(addr_class, 4), PORT_GROUPS.get(proto, "other"),
               window_tracking, commit_timeout)
        fn = _generated.get(gen)
        if fn is None:
            fn = _generated[gen] = _kind(*gen)
        if len(_kinds) < MAX_FORMATS:
            _kinds[key] = fn
    return fn


_kinds_get = _kinds.get


def encode(flow, vt: int | None = None, flags: int = 0, seq: int = 0, window_tracking: bool = False,
           commit_timeout: bool = False) -> bytes:
    """The conntrack payload (``vt`` None) or whole message of ``flow``."""
    o = flow.orig
    fn = _kinds_get((o.src.__class__, o.proto, window_tracking, commit_timeout))
    if fn is None:
        fn = encoder(o.src.__class__, o.proto, window_tracking, commit_timeout)
    return fn(flow, vt, flags, seq)
