"""Compact cache entries: a ctnetlink conntrack message <-> (key, attribute bytes).

The daemon keeps each cached flow as two ``bytes`` objects, not as Python objects: a
compact *key* made of the original tuple's field values (plus the zone) and the flow's
other top-level ctnetlink attributes exactly as the kernel encoded them. The original
tuple is rebuilt from the key through a *template*: the tuple's encoding with its field
values cut out, learnt the first time a layout is seen (the kernel uses a handful: IPv4
or IPv6 with ports, ICMP id/type/code, ...). The reply tuple is dropped when it is the
mirror of the original one (addresses and ports swapped, as for every flow without NAT)
and rebuilt the same way. :func:`parse` turns a message body into a :class:`Parsed`
(key and attributes by type), :func:`message` turns a key and stored attributes back
into a complete message that the library's decoders and formatters take as is.
"""
from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterable

CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_STATUS = 3
CTA_PROTOINFO = 4
CTA_TIMEOUT = 7
CTA_MARK = 8
CTA_COUNTERS_ORIG = 9
CTA_COUNTERS_REPLY = 10
CTA_USE = 11
CTA_ID = 12
CTA_ZONE = 18
NLA_F_NESTED = 0x8000
TYPE_MASK = 0x3FFF

_HH = struct.Struct("=HH")
_NLHDR = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")
_ZONE = struct.Struct(">H")

# leaf roles inside a tuple: which fields swap between the directions
_IP_LEAVES = {1: "src", 2: "dst", 3: "src", 4: "dst"}       # CTA_IP_V4_SRC/DST, V6_SRC/DST
_PROTO_LEAVES = {2: "sport", 3: "dport"}                     # CTA_PROTO_SRC/DST_PORT
_PROTO_NUM = 1
MAX_TEMPLATES = 250


class DecodeError(ValueError):
    """A message whose attributes do not add up (never raised for valid kernel input)."""


class Template:
    """One tuple layout: the constant bytes between the field values, and how to
    unpack the values (``struct``), rebuild the tuple, mirror it and read it."""

    __slots__ = ("tid", "skeleton", "mask", "expected", "struct", "size", "segments", "mirror",
                 "family", "proto_index", "src_index", "dst_index", "nested")

    def __init__(self, tid: int, payload: bytes, leaves: list[tuple[int, int, str]],
                 nested: bool) -> None:
        self.tid = tid
        self.nested = nested
        self.size = len(payload)
        fmt = [">"]
        mask = bytearray(b"\xff" * len(payload))
        segments: list[tuple[bool, object]] = []  # (is_field, const bytes | field index)
        pos = 0
        roles: list[str] = []
        for off, size, role in leaves:
            if off > pos:
                fmt.append(f"{off - pos}x")
                segments.append((False, bytes(payload[pos:off])))
            fmt.append(f"{size}s")
            segments.append((True, len(roles)))
            roles.append(role)
            mask[off:off + size] = bytes(size)
            pos = off + size
        if pos < len(payload):
            fmt.append(f"{len(payload) - pos}x")
            segments.append((False, bytes(payload[pos:])))
        self.struct = struct.Struct("".join(fmt))
        self.segments = segments
        self.mask = int.from_bytes(mask, "little")
        self.expected = int.from_bytes(payload, "little") & self.mask
        self.skeleton = bytes(payload)
        self.family = 10 if any(r == "src6" for r in roles) else 2 if "src4" in roles else 0
        self.src_index = next((i for i, r in enumerate(roles) if r in ("src4", "src6")), None)
        self.dst_index = next((i for i, r in enumerate(roles) if r in ("dst4", "dst6")), None)
        self.proto_index = next((i for i, r in enumerate(roles) if r == "proto"), None)
        swap = {"src4": "dst4", "dst4": "src4", "src6": "dst6", "dst6": "src6",
                "sport": "dport", "dport": "sport"}
        perm = []
        for r in roles:
            want = swap.get(r, r)
            perm.append(roles.index(want) if roles.count(want) == 1 else -1)
        # mirrorable: both addresses present, every swapped role found once
        ok = self.src_index is not None and self.dst_index is not None and -1 not in perm
        self.mirror = tuple(perm) if ok else None

    def matches(self, payload) -> bool:
        return (len(payload) == self.size
                and int.from_bytes(payload, "little") & self.mask == self.expected)

    def build(self, fields) -> bytes:
        """The tuple payload (without its attribute header) for ``fields``."""
        return b"".join(fields[v] if is_field else v for is_field, v in self.segments)


