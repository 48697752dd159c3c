"""Recorded netlink conversations: load, describe and compare them the way humans read them.

A conversation is the datagrams a program sent and received, in order (a pcap read with
:func:`nfnl.pcap.read_pcap`, or ``(direction, bytes)`` pairs). :func:`describe` prints a
datagram decoded with the schemas of :mod:`nfnl.registry` (message and attribute names,
flags spelled out, seq and portid left out); :func:`message_key` is what makes two
messages "the same" (everything but seq, portid and padding), which the replay's request
matching (:mod:`nfnl.fakekernel`) and :func:`conversation_diff` (a unified diff of two
conversations decoded, empty when they are equivalent) rely on.
"""
from __future__ import annotations

import difflib
import errno as _errno
import os
import socket as _real_socket
from typing import Any, Iterable, Union

from . import registry
from .codec import AttrList
from .constants import NETLINK_NETFILTER, NLMSG_ERROR, NLMSG_MIN_TYPE
from .errors import NetlinkDecodeError
from .message import CONTROL_NAMES, NLMSGHDR, decode_message, iter_messages
from .pcap import RECEIVED, SENT, Packet, read_pcap

Recording = Union[str, "os.PathLike[str]", Iterable[Union[Packet, tuple]]]
"""A pcap path (or binary file object) or datagrams: Packets, (direction, bytes) or
(direction, bytes, netlink protocol)."""


def load(recording: Recording) -> list[Packet]:
    """The datagrams of a recording as :class:`~nfnl.pcap.Packet` objects, in order."""
    if isinstance(recording, (str, os.PathLike)) or hasattr(recording, "read"):
        return list(read_pcap(recording))  # type: ignore[arg-type]
    out = []
    for i, item in enumerate(recording):
        if isinstance(item, Packet):
            out.append(item)
        else:
            direction, data, *rest = item
            if direction not in (SENT, RECEIVED):
                raise ValueError(f"direction must be {SENT!r} or {RECEIVED!r}, not {direction!r}")
            out.append(Packet(i, direction, rest[0] if rest else NETLINK_NETFILTER, bytes(data)))
    return out


_FLAG_LOW = ((0x1, "REQUEST"), (0x2, "MULTI"), (0x4, "ACK"), (0x8, "ECHO"), (0x10, "DUMP_INTR"),
             (0x20, "DUMP_FILTERED"))
_FLAG_GET = ((0x100, "ROOT"), (0x200, "MATCH"), (0x400, "ATOMIC"))
_FLAG_NEW = ((0x100, "REPLACE"), (0x200, "EXCL"), (0x400, "CREATE"), (0x800, "APPEND"))
_FLAG_ACK = ((0x100, "CAPPED"), (0x200, "ACK_TLVS"))


def flag_names(mtype: int, flags: int) -> str:
    """``nlmsg_flags`` as ``REQUEST|ACK|CREATE|EXCL`` (the high bits' meaning depends on the
    message: CAPPED/ACK_TLVS on errors, DUMP on dump requests, else the NEW modifiers)."""
    if mtype == NLMSG_ERROR:
        high = _FLAG_ACK
    elif flags & 0x301 == 0x301:
        high = _FLAG_GET
    else:
        high = _FLAG_NEW
    names, rest = [], flags
    for bit, name in _FLAG_LOW + high:
        if flags & bit:
            names.append(name)
            rest &= ~bit
    if flags & 0x300 == 0x300 and high is _FLAG_GET:
        names = [n for n in names if n not in ("ROOT", "MATCH")] + ["DUMP"]
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


def type_name(mtype: int) -> str:
    """The registered name of a message type (``IPCTNL_MSG_CT_NEW``), else a neutral one."""
    if mtype < NLMSG_MIN_TYPE:
        return CONTROL_NAMES.get(mtype, f"type {mtype}")
    spec = registry.message(mtype)
    if spec is not None:
        return spec.name
    return f"nfnl subsys {mtype >> 8} msg {mtype & 0xFF}"


def _family(f: int) -> str:
    try:
        return _real_socket.AddressFamily(f).name
    except ValueError:
        return str(f)


def _value(v: Any) -> str:
    if isinstance(v, (bytes, bytearray)):
        return "0x" + bytes(v).hex() if v else "b''"
    if isinstance(v, str):
        return repr(v)
    return str(v)


def _attr_lines(attrs: AttrList, depth: int) -> list[str]:
    out = []
    pad = "  " * depth
    for a in attrs:
        label = a.name or f"type {a.type} (unknown)"
        nested = isinstance(a.value, AttrList)
        odd = a.flags != (0x8000 if nested else 0)
        flags = f" [nla flags {a.flags:#06x}]" if odd else ""
        if nested:
            out.append(f"{pad}{label}{flags}")
            out += _attr_lines(a.value, depth + 1)
        else:
            out.append(f"{pad}{label} = {_value(a.value)}{flags}")
    return out


