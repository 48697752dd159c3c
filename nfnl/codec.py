"""Runtime attribute codec over the tables that :mod:`nfnl.compile` derives.

``decode_attrs`` turns a padded TLV stream into an :class:`AttrList` of
:class:`Attribute` (nested sets decoded recursively, unknown or odd-sized attributes
kept verbatim) and ``encode_attrs`` turns it back into bytes, byte for byte. Values are
decoded with ``struct`` formats taken from the construct declarations; construct itself
is not imported here.

Tables have the shape ``{set_name: {type: (attr_name, kind, fmt, child_set)}}``.
"""
from __future__ import annotations

import ipaddress
import struct
TYPE_CHECKING = False  # typing is not imported at run time: the CLI must start fast
if TYPE_CHECKING:
    from typing import Any, Iterator

from .constants import NLA_F_NESTED, NLA_F_NET_BYTEORDER, NLA_TYPE_MASK
from .errors import NetlinkDecodeError

AttrTable = "Mapping[str, Mapping[int, tuple[str, str, str | None, str | None]]]"

MAX_DEPTH = 16
_HDR = struct.Struct("=HH")
_structs: dict[str, struct.Struct] = {}


def _st(fmt: str) -> struct.Struct:
    s = _structs.get(fmt)
    if s is None:
        s = _structs[fmt] = struct.Struct(fmt)
    return s


class Attribute:
    """One decoded attribute. ``value`` is an int, tuple, address, str, bytes or a nested
    :class:`AttrList`; ``flags`` holds NLA_F_NESTED / NLA_F_NET_BYTEORDER as received;
    ``name`` is None for attributes the schema does not know (value = raw bytes);
    ``pad`` keeps alignment padding that was not zero so re-encoding is exact."""

    __slots__ = ("type", "name", "flags", "value", "pad")

    def __init__(self, type: int, name: str | None, value: Any, flags: int = 0,
                 pad: bytes | None = None) -> None:
        self.type = type
        self.name = name
        self.value = value
        self.flags = flags
        self.pad = pad  # non-zero alignment padding as received (libmnl leaves garbage)

    @property
    def nested(self) -> bool:
        return isinstance(self.value, AttrList)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Attribute)
            and (self.type, self.flags, self.value) == (other.type, other.flags, other.value)
        )

    def __repr__(self) -> str:
        label = self.name or f"type {self.type}"
        return f"{label}={self.value!r}"


class AttrList(list):
    """A list of :class:`Attribute` with lookup by kernel name or number."""

    __slots__ = ("set_name",)

    def __init__(self, items: Any = (), set_name: str | None = None) -> None:
        super().__init__(items)
        self.set_name = set_name

    def find(self, key: str | int) -> Attribute | None:
        for a in self:
            if a.name == key or a.type == key:
                return a
        return None

    def get(self, key: str | int, default: Any = None) -> Any:
        a = self.find(key)
        return default if a is None else a.value

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, (str,)) :
            a = self.find(key)
            if a is None:
                raise KeyError(key)
            return a.value
        return list.__getitem__(self, key)

    def __contains__(self, key: object) -> bool:  # type: ignore[override]
        if isinstance(key, (str, int)):
            return self.find(key) is not None
        return list.__contains__(self, key)

    def to_python(self) -> list:
        """Plain nested [(name, value)] lists, for printing and comparisons."""
        return [
            (a.name or a.type, a.value.to_python() if isinstance(a.value, AttrList) else a.value)
            for a in self
        ]


def decode_value(kind: str, fmt: str | None, payload: bytes) -> Any:
    """Decode a leaf payload; raises ValueError if it does not fit the declaration."""
    if fmt:
        st = _st(fmt)
        if st.size != len(payload):
            raise ValueError("size")
        vals = st.unpack(payload)
        if kind == "ipv4":
            return ipaddress.IPv4Address(vals[0])
        if kind == "ipv6":
            return ipaddress.IPv6Address(vals[0])
        if kind == "struct":
            return vals
        return vals[0]
    if kind == "string":
        if not payload or payload[-1] != 0 or 0 in payload[:-1]:
            raise ValueError("string")
        return payload[:-1].decode("utf8")
    if kind == "flag":
        if payload:
            raise ValueError("flag")
        return True
    return bytes(payload)


def encode_value(kind: str, fmt: str | None, value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)) and kind not in ("bytes",):
        if not (fmt and fmt.endswith("s")):
            return bytes(value)
    if fmt:
        if kind in ("ipv4", "ipv6"):
            return value.packed if hasattr(value, "packed") else ipaddress.ip_address(value).packed
        if kind == "struct":
            return _st(fmt).pack(*value)
        return _st(fmt).pack(value)
    if kind == "string":
        return value.encode("utf8") + b"\0"
    if kind == "flag":
        return b""
    return bytes(value)


