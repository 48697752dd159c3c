"""Declaring netlink attribute sets with ``construct``.

An :class:`AttrSet` lists the attributes a nest (or a message body) may hold, each an
:class:`Attr` with its kernel number, its kernel constant name and a ``construct``
declaration of its payload (or another :class:`AttrSet` for a nest). These
declarations are the single source of truth for layouts: :mod:`nfnl.compile` derives
the ``struct``-based tables the runtime codecs use, and :func:`parse_interpreted` /
:func:`build_interpreted` run the declarations through construct's interpreter, which
tests use to cross-check the derived fast path.

This module imports ``construct``; the runtime path (``nfnl.codec``) does not.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Iterable, Union

import construct as cs

from .constants import NLA_F_NESTED, NLA_F_NET_BYTEORDER, NLA_TYPE_MASK

# --- the netlink attribute header itself -------------------------------------------

NlAttrHeader = cs.Struct("nla_len" / cs.Int16un, "nla_type" / cs.Int16un)
"""``struct nlattr``: length including the header, type with NESTED/NET_BYTEORDER bits."""


def nla_align(n: int) -> int:
    return (n + 3) & ~3


# --- leaf payload declarations ------------------------------------------------------


class IPv4Adapter(cs.Adapter):
    """4 network-order bytes <-> :class:`ipaddress.IPv4Address`."""

    def _decode(self, obj, context, path):
        return ipaddress.IPv4Address(obj)

    def _encode(self, obj, context, path):
        return ipaddress.IPv4Address(obj).packed


class IPv6Adapter(cs.Adapter):
    """16 network-order bytes <-> :class:`ipaddress.IPv6Address`."""

    def _decode(self, obj, context, path):
        return ipaddress.IPv6Address(obj)

    def _encode(self, obj, context, path):
        return ipaddress.IPv6Address(obj).packed


U8 = cs.Int8ub
U16 = cs.Int16ub
U32 = cs.Int32ub
U64 = cs.Int64ub
U16Host = cs.Int16un
U32Host = cs.Int32un
IPv4 = IPv4Adapter(cs.Bytes(4))
IPv6 = IPv6Adapter(cs.Bytes(16))
String = cs.CString("utf8")
"""A NUL-terminated kernel string (``nla_put_string``)."""
Binary = cs.GreedyBytes
Flag = cs.Pass
"""A zero-length attribute whose presence is the information."""


@dataclass(frozen=True)
class Attr:
    """One attribute: kernel number, kernel constant name and payload declaration."""

    type: int
    name: str
    payload: Union[cs.Construct, "AttrSet"]

    @property
    def nested(self) -> bool:
        return isinstance(self.payload, AttrSet)


class AttrSet:
    """The attributes allowed in one nest or message body (a kernel ``nla_policy``)."""

    def __init__(self, name: str, attrs: Iterable[Attr]) -> None:
        self.name = name
        self.attrs: dict[int, Attr] = {}
        self.by_name: dict[str, Attr] = {}
        for attr in attrs:
            if attr.type in self.attrs:
                raise ValueError(f"{name}: duplicate attribute type {attr.type}")
            self.attrs[attr.type] = attr
            self.by_name[attr.name] = attr

    def __repr__(self) -> str:
        return f"AttrSet({self.name!r}, {len(self.attrs)} attributes)"

    def __iter__(self):
        return iter(self.attrs.values())

    def walk(self) -> Iterable["AttrSet"]:
        """This set and every set nested below it, each once."""
        seen: dict[str, AttrSet] = {}
        stack = [self]
        while stack:
            aset = stack.pop()
            if aset.name in seen:
                continue
            seen[aset.name] = aset
            for attr in aset:
                if isinstance(attr.payload, AttrSet):
                    stack.append(attr.payload)
        return seen.values()


# --- deriving the runtime tables (what a schema's compiled_tables() returns) ---------

_FORMAT_KINDS = {
    ">B": "u8", ">H": "u16", ">L": "u32", ">I": "u32", ">Q": "u64",
    "=B": "u8", "=H": "u16h", "=L": "u32h", "=I": "u32h", "=Q": "u64h",
    "<B": "u8", "<H": "u16h", "<L": "u32h", "<I": "u32h", "<Q": "u64h",
    ">b": "s8", ">h": "s16", ">l": "s32", ">i": "s32", ">q": "s64", "=l": "s32h",
}


def leaf_layout(payload: cs.Construct) -> tuple[str, str | None]:
    """(kind, struct format) of a leaf declaration; format None = variable length."""
    if isinstance(payload, cs.FormatField):
        kind = _FORMAT_KINDS.get(payload.fmtstr)
        if kind is None:
            raise TypeError(f"unsupported format {payload.fmtstr!r}")
        code = payload.fmtstr[1:].replace("L", "I").replace("l", "i")
        if kind.endswith("h"):
            return kind, "=" + code
        return kind, ">" + code
    if isinstance(payload, IPv4Adapter):
        return "ipv4", "4s"
    if isinstance(payload, IPv6Adapter):
        return "ipv6", "16s"
    if isinstance(payload, cs.StringEncoded) or type(payload).__name__ == "CString":
        return "string", None
    if payload is cs.GreedyBytes or isinstance(payload, type(cs.GreedyBytes)):
        return "bytes", None
    if payload is cs.Pass or isinstance(payload, type(cs.Pass)):
        return "flag", ""
    if isinstance(payload, cs.Bytes) and isinstance(payload.length, int):
        return "bytes", f"{payload.length}s"
    if isinstance(payload, cs.Struct):
        fmt = ""
        for sub in payload.subcons:
            k, f = leaf_layout(sub.subcon if isinstance(sub, cs.Renamed) else sub)
            if f is None or not f or k not in ("u8", "u16", "u32", "u64"):
                raise TypeError("struct leaves may only hold big-endian integers")
            fmt += f[1:]
        return "struct", ">" + fmt
    if isinstance(payload, cs.Renamed):
        return leaf_layout(payload.subcon)
    raise TypeError(f"cannot derive a layout from {payload!r}")


def struct_format(decl: cs.Struct) -> str:
    """A ``struct`` format for a construct Struct of fixed-size integer fields."""
    order = None
    fmt = ""
    for sub in decl.subcons:
        inner = sub.subcon if isinstance(sub, cs.Renamed) else sub
        if isinstance(inner, cs.Struct):
            nested = struct_format(inner)
            if order and nested[0] != order:
                raise TypeError("mixed byte order")
            order = order or nested[0]
            fmt += nested[1:]
            continue
        if not isinstance(inner, cs.FormatField):
            raise TypeError(f"not a fixed integer field: {sub!r}")
        o, f = inner.fmtstr[0], inner.fmtstr[1:]
        if f not in ("b", "B") and order and o != order:
            raise TypeError(f"mixed byte order in {decl!r}")
        if f not in ("b", "B"):
            order = o
        fmt += f
    return (order or "=") + fmt


def attr_tables(*roots: AttrSet) -> dict[str, dict[int, tuple]]:
    """``{set name: {type: (attr name, kind, struct format, child set name)}}`` of every
    set below ``roots``: the table :mod:`nfnl.codec` decodes and encodes with."""
    tables: dict[str, dict[int, tuple]] = {}
    for root in roots:
        for aset in root.walk():
            rows = {}
            for attr in aset:
                if isinstance(attr.payload, AttrSet):
                    rows[attr.type] = (attr.name, "nested", None, attr.payload.name)
                else:
                    kind, fmt = leaf_layout(attr.payload)
                    rows[attr.type] = (attr.name, kind, fmt, None)
            prev = tables.get(aset.name)
            if prev is not None and prev != rows:
                raise ValueError(f"two different attribute sets named {aset.name}")
            tables[aset.name] = dict(sorted(rows.items()))
    return dict(sorted(tables.items()))


def struct_fields(*roots: AttrSet) -> dict[str, dict[int, tuple[str, ...]]]:
    """``{set name: {type: field names}}`` of the fixed-struct leaves below ``roots``
    (what tooling labels the values of a ``struct`` kind with)."""
    out: dict[str, dict[int, tuple[str, ...]]] = {}
    for root in roots:
        for aset in root.walk():
            for attr in aset:
                payload = attr.payload
                while isinstance(payload, cs.Renamed):
                    payload = payload.subcon
                if isinstance(payload, cs.Struct):
                    out.setdefault(aset.name, {})[attr.type] = tuple(
                        sc.name for sc in payload.subcons)
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def set_names(namespace: dict, roots: Iterable[AttrSet]) -> dict[str, str]:
    """``{set name: variable name}`` of ``roots`` as a schema module names them
    (``ctattr_type`` -> ``CTA``): short names for tooling (the scapy layer's classes)."""
    wanted = {id(r) for r in roots}
    return {v.name: k for k, v in namespace.items()
            if isinstance(v, AttrSet) and id(v) in wanted and not k.startswith("_")}


# --- construct's interpreter over whole attribute streams (tests, tooling) -----------

_Raw = cs.Struct(
    "nla_len" / cs.Int16un,
    "nla_type" / cs.Int16un,
    "payload" / cs.Bytes(lambda ctx: max(ctx.nla_len - 4, 0)),
    cs.Padding(lambda ctx: nla_align(ctx.nla_len) - ctx.nla_len),
)
NlAttrStream = cs.GreedyRange(_Raw)
"""Construct declaration of a padded TLV stream (the interpreter's view)."""


def parse_interpreted(aset: AttrSet, data: bytes) -> list:
    """Decode with construct's interpreter: [(name or type, flags, value), ...].

    Slow (runs the interpreter per attribute); used to cross-check ``nfnl.codec``.
    """
    out = []
    for raw in NlAttrStream.parse(data):
        atype = raw.nla_type & NLA_TYPE_MASK
        flags = raw.nla_type & (NLA_F_NESTED | NLA_F_NET_BYTEORDER)
        attr = aset.attrs.get(atype)
        payload = bytes(raw.payload)
        if attr is None:
            out.append((atype, flags, payload))
        elif isinstance(attr.payload, AttrSet):
            out.append((attr.name, flags, parse_interpreted(attr.payload, payload)))
        else:
            out.append((attr.name, flags, attr.payload.parse(payload)))
    return out


def build_interpreted(aset: AttrSet, items: list) -> bytes:
    """Inverse of :func:`parse_interpreted`."""
    out = bytearray()
    for key, flags, value in items:
        if isinstance(key, int):
            atype, payload = key, value
        else:
            attr = aset.by_name[key]
            atype = attr.type
            if isinstance(attr.payload, AttrSet):
                payload = build_interpreted(attr.payload, value)
            else:
                payload = attr.payload.build(value)
        out += _Raw.build(dict(nla_len=4 + len(payload), nla_type=atype | flags, payload=payload))
    return bytes(out)


def inet_family(addr) -> int:
    return socket.AF_INET if ipaddress.ip_address(addr).version == 4 else socket.AF_INET6
