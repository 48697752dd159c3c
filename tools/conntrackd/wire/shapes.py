"""Fast decoding of sync message payloads through compiled layouts ("shapes").

A sender emits a handful of attribute layouts (the same attributes in the same order
with the same lengths: "IPv4 TCP with timeout and mark", "IPv6 UDP", ...). The first
payload of a layout is walked and validated attribute by attribute exactly as the C
receiver does (numbers, exact lengths, maxima) and compiled into one ``struct`` format
covering the whole payload, attribute headers and padding skipped; the header bytes are
checked at once by masking the payload read as one integer. A generated builder turns
the unpacked values into the object. Every later payload of that layout costs one
masked compare, one ``unpack_from`` and the builder. The per-attribute formats come
from ``_compiled`` (derived from the construct declarations in :mod:`.schema`), as in
ctnetlink's decoder (:mod:`ctnetlink.decode`). :class:`Decoder` caches the shapes of
one payload kind; :func:`flow_builder` generates builders of
:class:`~ctnetlink.model.Flow` objects with the C receiver's semantics, and
:func:`slots_builder` builders of the per-attribute value slots that
:func:`.codec.parse_attrs` returns (for expectations and for cross-checks).
"""
from __future__ import annotations

import struct

from ctnetlink.decode import _ip, _ip_cache
from ctnetlink.model import DccpInfo, Flow, SctpInfo, SeqAdj, Synproxy, TcpInfo, Tuple

from . import constants as K
from .errors import SyncDecodeError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

_NTA = struct.Struct(">HH")
MAX_SHAPES = 1024
"""Compiled layouts kept per payload kind (the cache starts over beyond that)."""

ICMP_REPLY = {0: 8, 8: 0, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17}
ICMPV6_REPLY = {128: 129, 129: 128, 139: 140, 140: 139}


def _str(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "replace")


def _labels(words: tuple) -> int:
    out = 0
    for i, w in enumerate(words):
        out |= w << (32 * i)
    return out


def table(rows: dict) -> list:
    """Per attribute number: (name, kind, payload format, exact nta_len, max nta_len)."""
    out: list = [None] * (max(rows) + 1)
    for n, row in rows.items():
        out[n] = row
    return out


def layout(buf, start: int, end: int, rows: list, base: int = 0) -> list[tuple[int, int, int]]:
    """Validate the attributes of ``buf[start:end]`` as the C receiver does and return
    ``(number, offset from start, nta_len)`` of each. Attributes are walked while more
    than 4 bytes remain; each needs ``4 <= nta_len <= remaining``, a known number, the
    exact length of a fixed attribute or at most the maximum of a variable one (label
    bitmaps: a non-zero multiple of 4 bytes). Raises :class:`SyncDecodeError`
    (``bad-payload``) at ``base + offset``."""
    n = len(rows)
    off = start
    out = []
    unpack = _NTA.unpack_from
    while end - off > K.NTA_HDR_SIZ:
        ln, atype = unpack(buf, off)
        where = base + off - start
        if ln < K.NTA_HDR_SIZ or ln > end - off:
            raise SyncDecodeError(K.BAD_PAYLOAD, f"attribute length {ln}", where)
        if atype >= n:
            raise SyncDecodeError(K.BAD_PAYLOAD, f"attribute number {atype}", where)
        name, kind, _fmt, exact, maximum = rows[atype]
        if exact is not None:
            if ln != exact:
                raise SyncDecodeError(K.BAD_PAYLOAD, f"{name} of length {ln}, not {exact}", where)
        elif ln > maximum:
            raise SyncDecodeError(K.BAD_PAYLOAD, f"{name} of length {ln} > {maximum}", where)
        elif kind == "u32array" and (ln == K.NTA_HDR_SIZ or (ln - K.NTA_HDR_SIZ) % 4):
            raise SyncDecodeError(K.BAD_PAYLOAD, f"{name} of length {ln}", where)
        out.append((atype, off - start, ln))
        off += (ln + 3) & ~3
    return out