def _walk_tuple(payload, base: int = 0) -> tuple[list[tuple[int, int, str]], bool]:
    """Leaves (offset, size, role) of a tuple payload, and whether it is a known layout."""
    leaves: list[tuple[int, int, str]] = []
    p = 0
    end = len(payload)
    while p < end:
        if end - p < 4:
            return leaves, False
        ln, t = _HH.unpack_from(payload, p)
        if ln < 4 or p + ln > end:
            return leaves, False
        t &= TYPE_MASK
        if t in (1, 2):  # CTA_TUPLE_IP / CTA_TUPLE_PROTO: nested
            q = p + 4
            stop = p + ln
            while q < stop:
                if stop - q < 4:
                    return leaves, False
                cl, ct = _HH.unpack_from(payload, q)
                if cl < 4 or q + cl > stop:
                    return leaves, False
                ct &= TYPE_MASK
                if t == 1:
                    role = _IP_LEAVES.get(ct)
                    if role is None:
                        return leaves, False
                    role += "4" if ct < 3 else "6"
                elif ct == _PROTO_NUM:
                    role = "proto"
                else:
                    role = _PROTO_LEAVES.get(ct, f"p{ct}")
                leaves.append((q + 4, cl - 4, role))
                q += (cl + 3) & ~3
        else:  # CTA_TUPLE_ZONE or unknown: a plain value
            leaves.append((p + 4, ln - 4, f"t{t}"))
        p += (ln + 3) & ~3
    return leaves, True


class Templates:
    """The tuple layouts seen so far (ids 1..MAX_TEMPLATES; 0 = raw key)."""

    def __init__(self) -> None:
        self.by_size: dict[int, list[Template]] = {}
        self.by_id: list[Template | None] = [None]

    def find(self, payload, nested: bool) -> Template | None:
        cands = self.by_size.get(len(payload))
        if cands:
            v = int.from_bytes(payload, "little")
            for t in cands:
                if v & t.mask == t.expected and t.nested == nested:
                    return t
        if len(self.by_id) > MAX_TEMPLATES:
            return None
        leaves, ok = _walk_tuple(payload)
        if not ok or not leaves:
            return None
        t = Template(len(self.by_id), bytes(payload), leaves, nested)
        self.by_id.append(t)
        self.by_size.setdefault(len(payload), []).append(t)
        return t


TEMPLATES = Templates()


class Parsed:
    """A conntrack message split for the cache: ``key``, ``family`` and ``attrs`` (type ->
    the attribute's bytes, header and padding included). ``attrs`` never holds the
    original tuple; it holds the reply tuple (``reply``) only when that is not the mirror
    image of the original one (``mirrored``)."""

    __slots__ = ("key", "family", "attrs", "orig", "reply", "mirrored", "template")

    def __init__(self, key: bytes, family: int, attrs: dict[int, bytes], orig: bytes,
                 reply: bytes | None, mirrored: bool, template: Template | None) -> None:
        self.key = key
        self.family = family
        self.attrs = attrs
        self.orig = orig
        self.reply = reply
        self.mirrored = mirrored
        self.template = template

    @property
    def proto(self) -> int | None:
        """Layer-4 protocol number of the original tuple."""
        return tuple_proto(self.orig)

    def addresses(self) -> tuple[bytes | None, bytes | None]:
        """(original source, reply source) address bytes: the real end points."""
        osrc, odst = tuple_addrs(self.orig)
        if self.reply is None or self.mirrored:
            return osrc, odst  # no or mirrored reply: its source is the original destination
        rsrc, _ = tuple_addrs(self.reply)
        return osrc, rsrc

    def tcp_state(self) -> int | None:
        pi = self.attrs.get(CTA_PROTOINFO)
        if pi is None:
            return None
        return protoinfo_tcp_state(pi)


