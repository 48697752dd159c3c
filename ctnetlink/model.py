"""The typed model: :class:`Flow`, :class:`Tuple`, :class:`Expect`, :class:`Event`.

Plain slotted classes with fields named as a user thinks of them (``flow.orig.src``,
``flow.reply.dport``, ``flow.mark``, ``flow.tcp_state``). A field is ``None`` when the
kernel did not send the attribute (or, in a request, when it should not be sent).
Addresses are :mod:`ipaddress` objects; the layer-3 family of a tuple follows from
its addresses. Instances compare by value and print only the fields that are set.
"""
from __future__ import annotations

import enum
import ipaddress
TYPE_CHECKING = False  # typing is not imported at run time: the CLI must start fast
if TYPE_CHECKING:
    from .enums import Status
    from typing import Any, Iterator

from .constants import (
    DCCP_STATE_NAMES, L4_NAMES, SCTP_STATE_NAMES, TCP_STATE_NAMES,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AF_INET = 2
AF_INET6 = 10


class _Record:
    """Value semantics for slotted classes: equality, repr of the set fields, copy."""

    __slots__: tuple[str, ...] = ()

    def __init__(self, **kwargs: Any) -> None:
        for name in self.__slots__:
            setattr(self, name, kwargs.pop(name, None))
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unknown field(s) {', '.join(kwargs)}")

    def _fields(self) -> Iterator[tuple[str, Any]]:
        for name in self.__slots__:
            value = getattr(self, name)
            if value is not None:
                yield name, value

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __hash__(self) -> int:
        return hash(tuple(_hashable(getattr(self, n)) for n in self.__slots__))

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={_short(v)}" for k, v in self._fields())
        return f"{type(self).__name__}({body})"

    def copy(self, **changes: Any):
        """A shallow copy with some fields replaced."""
        new = object.__new__(type(self))
        for name in self.__slots__:
            setattr(new, name, changes.pop(name, getattr(self, name)))
        if changes:
            raise TypeError(f"unknown field(s) {', '.join(changes)}")
        return new

    def to_dict(self) -> dict[str, Any]:
        """The set fields as plain JSON-friendly values (nested records as dicts)."""
        return {k: _plain(v) for k, v in self._fields()}


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _short(v: Any) -> str:
    if isinstance(v, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return repr(str(v))
    if isinstance(v, enum.Enum):
        return str(v.name)
    return repr(v)


def _plain(v: Any) -> Any:
    if isinstance(v, _Record):
        return v.to_dict()
    if isinstance(v, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(v)
    if isinstance(v, enum.Enum):
        return v.name if not isinstance(v, enum.Flag) else int(v)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


class Tuple(_Record):
    """One direction of a connection: addresses, layer-4 protocol and its fields.

    ``sport``/``dport`` are the ports of tcp/udp/udplite/sctp/dccp and the keys of
    GRE (the kernel uses the same attributes). ``zone`` is the per-direction zone
    (``CTA_TUPLE_ZONE``). For ICMPv6 the icmp_* fields hold the ICMPv6 values.
    """

    __slots__ = ("src", "dst", "proto", "sport", "dport", "icmp_type", "icmp_code", "icmp_id",
                 "zone")
    src: IPAddress | None
    dst: IPAddress | None
    proto: int | None
    sport: int | None
    dport: int | None
    icmp_type: int | None
    icmp_code: int | None
    icmp_id: int | None
    zone: int | None

    def __init__(self, src: Any = None, dst: Any = None, proto: int | None = None,
                 sport: int | None = None, dport: int | None = None,
                 icmp_type: int | None = None, icmp_code: int | None = None,
                 icmp_id: int | None = None, zone: int | None = None) -> None:
        self.src = _addr(src)
        self.dst = _addr(dst)
        self.proto = proto
        self.sport = sport
        self.dport = dport
        self.icmp_type = icmp_type
        self.icmp_code = icmp_code
        self.icmp_id = icmp_id
        self.zone = zone

    @property
    def family(self) -> int | None:
        """AF_INET (2) or AF_INET6 (10) from the addresses, None without addresses."""
        a = self.src if self.src is not None else self.dst
        if a is None:
            return None
        return AF_INET if a.version == 4 else AF_INET6

    @property
    def proto_name(self) -> str:
        return L4_NAMES.get(self.proto, "unknown") if self.proto is not None else "unknown"

    def reversed(self) -> "Tuple":
        """The tuple of the other direction (addresses and ports swapped)."""
        return Tuple(self.dst, self.src, self.proto, self.dport, self.sport, self.icmp_type,
                     self.icmp_code, self.icmp_id, None)


def _addr(a: Any) -> IPAddress | None:
    if a is None or isinstance(a, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return a
    return ipaddress.ip_address(a)


class Counters(_Record):
    """Packet and byte counters of one direction (``CTA_COUNTERS_*``)."""

    __slots__ = ("packets", "bytes")
    packets: int | None
    bytes: int | None

    def __init__(self, packets: int | None = None, bytes: int | None = None) -> None:
        self.packets = packets
        self.bytes = bytes


class Timestamp(_Record):
    """Start and stop of a flow in nanoseconds since the epoch (``CTA_TIMESTAMP``)."""

    __slots__ = ("start", "stop")
    start: int | None
    stop: int | None

    def __init__(self, start: int | None = None, stop: int | None = None) -> None:
        self.start = start
        self.stop = stop


class NatRange(_Record):
    """A NAT request/manip (``CTA_NAT_SRC``/``CTA_NAT_DST``)."""

    __slots__ = ("min_ip", "max_ip", "min_port", "max_port")
    min_ip: IPAddress | None
    max_ip: IPAddress | None
    min_port: int | None
    max_port: int | None

    def __init__(self, min_ip: Any = None, max_ip: Any = None, min_port: int | None = None,
                 max_port: int | None = None) -> None:
        self.min_ip = _addr(min_ip)
        self.max_ip = _addr(max_ip)
        self.min_port = min_port
        self.max_port = max_port


class SeqAdj(_Record):
    """TCP sequence adjustment of one direction (``CTA_SEQ_ADJ_*``)."""

    __slots__ = ("correction_pos", "offset_before", "offset_after")

    def __init__(self, correction_pos: int | None = None, offset_before: int | None = None,
                 offset_after: int | None = None) -> None:
        self.correction_pos = correction_pos
        self.offset_before = offset_before
        self.offset_after = offset_after


class Synproxy(_Record):
    """SYN proxy state (``CTA_SYNPROXY``)."""

    __slots__ = ("isn", "its", "tsoff")

    def __init__(self, isn: int | None = None, its: int | None = None, tsoff: int | None = None) -> None:
        self.isn = isn
        self.its = its
        self.tsoff = tsoff


class TcpInfo(_Record):
    """``CTA_PROTOINFO_TCP``; flags are ``(flags, mask)`` pairs."""

    __slots__ = ("state", "wscale_orig", "wscale_reply", "flags_orig", "flags_reply")

    def __init__(self, state: int | None = None, wscale_orig: int | None = None,
                 wscale_reply: int | None = None, flags_orig: tuple[int, int] | None = None,
                 flags_reply: tuple[int, int] | None = None) -> None:
        self.state = state
        self.wscale_orig = wscale_orig
        self.wscale_reply = wscale_reply
        self.flags_orig = flags_orig
        self.flags_reply = flags_reply


class SctpInfo(_Record):
    """``CTA_PROTOINFO_SCTP``."""

    __slots__ = ("state", "vtag_orig", "vtag_reply")

    def __init__(self, state: int | None = None, vtag_orig: int | None = None,
                 vtag_reply: int | None = None) -> None:
        self.state = state
        self.vtag_orig = vtag_orig
        self.vtag_reply = vtag_reply


class DccpInfo(_Record):
    """``CTA_PROTOINFO_DCCP``."""

    __slots__ = ("state", "role", "handshake_seq")

    def __init__(self, state: int | None = None, role: int | None = None,
                 handshake_seq: int | None = None) -> None:
        self.state = state
        self.role = role
        self.handshake_seq = handshake_seq


class Flow(_Record):
    """A conntrack entry (or a request template: unset fields are not sent).

    ``family`` is the nfgenmsg family of the message (2 or 10). ``labels`` and
    ``labels_mask`` are integers (bit n = label n); ``labels_size`` keeps the byte
    length the kernel used so that a re-encoded entry is identical. ``unknown`` keeps
    attributes this schema does not know as ``(type, raw payload)`` pairs.
    """

    __slots__ = (
        "family", "orig", "reply", "master", "status", "status_mask", "timeout", "mark",
        "mark_mask", "secmark", "use", "id", "zone", "tcp", "sctp", "dccp", "helper",
        "helper_info", "nat_src", "nat_dst", "counters_orig", "counters_reply",
        "seq_adj_orig", "seq_adj_reply", "secctx", "timestamp", "labels", "labels_mask",
        "labels_size", "synproxy", "event_timestamp", "unknown",
    )
    family: int | None
    orig: Tuple | None
    reply: Tuple | None
    master: Tuple | None
    status: int | None
    status_mask: int | None
    timeout: int | None
    mark: int | None
    mark_mask: int | None
    secmark: int | None
    use: int | None
    id: int | None
    zone: int | None
    tcp: TcpInfo | None
    sctp: SctpInfo | None
    dccp: DccpInfo | None
    helper: str | None
    helper_info: bytes | None
    nat_src: NatRange | None
    nat_dst: NatRange | None
    counters_orig: Counters | None
    counters_reply: Counters | None
    seq_adj_orig: SeqAdj | None
    seq_adj_reply: SeqAdj | None
    secctx: str | None
    timestamp: Timestamp | None
    labels: int | None
    labels_mask: int | None
    labels_size: int | None
    synproxy: Synproxy | None
    event_timestamp: int | None
    unknown: tuple[tuple[int, bytes], ...] | None

    # --- conveniences -------------------------------------------------------------
    @property
    def proto(self) -> int | None:
        """Layer-4 protocol number of the original direction."""
        t = self.orig or self.reply
        return t.proto if t is not None else None

    @property
    def tcp_state(self) -> int | None:
        return self.tcp.state if self.tcp is not None else None

    @property
    def state(self) -> int | None:
        """The protocol state (TCP, SCTP or DCCP), whichever is present."""
        for info in (self.tcp, self.sctp, self.dccp):
            if info is not None and info.state is not None:
                return info.state
        return None

    @property
    def state_name(self) -> str | None:
        if self.tcp is not None and self.tcp.state is not None:
            return _name(TCP_STATE_NAMES, self.tcp.state)
        if self.sctp is not None and self.sctp.state is not None:
            return _name(SCTP_STATE_NAMES, self.sctp.state)
        if self.dccp is not None and self.dccp.state is not None:
            return _name(DCCP_STATE_NAMES, self.dccp.state)
        return None

    @property
    def counters(self) -> tuple[Counters | None, Counters | None]:
        """(original, reply) counters."""
        return self.counters_orig, self.counters_reply

    @property
    def status_flags(self) -> Status | None:
        from .enums import Status

        return Status(self.status) if self.status is not None else None

    @property
    def label_bits(self) -> list[int]:
        """The set label bit numbers in ascending order."""
        v = self.labels or 0
        out = []
        bit = 0
        while v:
            if v & 1:
                out.append(bit)
            v >>= 1
            bit += 1
        return out


def _name(names: tuple[str, ...], v: int) -> str:
    return names[v] if 0 <= v < len(names) else "NONE"


class Expect(_Record):
    """An expectation (``CTA_EXPECT_*``): the expected ``tuple`` under ``mask``,
    created on behalf of the ``master`` connection by ``helper``."""

    __slots__ = ("family", "master", "tuple", "mask", "timeout", "id", "helper", "zone", "flags",
                 "klass", "nat_dir", "nat_tuple", "fn", "unknown")
    family: int | None
    master: Tuple | None
    tuple: Tuple | None
    mask: Tuple | None
    timeout: int | None
    id: int | None
    helper: str | None
    zone: int | None
    flags: int | None
    klass: int | None
    nat_dir: int | None
    nat_tuple: Tuple | None
    fn: str | None
    unknown: tuple[tuple[int, bytes], ...] | None


class EventType(enum.IntEnum):
    NEW = 1
    UPDATE = 2
    DESTROY = 3


class Event(_Record):
    """A multicast notification: ``type`` and the ``flow`` (or ``expect``) it is about.

    ``portid`` is the netlink port id of the process whose request caused the event (0
    for events caused by packets); ``lost`` is set on the first event after a receive
    buffer overrun to the number of messages the kernel dropped meanwhile; ``resync`` is
    True on the events a resynchronisation made after such a loss (see
    :class:`ctnetlink.listen.Listener`).
    """

    __slots__ = ("type", "flow", "expect", "portid", "lost", "resync")
    type: EventType
    flow: Flow | None
    expect: Expect | None
    portid: int | None
    lost: int | None
    resync: bool | None

    @property
    def object(self) -> Flow | Expect:
        return self.flow if self.flow is not None else self.expect  # type: ignore[return-value]


class CpuStats(_Record):
    """One CPU's statistics (``-S``): attribute name -> value, plus the cpu number."""

    __slots__ = ("cpu", "values")
    cpu: int
    values: dict[str, int]
