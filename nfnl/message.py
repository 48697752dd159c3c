"""Netlink message framing: split datagrams into messages, build requests, read errors.

Pure functions over bytes (sans-IO). A datagram holds one or more messages, each a
``struct nlmsghdr`` (16 bytes, host order) followed by its payload, padded to 4 bytes.
nfnetlink messages start their payload with ``struct nfgenmsg`` (4 bytes).
"""
from __future__ import annotations

import struct
TYPE_CHECKING = False  # typing is not imported at run time: the CLI must start fast
if TYPE_CHECKING:
    from typing import Any, Iterator, Mapping

from . import _compiled as C
from .codec import AttrList, decode_attrs
from .constants import (
    NLM_F_ACK_TLVS, NLM_F_CAPPED, NLMSG_DONE, NLMSG_ERROR, NLMSG_MIN_TYPE, NLMSG_NOOP,
    NLMSG_OVERRUN,
)
from .errors import NetlinkDecodeError

NLMSGHDR = struct.Struct(C.NLMSGHDR_FMT)
NFGENMSG = struct.Struct(C.NFGENMSG_FMT)
NLMSGERR_ERRNO = struct.Struct("=i")
NLMSG_HDRLEN = NLMSGHDR.size
NFNL_HDRLEN = NLMSG_HDRLEN + NFGENMSG.size

_ERRNO_AND_HDR = struct.Struct("=i" + C.NLMSGHDR_FMT[1:])


def nlmsg_align(n: int) -> int:
    return (n + 3) & ~3


def iter_messages(buf: bytes | memoryview) -> Iterator[tuple[int, int, int, int, int, int]]:
    """Yield (offset, length, type, flags, seq, pid) for every message in a datagram.

    Raises :class:`NetlinkDecodeError` on a truncated header or a length that is too
    small or runs past the datagram.
    """
    off = 0
    end = len(buf)
    unpack = NLMSGHDR.unpack_from
    while off < end:
        if end - off < NLMSG_HDRLEN:
            raise NetlinkDecodeError("truncated netlink header", off)
        ln, mtype, flags, seq, pid = unpack(buf, off)
        if ln < NLMSG_HDRLEN or off + ln > end:
            raise NetlinkDecodeError(f"bad netlink message length {ln}", off)
        yield off, ln, mtype, flags, seq, pid
        off += (ln + 3) & ~3


def build_message(
    mtype: int, flags: int, payload: bytes = b"", seq: int = 0, pid: int = 0,
) -> bytes:
    """A complete netlink message (header + payload, padded)."""
    ln = NLMSG_HDRLEN + len(payload)
    return NLMSGHDR.pack(ln, mtype, flags, seq, pid) + payload + b"\0" * (nlmsg_align(ln) - ln)


def build_nfnl(
    mtype: int, flags: int, family: int, attrs: bytes = b"", seq: int = 0, pid: int = 0,
    version: int = 0, res_id: int = 0,
) -> bytes:
    """A complete nfnetlink message: nlmsghdr + nfgenmsg + attributes."""
    return build_message(mtype, flags, NFGENMSG.pack(family, version, res_id) + attrs, seq, pid)


def set_seq(msg: bytes, seq: int, pid: int | None = None) -> bytes:
    """A copy of ``msg`` with a new sequence number (and port id)."""
    ln, mtype, flags, _, old_pid = NLMSGHDR.unpack_from(msg)
    return NLMSGHDR.pack(ln, mtype, flags, seq, old_pid if pid is None else pid) + msg[NLMSG_HDRLEN:]


INT_MIN = -0x80000000


def error_code(code: int) -> int:
    """The errno of an NLMSG_ERROR code, read as libmnl reads it: the kernel sends
    ``-errno``, a few subsystems ``+errno`` (taken as it is); ``INT_MIN`` has no
    positive counterpart in 32 bits and stays ``INT_MIN`` (glibc calls it ``Unknown
    error -2147483648``)."""
    return code if code > 0 or code == INT_MIN else -code