def top_attrs(buf, p: int, end: int) -> dict[int, bytes]:
    """type -> attribute bytes (header and padding included) of ``buf[p:end]``."""
    out: dict[int, bytes] = {}
    unpack = _HH.unpack_from
    while p + 4 <= end:
        ln, t = unpack(buf, p)
        if ln < 4 or p + ln > end:
            raise DecodeError(f"bad attribute length {ln} at {p}")
        q = p + ((ln + 3) & ~3)
        if q > end:
            q = end
        out[t & TYPE_MASK] = bytes(buf[p:q])
        p = q
    return out


class _MsgShape:
    """The top-level layout of a message body: where each attribute starts and ends
    (the kernel sends the entries of a table in a handful of layouts)."""

    __slots__ = ("mask", "expected", "slices")

    def __init__(self, mask: int, expected: int, slices: tuple[tuple[int, int, int], ...]) -> None:
        self.mask = mask
        self.expected = expected
        self.slices = slices


_MSG_SHAPES: dict[int, list[_MsgShape]] = {}
MAX_MSG_SHAPES = 2048


def _attrs_by_shape(buf, body: int, end: int) -> dict[int, bytes]:
    """:func:`top_attrs` with the layout cached by length and attribute headers."""
    cands = _MSG_SHAPES.get(end - body)
    if cands is not None:
        v = int.from_bytes(buf[body:end], "little")
        for sh in cands:
            if v & sh.mask == sh.expected:
                return {t: buf[body + a:body + b] for t, a, b in sh.slices}
    slices = []
    p = body
    unpack = _HH.unpack_from
    mask = bytearray(end - body)
    while p + 4 <= end:
        ln, t = unpack(buf, p)
        if ln < 4 or p + ln > end:
            raise DecodeError(f"bad attribute length {ln} at {p}")
        q = min(p + ((ln + 3) & ~3), end)
        slices.append((t & TYPE_MASK, p - body, q - body))
        mask[p - body:p - body + 4] = b"\xff\xff\xff\xff"
        p = q
    if p == end and len({t for t, _, _ in slices}) == len(slices):
        m = int.from_bytes(mask, "little")
        if sum(len(c) for c in _MSG_SHAPES.values()) > MAX_MSG_SHAPES:
            _MSG_SHAPES.clear()
        _MSG_SHAPES.setdefault(end - body, []).append(
            _MsgShape(m, int.from_bytes(buf[body:end], "little") & m, tuple(slices)))
    return {t: buf[body + a:body + b] for t, a, b in slices}


def parse(buf, off: int, ln: int, drop: Iterable[int] = ()) -> Parsed:
    """Split the conntrack message at ``buf[off:off+ln]`` (header included); attribute
    types in ``drop`` are left out (e.g. counters, use, timeout)."""
    if ln < 20 or off + ln > len(buf):
        raise DecodeError(f"bad message length {ln}")
    family = buf[off + 16]
    attrs = _attrs_by_shape(buf, off + 20, off + ln)
    for t in drop:
        attrs.pop(t, None)
    return split(family, attrs)


def split(family: int, attrs: dict[int, bytes]) -> Parsed:
    """:func:`parse` for attributes already split by type (they are modified)."""
    orig = attrs.pop(CTA_TUPLE_ORIG, None)
    if orig is None:
        raise DecodeError("no original tuple")
    key, t, fields = _key(orig, attrs.get(CTA_ZONE))
    reply = attrs.get(CTA_TUPLE_REPLY)
    mirrored = False
    if t is not None and reply is not None and t.mirror is not None:
        rlen, rtype = _HH.unpack_from(reply, 0)
        rp = reply[4:rlen]
        if (t.matches(rp) and bool(rtype & NLA_F_NESTED) == t.nested
                and t.struct.unpack_from(rp) == tuple(fields[i] for i in t.mirror)):
            del attrs[CTA_TUPLE_REPLY]
            mirrored = True
    return Parsed(key, family, attrs, orig, reply, mirrored, t)


def _key(tlv: bytes, zone: bytes | None) -> tuple[bytes, Template | None, tuple]:
    """(key, template, field values) of a tuple attribute and an optional zone attribute."""
    zone_b = zone[4:6] if zone is not None and len(zone) >= 6 and zone[4:6] != b"\0\0" else b""
    tlen, ttype = _HH.unpack_from(tlv, 0)
    payload = tlv[4:tlen]
    t = TEMPLATES.find(payload, bool(ttype & NLA_F_NESTED))
    if t is None:
        return b"\0" + (zone_b or b"\0\0") + payload, None, ()
    fields = t.struct.unpack_from(payload)
    return bytes((t.tid,)) + b"".join(fields) + zone_b, t, fields