class Slot:
    """Where an attribute's values sit in the unpacked tuple."""

    __slots__ = ("index", "count", "kind", "swap")

    def __init__(self, index: int, count: int, kind: str, swap: bool) -> None:
        self.index = index
        self.count = count
        self.kind = kind
        #: a 16-bit value the C sender wrote in its host order (little-endian): the
        #: struct reads it big-endian and the builder swaps the bytes
        self.swap = swap


class Shape:
    """One compiled payload layout: the struct, the header mask, the builder."""

    __slots__ = ("struct", "unpack_from", "mask", "expected", "build", "slots", "size", "cache")

    def __init__(self, st: struct.Struct, mask: int, expected: int, build, slots: dict) -> None:
        self.struct = st
        self.unpack_from = st.unpack_from
        #: the payload read as a little-endian integer, masked with ``mask`` (the
        #: attribute header bytes), equals ``expected`` exactly for this layout
        self.mask = mask
        self.expected = expected
        self.build = build
        #: attribute number -> :class:`Slot` (the last occurrence of a repeated one)
        self.slots = slots
        self.size = st.size
        #: per-shape products of other modules (e.g. ctnetlink request plans)
        self.cache: dict = {}


def compile_shape(buf, start: int, end: int, rows: list, make_builder, base: int = 0) -> Shape:
    """Compile the layout of the payload ``buf[start:end]`` (raises on invalid input)."""
    attrs = layout(buf, start, end, rows, base)
    total = end - start
    fmt = [">"]
    mask = bytearray(total)
    slots: dict[int, Slot] = {}
    index = 0
    pos = 0
    for atype, aoff, ln in attrs:
        fmt.append("4x")
        mask[pos:pos + 4] = b"\xff\xff\xff\xff"
        size = ln - 4
        _name, kind, afmt, _exact, _max = rows[atype]
        swap = False
        if afmt is not None:
            code = afmt[1:]
            swap = afmt[0] == "<"
            count = len(struct.unpack(">" + code, bytes(size)))
        elif kind == "string":
            code, count = f"{size}s", 1
        else:  # u32array
            code, count = f"{size // 4}I", size // 4
        fmt.append(code)
        slots[atype] = Slot(index, count, kind, swap)
        index += count
        padded = min(aoff + ((ln + 3) & ~3), total)
        pos = aoff + ln
        if padded > pos:
            fmt.append(f"{padded - pos}x")
        pos = padded
    if total > pos:
        fmt.append(f"{total - pos}x")
    st = struct.Struct("".join(fmt))
    if st.size != total:  # pragma: no cover - layout() guarantees it
        raise SyncDecodeError(K.BAD_PAYLOAD, "attribute layout does not cover the payload", base)
    imask = int.from_bytes(mask, "little")
    expected = int.from_bytes(buf[start:end], "little") & imask
    return Shape(st, imask, expected, _builder(make_builder, slots), slots)


_builders: dict[tuple, Callable] = {}


def _builder(make_builder, slots: dict) -> Callable:
    """The generated builder for these value positions, shared by the layouts that
    differ only in what the builder ignores (the lengths of names, the padding)."""
    key = (make_builder, tuple((a, s.index, s.count, s.kind, s.swap) for a, s in slots.items()))
    fn = _builders.get(key)
    if fn is None:
        if len(_builders) >= MAX_SHAPES:
            _builders.clear()
        fn = _builders[key] = make_builder(slots)
    return fn