class NlError:
    """Payload of an NLMSG_ERROR message (``errno`` as :func:`error_code` gives it:
    positive, 0 for an ACK, INT_MIN for that odd code)."""

    __slots__ = ("errno", "request_header", "request", "ext_ack")

    def __init__(self, errno: int, request_header: tuple[int, int, int, int, int],
                 request: bytes, ext_ack: AttrList | None = None) -> None:
        self.errno = errno
        self.request_header = request_header
        self.request = request
        self.ext_ack = ext_ack if ext_ack is not None else AttrList()

    def __repr__(self) -> str:
        return f"NlError(errno={self.errno}, request_header={self.request_header})"

    @property
    def message(self) -> str | None:
        return self.ext_ack.get("NLMSGERR_ATTR_MSG")


def parse_error(buf: bytes | memoryview, off: int, ln: int, flags: int) -> NlError:
    """Decode NLMSG_ERROR at ``buf[off:off+ln]``."""
    body = off + NLMSG_HDRLEN
    if ln < NLMSG_HDRLEN + _ERRNO_AND_HDR.size:
        if ln >= NLMSG_HDRLEN + 4:
            (err,) = NLMSGERR_ERRNO.unpack_from(buf, body)
            return NlError(error_code(err), (0, 0, 0, 0, 0), b"")
        raise NetlinkDecodeError("truncated NLMSG_ERROR", off)
    err, *hdr = _ERRNO_AND_HDR.unpack_from(buf, body)
    req_start = body + 4
    if flags & NLM_F_CAPPED:
        req_len = NLMSG_HDRLEN
    else:
        req_len = min(max(hdr[0], NLMSG_HDRLEN), off + ln - req_start)
    request = bytes(buf[req_start:req_start + req_len])
    ext = AttrList()
    if flags & NLM_F_ACK_TLVS:
        tlv = req_start + nlmsg_align(req_len)
        if tlv < off + ln:
            ext = decode_attrs(C.ATTRS, "nlmsgerr_attrs", buf, tlv, off + ln)
    return NlError(error_code(err), tuple(hdr), request, ext)


CONTROL_NAMES = {NLMSG_NOOP: "NLMSG_NOOP", NLMSG_ERROR: "NLMSG_ERROR", NLMSG_DONE: "NLMSG_DONE",
                 NLMSG_OVERRUN: "NLMSG_OVERRUN"}


class Message:
    """A generically decoded message (tooling, fixtures, pretty printing).

    For nfnetlink messages ``family``/``version``/``res_id`` come from ``nfgenmsg`` and
    ``attrs`` from the schema registered for the message type (:mod:`nfnl.registry`),
    ``name`` is the registered message name; for NLMSG_ERROR
    ``error`` holds the :class:`NlError`.
    """

    __slots__ = ("type", "flags", "seq", "pid", "name", "family", "version", "res_id", "attrs",
                 "error", "raw")

    def __init__(self, type: int, flags: int, seq: int, pid: int, name: str | None = None,
                 family: int | None = None, version: int | None = None,
                 res_id: int | None = None, attrs: AttrList | None = None,
                 error: NlError | None = None, raw: bytes = b"") -> None:
        self.type = type
        self.flags = flags
        self.seq = seq
        self.pid = pid
        self.name = name
        self.family = family
        self.version = version
        self.res_id = res_id
        self.attrs = attrs
        self.error = error
        self.raw = raw

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self) -> str:
        head = self.name or f"type 0x{self.type:x}"
        parts = [f"flags=0x{self.flags:x}", f"seq={self.seq}", f"pid={self.pid}"]
        if self.family is not None:
            parts.append(f"family={self.family}")
        if self.error is not None:
            parts.append(f"error={self.error.errno}")
        if self.attrs is not None:
            parts.append(f"attrs={self.attrs!r}")
        return f"<{head} {' '.join(parts)}>"

    def encode(self, table: Mapping[str, Any] | None = None, set_name: str | None = None) -> bytes:
        from .codec import encode_attrs
        if self.attrs is None or self.family is None:
            return self.raw
        body = encode_attrs(table or {}, set_name, self.attrs)
        return build_nfnl(self.type, self.flags, self.family, body, self.seq, self.pid,
                          self.version or 0, self.res_id or 0)