def tuple_key(tlv: bytes, zone: bytes | None = None) -> bytes:
    """The cache key of a tuple attribute (e.g. an expectation's master tuple) and an
    optional zone attribute: equal to the key of the flow whose original tuple it is."""
    return _key(tlv, zone)[0]


def key_family(key: bytes) -> int:
    """AF_INET/AF_INET6 of a key made by :func:`split` (0 when unknown)."""
    tid = key[0]
    if tid:
        return TEMPLATES.by_id[tid].family
    return _raw_family(key[3:])


def _raw_family(payload) -> int:
    leaves, _ = _walk_tuple(payload)
    for _, size, role in leaves:
        if role.startswith("src"):
            return 10 if size == 16 else 2
    return 0


def orig_tuple(key: bytes) -> bytes:
    """The CTA_TUPLE_ORIG attribute (header included) of ``key``."""
    tid = key[0]
    if tid == 0:
        payload = key[3:]
        nested = True
    else:
        t = TEMPLATES.by_id[tid]
        payload = _fields_bytes(t, key)
        nested = t.nested
    return _HH.pack(4 + len(payload), CTA_TUPLE_ORIG | (NLA_F_NESTED if nested else 0)) + payload


def _fields_bytes(t: Template, key: bytes) -> bytes:
    """The tuple payload of ``key`` packed back with its constant bytes in place."""
    out = bytearray(t.skeleton)
    p = 1
    for off, size in _leaf_slots(t):
        out[off:off + size] = key[p:p + size]
        p += size
    return bytes(out)


_SLOTS: dict[int, list[tuple[int, int]]] = {}


def _leaf_slots(t: Template) -> list[tuple[int, int]]:
    slots = _SLOTS.get(t.tid)
    if slots is None:
        leaves, _ = _walk_tuple(t.skeleton)
        slots = _SLOTS[t.tid] = [(off, size) for off, size, _ in leaves]
    return slots


def reply_tuple(key: bytes) -> bytes:
    """The mirrored CTA_TUPLE_REPLY attribute of ``key`` (for entries stored without it)."""
    t = TEMPLATES.by_id[key[0]]
    fields = t.struct.unpack_from(_fields_bytes(t, key))
    payload = t.build([fields[i] for i in t.mirror])
    return _HH.pack(4 + len(payload), CTA_TUPLE_REPLY | (NLA_F_NESTED if t.nested else 0)) + payload


def key_zone(key: bytes) -> int:
    """The CTA_ZONE value that is part of ``key`` (0 when none)."""
    tid = key[0]
    if tid == 0:
        return _ZONE.unpack_from(key, 1)[0]
    t = TEMPLATES.by_id[tid]
    n = sum(size for _, size in _leaf_slots(t))
    return _ZONE.unpack_from(key, 1 + n)[0] if len(key) > 1 + n else 0


def join(attrs: dict[int, bytes]) -> bytes:
    """The attributes in ascending type order, as stored."""
    if len(attrs) == 1:
        return next(iter(attrs.values()))
    return b"".join([attrs[t] for t in sorted(attrs)])


def message(key: bytes, family: int, body: bytes, mirrored: bool, mtype: int = 0x100,
            flags: int = 0) -> bytes:
    """A complete ctnetlink message for a stored entry (``body`` = the stored attributes)."""
    fn = _TUPLES.get((key[0], mirrored))
    if fn is None:
        fn = tuples_fn(key[0], mirrored)
    payload = fn(key) + body
    return _NLHDR.pack(20 + len(payload), mtype, flags, 0, 0) + _NFGEN.pack(family, 0, 0) + payload


def message_slow(key: bytes, family: int, body: bytes, mirrored: bool, mtype: int = 0x100,
                 flags: int = 0) -> bytes:
    """:func:`message` attribute by attribute (the reference of the generated path)."""
    parts = [orig_tuple(key)]
    if mirrored:
        parts.append(reply_tuple(key))
    parts.append(body)
    payload = b"".join(parts)
    return _NLHDR.pack(20 + len(payload), mtype, flags, 0, 0) + _NFGEN.pack(family, 0, 0) + payload