def describe_message(buf: bytes, off: int = 0) -> list[str]:
    """Human-readable lines for one message (seq and portid left out on purpose)."""
    try:
        m = decode_message(buf, off)
    except NetlinkDecodeError as e:
        return [f"undecodable message ({e}): {bytes(buf[off:]).hex()}"]
    head = f"{type_name(m.type)} flags={flag_names(m.type, m.flags)}"
    if m.error is not None:
        e = m.error
        what = "ACK" if e.errno == 0 else f"errno {e.errno} ({_errno.errorcode.get(e.errno, '?')})"
        head = f"NLMSG_ERROR {what} flags={flag_names(m.type, m.flags)}"
        head += f" for {type_name(e.request_header[1])} flags={flag_names(e.request_header[1], e.request_header[2])}"
        lines = [head] + _attr_lines(e.ext_ack, 1)
        return lines
    if m.family is not None:
        head += f" family={_family(m.family)} version={m.version} res_id={m.res_id}"
        return [head] + _attr_lines(m.attrs or AttrList(), 1)
    body = m.raw[16:]
    if body:
        head += " payload=" + body.hex()
    return [head]


def describe(datagram: bytes) -> list[str]:
    """Human-readable lines for every message of a datagram."""
    try:
        offsets = [off for off, *_ in iter_messages(datagram)]
    except NetlinkDecodeError as e:
        return [f"undecodable datagram ({e}): {datagram.hex()}"]
    return [line for off in offsets for line in describe_message(datagram, off)]


def _attrs_key(attrs: AttrList, ordered: bool) -> tuple:
    items = [(a.type, a.flags,
              _attrs_key(a.value, ordered) if isinstance(a.value, AttrList) else a.value)
             for a in attrs]
    if not ordered:
        items.sort(key=lambda t: (t[0], repr(t)))
    return tuple(items)


def message_key(buf: bytes, off: int = 0, *, ordered: bool = True) -> tuple:
    """What makes two messages "the same": everything but seq, portid and padding
    (``ordered=False`` also ignores the order of attributes)."""
    try:
        m = decode_message(buf, off)
    except NetlinkDecodeError:
        ln = NLMSGHDR.unpack_from(buf, off)[0] if len(buf) - off >= 16 else len(buf) - off
        return ("raw", bytes(buf[off + 4:off + 8]), bytes(buf[off + 16:off + ln]))
    if m.error is not None:
        e = m.error
        echoed = message_key(e.request, ordered=ordered) if len(e.request) > 16 else ()
        return (m.type, m.flags, e.errno, e.request_header[1], e.request_header[2], echoed,
                _attrs_key(e.ext_ack, ordered))
    if m.family is not None:
        return (m.type, m.flags, m.family, m.version, m.res_id,
                _attrs_key(m.attrs or AttrList(), ordered))
    return (m.type, m.flags, m.raw[16:])


def datagram_key(datagram: bytes, *, ordered: bool = True) -> tuple:
    try:
        offsets = [off for off, *_ in iter_messages(datagram)]
    except NetlinkDecodeError:
        return ("raw datagram", datagram)
    return tuple(message_key(datagram, off, ordered=ordered) for off in offsets)


def _flat(packets: Iterable[Packet], ordered: bool) -> tuple[list[tuple], list[str]]:
    keys, lines = [], []
    for p in packets:
        arrow = ">" if p.direction == SENT else "<"
        try:
            offsets = [off for off, *_ in iter_messages(p.data)]
        except NetlinkDecodeError:
            keys.append((p.direction, "raw", p.data))
            lines += [f"{arrow} {line}" for line in describe(p.data)]
            continue
        for off in offsets:
            keys.append((p.direction, p.family, message_key(p.data, off, ordered=ordered)))
            msg = describe_message(p.data, off)
            lines += [f"{arrow} {msg[0]}"] + [f"  {line}" for line in msg[1:]]
    return keys, lines


def conversation_diff(a: Recording, b: Recording, *, ordered_attrs: bool = True,
                      requests_only: bool = False) -> str:
    """An empty string if the conversations are equivalent, else a unified diff of them decoded.

    Equivalent means the same messages in the same directions and order, ignoring seq, portid,
    timestamps, padding and how messages were packed into datagrams (``ordered_attrs=False``
    also ignores attribute order; ``requests_only`` compares only what was sent).
    """
    pa, pb = load(a), load(b)
    if requests_only:
        pa = [p for p in pa if p.direction == SENT]
        pb = [p for p in pb if p.direction == SENT]
    ka, la = _flat(pa, ordered_attrs)
    kb, lb = _flat(pb, ordered_attrs)
    if ka == kb:
        return ""
    diff = list(difflib.unified_diff(la, lb, "first", "second", lineterm="", n=4))
    if not diff:  # differences that the description does not show (e.g. attribute order)
        diff = ["(the decoded texts are equal; the messages differ in attribute order or "
                "raw bytes)"]
    return "\n".join(diff)