def decode_message(buf: bytes | memoryview, off: int = 0) -> Message:
    """Decode the message at ``off`` with the schema its subsystem registered
    (:mod:`nfnl.registry`); types nobody registered keep their attributes unnamed."""
    if len(buf) - off < NLMSG_HDRLEN:
        raise NetlinkDecodeError("truncated netlink header", off)
    ln, mtype, flags, seq, pid = NLMSGHDR.unpack_from(buf, off)
    if ln < NLMSG_HDRLEN or off + ln > len(buf):
        raise NetlinkDecodeError(f"bad netlink message length {ln}", off)
    raw = bytes(buf[off:off + ln])
    if mtype < NLMSG_MIN_TYPE:
        msg = Message(mtype, flags, seq, pid, CONTROL_NAMES.get(mtype), raw=raw)
        if mtype == NLMSG_ERROR:
            msg.error = parse_error(buf, off, ln, flags)
        return msg
    if ln < NFNL_HDRLEN:
        raise NetlinkDecodeError("truncated nfgenmsg", off)
    family, version, res_id = NFGENMSG.unpack_from(buf, off + NLMSG_HDRLEN)
    from . import registry  # tooling only: the command path never decodes generically

    spec = registry.message(mtype)
    if spec is None:
        name, table, set_name = None, {}, None
    else:
        (name, set_name), table = spec.body(buf, off, ln), spec.attrs
    attrs = decode_attrs(table, set_name, buf, off + NFNL_HDRLEN, off + ln)
    return Message(mtype, flags, seq, pid, name, family, version, res_id, attrs, raw=raw)


def decode_datagram(buf: bytes | memoryview) -> list[Message]:
    return [decode_message(buf, off) for off, *_ in iter_messages(buf)]


def encode_message(msg: Message) -> bytes:
    """Re-encode a decoded message (inverse of :func:`decode_message`)."""
    if msg.attrs is None or msg.family is None:
        return msg.raw
    from . import registry

    spec = registry.message(msg.type)
    if spec is None:
        return msg.encode({}, None)
    set_name = spec.body(msg.raw, 0, len(msg.raw))[1] if msg.raw else spec.set_name
    return msg.encode(spec.attrs, set_name)


class DumpReader:
    """Sans-IO state of one dump: feed it datagrams, get the data messages back.

    ``feed(buf)`` returns ``[(buf, offset, length), ...]`` for the data messages that
    answer sequence number ``seq`` and sets ``done`` at ``NLMSG_DONE``; an error reply
    raises :class:`~nfnl.errors.NetlinkError` (with ``request`` attached), a finished
    dump whose messages carried ``NLM_F_DUMP_INTR`` raises ``DumpInterrupted``.
    """

    __slots__ = ("seq", "request", "done", "interrupted")

    def __init__(self, seq: int, request: bytes | None = None) -> None:
        self.seq = seq
        self.request = request
        self.done = False
        self.interrupted = False

    def feed(self, buf: bytes) -> list[tuple[bytes, int, int]]:
        from .errors import DumpInterrupted, NetlinkError

        out = []
        seq = self.seq
        off = 0
        end = len(buf)
        unpack = NLMSGHDR.unpack_from
        while off < end:
            if end - off < NLMSG_HDRLEN:
                raise NetlinkDecodeError("truncated netlink header", off)
            mlen, rtype, rflags, rseq, _ = unpack(buf, off)
            if mlen < NLMSG_HDRLEN or off + mlen > end:
                raise NetlinkDecodeError(f"bad netlink message length {mlen}", off)
            if rseq == seq or rseq == 0:
                if rflags & 0x10:  # NLM_F_DUMP_INTR
                    self.interrupted = True
                if rtype >= NLMSG_MIN_TYPE:
                    out.append((buf, off, mlen))
                elif rtype == NLMSG_DONE:
                    self.done = True
                    if self.interrupted:
                        raise DumpInterrupted()
                    return out
                elif rtype == NLMSG_ERROR:
                    err = parse_error(buf, off, mlen, rflags)
                    self.done = True
                    if err.errno:
                        raise NetlinkError(err.errno, self.request, err.message)
                    return out
            off += (mlen + 3) & ~3
        return out