class Decoder:
    """Decodes payloads of one kind (conntrack or expectation attributes), caching the
    compiled shapes by payload length."""

    def __init__(self, rows: dict, make_builder: Callable[[dict], Callable]) -> None:
        self.rows = table(rows)
        self.make_builder = make_builder
        self._shapes: dict[int, list[Shape]] = {}
        self._count = 0

    def shape(self, buf, start: int, end: int, base: int = 0) -> Shape:
        """The (cached or newly compiled) shape of ``buf[start:end]``."""
        cands = self._shapes.get(end - start)
        if cands:
            key = int.from_bytes(buf[start:end], "little")
            for sh in cands:
                if key & sh.mask == sh.expected:
                    return sh
        sh = compile_shape(buf, start, end, self.rows, self.make_builder, base)
        if self._count >= MAX_SHAPES:
            self._shapes.clear()
            self._count = 0
        self._shapes.setdefault(end - start, []).append(sh)
        self._count += 1
        return sh

    def decode(self, buf, start: int, end: int, base: int = 0):
        """The object the payload ``buf[start:end]`` describes."""
        sh = self.shape(buf, start, end, base)
        return sh.build(sh.unpack_from(buf, start))

    def values(self, buf, start: int, end: int, base: int = 0) -> tuple[Shape, tuple]:
        """(shape, unpacked values) of a payload, without building the object."""
        sh = self.shape(buf, start, end, base)
        return sh, sh.unpack_from(buf, start)


# --- builders -----------------------------------------------------------------------------

def _swap(expr: str) -> str:
    return f"((({expr}) & 255) << 8 | ({expr}) >> 8)"


def _value(s: Slot, k: int = 0) -> str:
    expr = f"v[{s.index + k}]"
    return _swap(expr) if s.swap else expr


def _compile(lines: list[str], ns: dict):
    exec("\n".join(lines) + "\n", ns)  # noqa: S102 - generated from the schema tables
    return ns["build"]


def slots_builder(slots: dict, final: Callable[[list], Any] | None = None, size: int = 33):
    """A builder returning the per-attribute value slots of :func:`.codec.parse_attrs`
    (tuples of values, ``str`` for names, word tuples for labels), passed through
    ``final`` if given (e.g. :func:`.codec.expect_from_attrs`)."""
    lines = ["def build(v):", f"    s = [None] * {size}"]
    for atype, s in slots.items():
        if s.kind == "string":
            expr = f"_str(v[{s.index}])"
        elif s.kind == "u32array":
            expr = f"v[{s.index}:{s.index + s.count}]"
        else:
            expr = "(" + "".join(_value(s, k) + ", " for k in range(s.count)) + ")"
        lines.append(f"    s[{atype}] = {expr}")
    lines.append("    return _final(s)" if final is not None else "    return s")
    return _compile(lines, {"_str": _str, "_final": final})


def _new_record(L: list[str], var: str, cls: type, fields: dict[str, str], indent: str = "    ") -> None:
    """Lines creating ``var`` as an instance of the model class ``cls`` with every field
    set (inline: no constructor call): a record (an immutable tuple) from its fields in
    order, a container by assigning each storage slot."""
    if issubclass(cls, tuple):
        args = ", ".join(fields.get(name, "None") for name in cls._fields)
        L.append(f"{indent}{var} = _tn(_{cls.__name__}, ({args},))")
        return
    L.append(f"{indent}{var} = _new(_{cls.__name__})")
    for name, slot in zip(cls._fields, cls.__slots__):
        L.append(f"{indent}{var}.{slot} = {fields.get(name, 'None')}")