_TUPLES: dict[tuple[int, bool], "Callable[[bytes], bytes]"] = {}


def tuples_fn(tid: int, mirrored: bool) -> "Callable[[bytes], bytes]":
    """A function ``key -> original (+ mirrored reply) tuple attributes`` generated for
    template ``tid``: the template's constant bytes with the key's slices in between (one
    concatenation, no loop); raw keys (id 0) take the attribute-by-attribute path."""
    if tid == 0:
        def raw(key: bytes) -> bytes:
            return orig_tuple(key) + (reply_tuple(key) if mirrored else b"")
        return raw
    t = TEMPLATES.by_id[tid]
    spans = []
    p = 1
    for _off, size in _leaf_slots(t):
        spans.append((p, p + size))
        p += size
    nested = NLA_F_NESTED if t.nested else 0

    def parts(tuple_type: int, order) -> list[str]:
        out = [repr(_HH.pack(4 + t.size, tuple_type | nested))]
        for is_field, v in t.segments:
            if is_field:
                a, b = spans[order[v]]
                out.append(f"key[{a}:{b}]")
            else:
                out.append(repr(v))
        return out

    exprs = parts(CTA_TUPLE_ORIG, range(len(spans)))
    if mirrored:
        exprs += parts(CTA_TUPLE_REPLY, t.mirror)
    ns: dict = {}
    exec(f"def fn(key):\n    return {' + '.join(exprs)}\n", ns)  # noqa: S102 - from the template
    fn = ns["fn"]
    _TUPLES[(tid, mirrored)] = fn
    return fn


def tuple_addrs(tlv: bytes) -> tuple[bytes | None, bytes | None]:
    """(src, dst) address bytes of a tuple attribute (header included)."""
    ln = _HH.unpack_from(tlv, 0)[0]
    src = dst = None
    for off, size, role in _walk_tuple(tlv[4:ln])[0]:
        if role in ("src4", "src6"):
            src = tlv[4 + off:4 + off + size]
        elif role in ("dst4", "dst6"):
            dst = tlv[4 + off:4 + off + size]
    return src, dst


def tuple_proto(tlv: bytes) -> int | None:
    ln = _HH.unpack_from(tlv, 0)[0]
    for off, size, role in _walk_tuple(tlv[4:ln])[0]:
        if role == "proto" and size >= 1:
            return tlv[4 + off]
    return None


def protoinfo_tcp_state(pi: bytes) -> int | None:
    """CTA_PROTOINFO_TCP_STATE inside a CTA_PROTOINFO attribute, or None."""
    ln = _HH.unpack_from(pi, 0)[0]
    p = 4
    while p + 4 <= ln:
        cl, ct = _HH.unpack_from(pi, p)
        if cl < 4:
            return None
        if ct & TYPE_MASK == 1:  # CTA_PROTOINFO_TCP
            q = p + 4
            while q + 4 <= p + cl:
                gl, gt = _HH.unpack_from(pi, q)
                if gl < 4:
                    return None
                if gt & TYPE_MASK == 1 and gl >= 5:
                    return pi[q + 4]
                q += (gl + 3) & ~3
            return None
        p += (cl + 3) & ~3
    return None


def counters(attrs: dict[int, bytes]) -> tuple[int, int]:
    """(bytes, packets) summed over both directions (CTA_COUNTERS_ORIG/REPLY)."""
    nbytes = npkts = 0
    for t in (CTA_COUNTERS_ORIG, CTA_COUNTERS_REPLY):
        a = attrs.get(t)
        if a is None:
            continue
        ln = _HH.unpack_from(a, 0)[0]
        p = 4
        while p + 4 <= ln:
            cl, ct = _HH.unpack_from(a, p)
            if cl < 4:
                break
            ct &= TYPE_MASK
            if ct == 1 and cl >= 12:
                npkts += int.from_bytes(a[p + 4:p + 12], "big")
            elif ct == 2 and cl >= 12:
                nbytes += int.from_bytes(a[p + 4:p + 12], "big")
            elif ct == 3 and cl >= 8:
                npkts += int.from_bytes(a[p + 4:p + 8], "big")
            elif ct == 4 and cl >= 8:
                nbytes += int.from_bytes(a[p + 4:p + 8], "big")
            p += (cl + 3) & ~3
    return nbytes, npkts