def decode_attrs(
    table: AttrTable, set_name: str | None, buf: bytes | memoryview, off: int = 0,
    end: int | None = None, _depth: int = 0,
) -> AttrList:
    """Decode the TLV stream ``buf[off:end]`` against ``table[set_name]``."""
    if end is None:
        end = len(buf)
    if _depth > MAX_DEPTH:
        raise NetlinkDecodeError("attributes nested too deeply", off)
    spec = table.get(set_name, {}) if set_name else {}
    out = AttrList(set_name=set_name)
    while off < end:
        if end - off < 4:
            raise NetlinkDecodeError("truncated attribute header", off)
        ln, rtype = _HDR.unpack_from(buf, off)
        if ln < 4 or off + ln > end:
            raise NetlinkDecodeError(f"bad attribute length {ln}", off)
        atype = rtype & NLA_TYPE_MASK
        flags = rtype & (NLA_F_NESTED | NLA_F_NET_BYTEORDER)
        payload = bytes(buf[off + 4:off + ln])
        info = spec.get(atype)
        if info is None:
            out.append(Attribute(atype, None, payload, flags))
        else:
            name, kind, fmt, child = info
            if kind == "nested":
                value: Any = decode_attrs(table, child, payload, 0, len(payload), _depth + 1)
            else:
                try:
                    value = decode_value(kind, fmt, payload)
                except (ValueError, UnicodeDecodeError):
                    value = payload  # odd size: keep verbatim
            out.append(Attribute(atype, name, value, flags))
        padded = (ln + 3) & ~3
        if padded != ln:
            pad = bytes(buf[off + ln:min(off + padded, end)])
            if any(pad) or off + padded > end:
                out[-1].pad = pad
        off += padded
    if off > end + 3:
        raise NetlinkDecodeError("attribute runs past its container", off)
    return out


def encode_attrs(table: AttrTable, set_name: str | None, attrs: AttrList | list) -> bytes:
    """Inverse of :func:`decode_attrs` (zero padding unless ``Attribute.pad`` says otherwise)."""
    spec = table.get(set_name, {}) if set_name else {}
    out = bytearray()
    for a in attrs:
        info = spec.get(a.type)
        if isinstance(a.value, AttrList):
            child = info[3] if info else None
            payload = encode_attrs(table, child, a.value)
        elif info is None or isinstance(a.value, (bytes, bytearray)) and info[1] != "bytes" and not (info[2] or "").endswith("s"):
            payload = bytes(a.value)
        else:
            payload = encode_value(info[1], info[2], a.value)
        ln = 4 + len(payload)
        out += _HDR.pack(ln, a.type | a.flags)
        out += payload
        out += a.pad if a.pad is not None else b"\0" * (((ln + 3) & ~3) - ln)
    return bytes(out)


def iter_raw_attrs(buf: bytes | memoryview, off: int = 0, end: int | None = None) -> Iterator[tuple[int, int, int, int]]:
    """Yield (type without flags, flags, payload offset, payload length); validates lengths."""
    if end is None:
        end = len(buf)
    while off < end:
        if end - off < 4:
            raise NetlinkDecodeError("truncated attribute header", off)
        ln, rtype = _HDR.unpack_from(buf, off)
        if ln < 4 or off + ln > end:
            raise NetlinkDecodeError(f"bad attribute length {ln}", off)
        yield rtype & NLA_TYPE_MASK, rtype & 0xC000, off + 4, ln - 4
        off += (ln + 3) & ~3


# --- small building helpers (libmnl's mnl_attr_put_* family) ------------------------

def nla(atype: int, payload: bytes) -> bytes:
    ln = 4 + len(payload)
    return _HDR.pack(ln, atype) + payload + b"\0" * (((ln + 3) & ~3) - ln)


def nla_nest(atype: int, *parts: bytes) -> bytes:
    return nla(atype | NLA_F_NESTED, b"".join(parts))


def nla_u8(atype: int, v: int) -> bytes:
    return _HDR.pack(5, atype) + bytes((v & 0xFF, 0, 0, 0))


def nla_u16(atype: int, v: int) -> bytes:
    return _HDR.pack(6, atype) + struct.pack(">Hxx", v & 0xFFFF)


def nla_u32(atype: int, v: int) -> bytes:
    return _HDR.pack(8, atype) + struct.pack(">I", v & 0xFFFFFFFF)


def nla_u64(atype: int, v: int) -> bytes:
    return _HDR.pack(12, atype) + struct.pack(">Q", v & 0xFFFFFFFFFFFFFFFF)


def nla_string(atype: int, s: str) -> bytes:
    return nla(atype, s.encode() + b"\0")