def flow_builder(slots: dict):
    """A builder of the :class:`Flow` a conntrack payload describes, with the C
    receiver's semantics (see :func:`.codec.flow_from_attrs`, its reference version):
    the reply tuple is the inverted original with the NAT attributes applied."""
    has = slots.__contains__

    def val(a: int, k: int = 0, default: str = "None") -> str:
        return _value(slots[a], k) if has(a) else default

    def ip(a: int, k: int = 0) -> str:
        x = f"v[{slots[a].index + k}]"
        return f"(_ipc({x}) or _ip({x}))"

    L = ["def build(v):"]
    addr = 1 if has(1) else 0 if has(0) else None
    if addr is not None:
        family = 10 if addr == 1 else 2
        L.append(f"    src = {ip(addr)}; dst = {ip(addr, 1)}")
    else:
        family = None
        L.append("    src = dst = None")
    L.append(f"    proto = {val(2)}")
    L.append(f"    sport = {val(3, 0)}; dport = {val(3, 1)}")
    L.append(f"    itype = {val(22)}; icode = {val(23)}; iid = {val(24)}")
    tuple_fields = {"src": "src", "dst": "dst", "proto": "proto", "sport": "sport",
                    "dport": "dport", "icmp_type": "itype", "icmp_code": "icode",
                    "icmp_id": "iid"}
    _new_record(L, "orig", Tuple, tuple_fields)
    rsrc = ip(30) if has(30) else ip(13) if has(13) else "dst"
    rdst = ip(29) if has(29) else ip(12) if has(12) else "src"
    # ICMP "port translation" is meaningless: the attribute values are ignored
    rdport = f"({val(14)} if proto != 1 and proto != 58 else sport)" if has(14) else "sport"
    rsport = f"({val(15)} if proto != 1 and proto != 58 else dport)" if has(15) else "dport"
    ritype = "(_I6 if proto == 58 else _I4).get(itype)" if has(22) else "None"
    _new_record(L, "reply", Tuple, {**tuple_fields, "src": rsrc, "dst": rdst, "sport": rsport,
                                    "dport": rdport, "icmp_type": ritype})
    fields: dict[str, str] = {"family": repr(family), "orig": "orig", "reply": "reply",
                              "status": val(5), "timeout": val(6), "mark": val(7),
                              "zone": val(32)}
    if has(4) or has(25) or has(26):
        _new_record(L, "tcp", TcpInfo, {"state": val(4), "wscale_orig": val(25),
                                        "wscale_reply": val(26)})
        fields["tcp"] = "tcp"
    if has(17) or has(18) or has(19):
        _new_record(L, "sctp", SctpInfo, {"state": val(17), "vtag_orig": val(18),
                                          "vtag_reply": val(19)})
        fields["sctp"] = "sctp"
    if has(20) or has(21):
        _new_record(L, "dccp", DccpInfo, {"state": val(20), "role": val(21)})
        fields["dccp"] = "dccp"
    if has(8) or has(9) or has(10) or has(11):
        m = 9 if has(9) else 8 if has(8) else None
        msrc, mdst = (ip(m), ip(m, 1)) if m is not None else ("None", "None")
        _new_record(L, "master", Tuple, {"src": msrc, "dst": mdst, "proto": val(10),
                                         "sport": val(11, 0), "dport": val(11, 1)})
        fields["master"] = "master"
    if has(16):
        for var, k in (("adj_o", 0), ("adj_r", 3)):
            _new_record(L, var, SeqAdj, {"correction_pos": val(16, k),
                                         "offset_before": val(16, k + 1),
                                         "offset_after": val(16, k + 2)})
        fields["seq_adj_orig"] = "adj_o"
        fields["seq_adj_reply"] = "adj_r"
    if has(27):
        fields["helper"] = f"_str(v[{slots[27].index}])"
    if has(28):
        s = slots[28]
        fields["labels"] = f"_labels(v[{s.index}:{s.index + s.count}])"
        fields["labels_size"] = str(4 * s.count)
    if has(31):  # wire order: its, isn, tsoff
        _new_record(L, "syn", Synproxy, {"its": val(31, 0), "isn": val(31, 1),
                                         "tsoff": val(31, 2)})
        fields["synproxy"] = "syn"
    _new_record(L, "f", Flow, fields)
    L.append("    return f")
    ns = {"_ip": _ip, "_ipc": _ip_cache.get, "_str": _str, "_labels": _labels,
          "_I4": ICMP_REPLY, "_I6": ICMPV6_REPLY, "_new": object.__new__, "_tn": tuple.__new__}
    for cls in (Tuple, Flow, TcpInfo, SctpInfo, DccpInfo, SeqAdj, Synproxy):
        ns["_" + cls.__name__] = cls
    return _compile(L, ns)
