"""The typed model: :class:`Flow`, :class:`Tuple`, :class:`FlowKey`, :class:`Expect`, :class:`Event`.

Two kinds of classes, named as a user thinks of the fields (``flow.orig.src``,
``flow.reply.dport``, ``flow.mark``, ``flow.tcp_state``):

* Records — :class:`Tuple`, :class:`FlowKey`, :class:`ExpectKey`, :class:`Counters`,
  :class:`Timestamp`, :class:`NatRange`, :class:`SeqAdj`, :class:`Synproxy`,
  :class:`TcpInfo`, :class:`SctpInfo`, :class:`DccpInfo` — are immutable and hashable
  values (tuple subclasses with named fields, like ``namedtuple``): assignment raises,
  ``replace(**changes)`` returns a changed copy, and they are equal only to records of
  the same class with equal fields.
* Containers — :class:`Flow`, :class:`Expect`, :class:`Event`, :class:`CpuStats` — are
  mutable, compare by value and are unhashable (like ``dict``). A flow's identity is
  :attr:`Flow.key`, an immutable :class:`FlowKey`, the same for every copy and every
  event of one connection.

Constructors take keyword arguments only. A field is ``None`` when the kernel did not
send the attribute (or, in a request, when it should not be sent). Addresses are
:mod:`ipaddress` objects (strings are converted); the layer-3 family of a tuple follows
from its addresses. Status and protocol states accept enums, numbers or names
(``status="ASSURED|SEEN_REPLY"``, ``tcp_state="ESTABLISHED"``) and read back as the
enums of :mod:`ctnetlink.enums` (``Status`` is an ``IntFlag``).
"""
from __future__ import annotations

import ipaddress

TYPE_CHECKING = False  # typing is not imported at run time: the CLI must start fast
if TYPE_CHECKING:
    from typing import Any, Iterable, Iterator

    from .enums import DccpState, EventType, SctpState, Status, TcpState

from .constants import (
    DCCP_STATE_NAMES, ICMP_PROTOS, ICMP_REPLY_TYPES, L4_NAMES, NO_ICMP_REPLY,
    PORT_ATTR_PROTOS, SCTP_STATE_NAMES, STATUS_NAMES, TCP_STATE_NAMES,
)

try:
    from _collections import _tuplegetter
except ImportError:  # pragma: no cover - not CPython
    from operator import itemgetter

    def _tuplegetter(index: int, doc: str | None) -> Any:
        return property(itemgetter(index), doc=doc)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AF_INET = 2
AF_INET6 = 10
_V4 = ipaddress.IPv4Address
_V6 = ipaddress.IPv6Address
_tnew = tuple.__new__
_onew = object.__new__


# --- conversions: names and enums in, raw numbers stored, enums out ---------------------

def _addr(a: Any) -> IPAddress | None:
    if a is None or type(a) is _V4 or type(a) is _V6:
        return a
    return ipaddress.ip_address(a)


def _names_value(value: Any, names: tuple[str, ...], what: str) -> int | None:
    """An enum member, a number or a (case-insensitive) name -> the number."""
    if value is None:
        return None
    if isinstance(value, str):
        key = value.strip().upper()
        if key in names:
            return names.index(key)
        raise ValueError(f"unknown {what} {value!r} (one of {', '.join(names)})")
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    raise TypeError(f"{what} must be a name or a number, not {type(value).__name__}")


def status_value(value: Any) -> int | None:
    """A status given as a :class:`~ctnetlink.enums.Status`, a number, names joined by
    ``|`` (``"ASSURED|SEEN_REPLY"``) or an iterable of names/flags -> the bits."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    words: Iterable[Any]
    if isinstance(value, str):
        words = [w for w in value.replace(",", "|").split("|") if w.strip()]
    else:
        try:
            words = list(value)
        except TypeError:
            raise TypeError(f"status must be a Status, a number or names, not {type(value).__name__}") from None
    bits = 0
    for w in words:
        if isinstance(w, str):
            key = w.strip().upper()
            if key not in STATUS_NAMES:
                raise ValueError(f"unknown status bit {w!r} (one of {', '.join(STATUS_NAMES)})")
            bits |= 1 << STATUS_NAMES.index(key)
        elif isinstance(w, int) and not isinstance(w, bool):
            bits |= int(w)
        else:
            raise TypeError(f"status names must be strings, not {type(w).__name__}")
    return bits


_STATUS_CACHE: dict[int, Any] = {}
_STATE_TABLES: dict[str, tuple] = {}


def _status_enum(v: int | None) -> Status | None:
    if v is None:
        return None
    s = _STATUS_CACHE.get(v)
    if s is None:
        from .enums import Status

        if len(_STATUS_CACHE) > 4096:
            _STATUS_CACHE.clear()
        s = _STATUS_CACHE[v] = Status(v)
    return s


def _state_table(kind: str) -> tuple:
    from . import enums

    table = _STATE_TABLES[kind] = tuple(getattr(enums, kind))
    return table


def _state_enum(v: int | None, kind: str) -> Any:
    """A raw protocol state -> its enum member (the raw number when it has none)."""
    if v is None:
        return None
    table = _STATE_TABLES.get(kind) or _state_table(kind)
    return table[v] if 0 <= v < len(table) else v


# --- records ----------------------------------------------------------------------------

def _getters(fields: tuple[str, ...]) -> tuple:
    """Field accessors of a record class (C-level, like ``namedtuple``'s)."""
    return tuple(_tuplegetter(i, f"Field {i}: {name}") for i, name in enumerate(fields))


class _Record(tuple):
    """Immutable named fields over a tuple: value equality within one class, hashing,
    ``replace()``, a repr of the set fields. Subclasses list ``_fields``, unpack
    ``_getters(_fields)`` into the field names and define ``__new__`` with keyword-only
    arguments (conversions happen there)."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    @classmethod
    def _make(cls, values: Iterable[Any]) -> Any:
        """A record from raw field values in ``_fields`` order (no conversion)."""
        return _tnew(cls, values)

    def __eq__(self, other: object) -> bool:
        # not NotImplemented: tuple's own comparison would then find a plain tuple (or a
        # record of another class) with the same values equal
        return type(other) is type(self) and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return type(other) is not type(self) or tuple.__ne__(self, other)

    __hash__ = tuple.__hash__

    def __lt__(self, other: object) -> bool:
        return NotImplemented

    __le__ = __gt__ = __ge__ = __lt__

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: use .replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple:
        return (type(self)._make, (tuple(self),))

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={_short(getattr(self, k))}" for k, v in zip(self._fields, self)
                         if v is not None)
        return f"{type(self).__name__}({body})"

    def replace(self, **changes: Any) -> Any:
        """A copy with some fields replaced (converted as the constructor converts)."""
        values = dict(zip(self._fields, self))
        for k in changes:
            if k not in values:
                raise TypeError(f"{type(self).__name__}.replace() got an unexpected keyword argument {k!r}")
        values.update(changes)
        return type(self)(**values)

    def to_dict(self) -> dict[str, Any]:
        """The set fields as plain JSON-friendly values (states as numbers)."""
        return {k: _plain(getattr(self, k)) for k, v in zip(self._fields, self) if v is not None}


class Tuple(_Record):
    """One direction of a connection: addresses, layer-4 protocol and its fields.

    ``sport``/``dport`` are the ports of tcp/udp/udplite/sctp/dccp and the keys of
    GRE (the kernel uses the same attributes). ``zone`` is the per-direction zone
    (``CTA_TUPLE_ZONE``). For ICMPv6 the icmp_* fields hold the ICMPv6 values.
    """

    __slots__ = ()
    _fields = ("src", "dst", "proto", "sport", "dport", "icmp_type", "icmp_code", "icmp_id",
               "zone")
    src, dst, proto, sport, dport, icmp_type, icmp_code, icmp_id, zone = _getters(_fields)
    __match_args__ = _fields
    src: IPAddress | None
    dst: IPAddress | None
    proto: int | None
    sport: int | None
    dport: int | None
    icmp_type: int | None
    icmp_code: int | None
    icmp_id: int | None
    zone: int | None

    def __new__(cls, *, src: IPAddress | str | None = None, dst: IPAddress | str | None = None,
                proto: int | None = None, sport: int | None = None, dport: int | None = None,
                icmp_type: int | None = None, icmp_code: int | None = None,
                icmp_id: int | None = None, zone: int | None = None) -> Tuple:
        return _tnew(cls, (_addr(src), _addr(dst), proto, sport, dport, icmp_type, icmp_code,
                           icmp_id, zone))

    @property
    def family(self) -> int | None:
        """AF_INET (2) or AF_INET6 (10) from the addresses, None without addresses."""
        a = self[0] if self[0] is not None else self[1]
        if a is None:
            return None
        return AF_INET if a.version == 4 else AF_INET6

    @property
    def proto_name(self) -> str:
        return L4_NAMES.get(self[2], "unknown") if self[2] is not None else "unknown"

    def reversed(self) -> Tuple:
        """The tuple of the other direction, as ``conntrack -I`` derives a reply tuple
        (libnetfilter_conntrack's ``NFCT_SOPT_SETUP_REPLY``): addresses swapped, ports
        (and GRE keys) swapped, an ICMP/ICMPv6 query type turned into its answer type
        (echo request -> echo reply ...; 255 for types without one), code and id kept.
        The zone is not carried over."""
        src, dst, proto, sport, dport, itype, icode, iid, _zone = self
        if proto in PORT_ATTR_PROTOS:
            return _tnew(Tuple, (dst, src, proto, dport, sport, None, None, None, None))
        if proto in ICMP_PROTOS:
            if itype is not None:
                itype = ICMP_REPLY_TYPES[proto].get(itype, NO_ICMP_REPLY)
            return _tnew(Tuple, (dst, src, proto, None, None, itype, icode, iid, None))
        return _tnew(Tuple, (dst, src, proto, sport, dport, itype, icode, iid, None))


class FlowKey(_Record):
    """The identity of a conntrack entry: what the kernel looks it up by in the original
    direction. ``orig`` is the original tuple without its ``zone``; ``zone`` is the zone
    id of the original direction (``CTA_ZONE``, else the original tuple's
    ``CTA_TUPLE_ZONE``, else 0). See :attr:`Flow.key`."""

    __slots__ = ()
    _fields = ("family", "orig", "zone")
    family, orig, zone = _getters(_fields)
    __match_args__ = _fields
    family: int
    orig: Tuple
    zone: int

    def __new__(cls, *, family: int, orig: Tuple, zone: int = 0) -> FlowKey:
        if type(orig) is not Tuple:
            raise TypeError(f"FlowKey orig must be a Tuple, not {type(orig).__name__}")
        if orig[8] is not None:
            orig = _tnew(Tuple, orig[:8] + (None,))
        return _tnew(cls, (family, orig, zone))


class ExpectKey(_Record):
    """The identity of an expectation: family, expected tuple (without zone) and zone.
    See :attr:`Expect.key`."""

    __slots__ = ()
    _fields = ("family", "tuple", "zone")
    family, tuple, zone = _getters(_fields)
    __match_args__ = _fields
    family: int
    tuple: Tuple
    zone: int

    def __new__(cls, *, family: int, tuple: Tuple, zone: int = 0) -> ExpectKey:
        if type(tuple) is not Tuple:
            raise TypeError(f"ExpectKey tuple must be a Tuple, not {type(tuple).__name__}")
        if tuple[8] is not None:
            tuple = _tnew(Tuple, tuple[:8] + (None,))
        return _tnew(cls, (family, tuple, zone))


class Counters(_Record):
    """Packet and byte counters of one direction (``CTA_COUNTERS_*``)."""

    __slots__ = ()
    _fields = ("packets", "bytes")
    packets, bytes = _getters(_fields)
    __match_args__ = _fields
    packets: int | None
    bytes: int | None

    def __new__(cls, *, packets: int | None = None, bytes: int | None = None) -> Counters:
        return _tnew(cls, (packets, bytes))


class Timestamp(_Record):
    """Start and stop of a flow in nanoseconds since the epoch (``CTA_TIMESTAMP``)."""

    __slots__ = ()
    _fields = ("start", "stop")
    start, stop = _getters(_fields)
    __match_args__ = _fields
    start: int | None
    stop: int | None

    def __new__(cls, *, start: int | None = None, stop: int | None = None) -> Timestamp:
        return _tnew(cls, (start, stop))


class NatRange(_Record):
    """A NAT request/manip (``CTA_NAT_SRC``/``CTA_NAT_DST``)."""

    __slots__ = ()
    _fields = ("min_ip", "max_ip", "min_port", "max_port")
    min_ip, max_ip, min_port, max_port = _getters(_fields)
    __match_args__ = _fields
    min_ip: IPAddress | None
    max_ip: IPAddress | None
    min_port: int | None
    max_port: int | None

    def __new__(cls, *, min_ip: IPAddress | str | None = None,
                max_ip: IPAddress | str | None = None, min_port: int | None = None,
                max_port: int | None = None) -> NatRange:
        return _tnew(cls, (_addr(min_ip), _addr(max_ip), min_port, max_port))


class SeqAdj(_Record):
    """TCP sequence adjustment of one direction (``CTA_SEQ_ADJ_*``)."""

    __slots__ = ()
    _fields = ("correction_pos", "offset_before", "offset_after")
    correction_pos, offset_before, offset_after = _getters(_fields)
    __match_args__ = _fields
    correction_pos: int | None
    offset_before: int | None
    offset_after: int | None

    def __new__(cls, *, correction_pos: int | None = None, offset_before: int | None = None,
                offset_after: int | None = None) -> SeqAdj:
        return _tnew(cls, (correction_pos, offset_before, offset_after))


class Synproxy(_Record):
    """SYN proxy state (``CTA_SYNPROXY``)."""

    __slots__ = ()
    _fields = ("isn", "its", "tsoff")
    isn, its, tsoff = _getters(_fields)
    __match_args__ = _fields
    isn: int | None
    its: int | None
    tsoff: int | None

    def __new__(cls, *, isn: int | None = None, its: int | None = None,
                tsoff: int | None = None) -> Synproxy:
        return _tnew(cls, (isn, its, tsoff))


class TcpInfo(_Record):
    """``CTA_PROTOINFO_TCP``: ``state`` reads as a :class:`~ctnetlink.enums.TcpState`
    (accepts a name or number); flags are ``(flags, mask)`` pairs."""

    __slots__ = ()
    _fields = ("state", "wscale_orig", "wscale_reply", "flags_orig", "flags_reply")
    _state, wscale_orig, wscale_reply, flags_orig, flags_reply = _getters(_fields)
    __match_args__ = _fields
    wscale_orig: int | None
    wscale_reply: int | None
    flags_orig: tuple[int, int] | None
    flags_reply: tuple[int, int] | None

    def __new__(cls, *, state: TcpState | str | int | None = None,
                wscale_orig: int | None = None, wscale_reply: int | None = None,
                flags_orig: tuple[int, int] | None = None,
                flags_reply: tuple[int, int] | None = None) -> TcpInfo:
        return _tnew(cls, (_names_value(state, TCP_STATE_NAMES, "TCP state"), wscale_orig,
                           wscale_reply, flags_orig, flags_reply))

    @property
    def state(self) -> TcpState | None:
        return _state_enum(self[0], "TcpState")


class SctpInfo(_Record):
    """``CTA_PROTOINFO_SCTP``: ``state`` reads as a :class:`~ctnetlink.enums.SctpState`.

    To create an entry with SCTP info the kernel needs the state and both tags
    (EINVAL otherwise)."""

    __slots__ = ()
    _fields = ("state", "vtag_orig", "vtag_reply")
    _state, vtag_orig, vtag_reply = _getters(_fields)
    __match_args__ = _fields
    vtag_orig: int | None
    vtag_reply: int | None

    def __new__(cls, *, state: SctpState | str | int | None = None,
                vtag_orig: int | None = None, vtag_reply: int | None = None) -> SctpInfo:
        return _tnew(cls, (_names_value(state, SCTP_STATE_NAMES, "SCTP state"), vtag_orig,
                           vtag_reply))

    @property
    def state(self) -> SctpState | None:
        return _state_enum(self[0], "SctpState")


class DccpInfo(_Record):
    """``CTA_PROTOINFO_DCCP``: ``state`` reads as a :class:`~ctnetlink.enums.DccpState`."""

    __slots__ = ()
    _fields = ("state", "role", "handshake_seq")
    _state, role, handshake_seq = _getters(_fields)
    __match_args__ = _fields
    role: int | None
    handshake_seq: int | None

    def __new__(cls, *, state: DccpState | str | int | None = None, role: int | None = None,
                handshake_seq: int | None = None) -> DccpInfo:
        return _tnew(cls, (_names_value(state, DCCP_STATE_NAMES, "DCCP state"), role,
                           handshake_seq))

    @property
    def state(self) -> DccpState | None:
        return _state_enum(self[0], "DccpState")


# --- containers -------------------------------------------------------------------------

class _Container:
    """Value semantics for the mutable classes: equality over every field, unhashable,
    a repr of the set fields, ``copy(**changes)``. ``_fields`` are the public field
    names; ``__slots__`` the storage (a converted field ``x`` is stored in ``_x``)."""

    __slots__: tuple[str, ...] = ()
    _fields: tuple[str, ...] = ()
    _types: dict[str, type] = {}
    _setters: tuple[str, ...] = ()  # settable conveniences copy() also takes

    __hash__ = None  # type: ignore[assignment]  # mutable: no hash (use .key)

    def _check(self) -> None:
        """Raise TypeError for a record field holding something else (constructors)."""
        for name, want in self._types.items():
            v = getattr(self, name)
            if v is not None and type(v) is not want:
                raise TypeError(f"{type(self).__name__}.{name} must be a {want.__name__}, "
                                f"not {type(v).__name__}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def _set_fields(self) -> Iterator[tuple[str, Any]]:
        for name in self._fields:
            value = getattr(self, name)
            if value is not None:
                yield name, value

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={_short(v)}" for k, v in self._set_fields())
        return f"{type(self).__name__}({body})"

    def copy(self, **changes: Any) -> Any:
        """A shallow copy with some fields replaced."""
        clone = _CLONES.get(type(self)) or _clone_fn(type(self))
        new = clone(self)
        for name, value in changes.items():
            if name not in self._fields and name not in self._setters:
                raise TypeError(f"{type(self).__name__}.copy() got an unexpected keyword argument {name!r}")
            setattr(new, name, value)
        return new

    def to_dict(self) -> dict[str, Any]:
        """The set fields as plain JSON-friendly values (nested records as dicts, status
        and states as numbers)."""
        return {k: _plain(v) for k, v in self._set_fields()}


_MAKERS: dict[type, Any] = {}


def maker(cls: type) -> Any:
    """A fast positional constructor of ``cls``: every field in ``_fields`` order (a
    slotted class without ``_fields``: every slot), stored as given without conversion
    or validation. For generated decoders; records become tuples, containers get each
    storage slot assigned."""
    fn = _MAKERS.get(cls)
    if fn is not None:
        return fn
    slots = tuple(getattr(cls, "__slots__", ()))
    names = tuple(getattr(cls, "_fields", slots))
    args = ", ".join(names)
    if issubclass(cls, tuple):
        src = f"def make({args}):\n    return _tn(_cls, ({args}{',' if names else ''}))\n"
    else:
        body = "".join(f"    o.{s} = {n}\n" for n, s in zip(names, slots))
        src = f"def make({args}):\n    o = _new(_cls)\n{body}    return o\n"
    ns: dict[str, Any] = {"_tn": _tnew, "_new": _onew, "_cls": cls}
    exec(src, ns)  # noqa: S102 - generated from the field names only
    fn = _MAKERS[cls] = ns["make"]
    return fn


_CLONES: dict[type, Any] = {}


def _clone_fn(cls: type) -> Any:
    """A generated shallow copy for a container class (every slot assigned)."""
    body = "".join(f"    n.{s} = o.{s}\n" for s in cls.__slots__)
    ns: dict[str, Any] = {"_new": _onew, "_cls": cls}
    exec(f"def clone(o):\n    n = _new(_cls)\n{body}    return n\n", ns)  # noqa: S102
    fn = _CLONES[cls] = ns["clone"]
    return fn


def _short(v: Any) -> str:
    if type(v) is _V4 or type(v) is _V6:
        return repr(str(v))
    if _is_enum(v):  # by name, as the constructors accept it ("SEEN_REPLY|ASSURED")
        name = v.name
        if name and all(part.isidentifier() for part in name.split("|")):
            return repr(name)
        return repr(int(v))
    return repr(v)


def _plain(v: Any) -> Any:
    if isinstance(v, (_Record, _Container)):
        return v.to_dict()
    if type(v) is _V4 or type(v) is _V6:
        return str(v)
    if _is_enum(v):  # status and states as the numbers the kernel uses
        return int(v)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _is_enum(v: Any) -> bool:
    import enum

    return isinstance(v, enum.Enum)


_FLOW_FIELDS = (
    "family", "orig", "reply", "master", "status", "status_mask", "timeout", "mark",
    "mark_mask", "secmark", "use", "id", "zone", "tcp", "sctp", "dccp", "helper",
    "helper_info", "nat_src", "nat_dst", "counters_orig", "counters_reply",
    "seq_adj_orig", "seq_adj_reply", "secctx", "timestamp", "labels", "labels_mask",
    "labels_size", "synproxy", "event_timestamp", "unknown",
)


class Flow(_Container):
    """A conntrack entry (or a request template: unset fields are not sent).

    ``family`` is the nfgenmsg family of the message (2 or 10). ``status`` reads as a
    :class:`~ctnetlink.enums.Status` (``IntFlag``) and accepts one, a number, names
    (``"ASSURED|SEEN_REPLY"``) or an iterable of names; ``status_bits`` is the same
    value as a plain int (cheap, for hot loops); ``tcp_state``/``sctp_state``/
    ``dccp_state`` read and set the state inside ``tcp``/``sctp``/``dccp``. ``labels``
    and ``labels_mask`` are integers (bit n = label n); ``labels_size`` keeps the byte
    length the kernel used so that a re-encoded entry is identical. ``unknown`` keeps
    attributes this schema does not know as ``(type, raw payload)`` pairs.

    A Flow is mutable and therefore unhashable; its identity is :attr:`key`.
    ``Flow(orig=Tuple(...), timeout=...)`` is enough for :meth:`Conntrack.create
    <ctnetlink.client.Conntrack.create>`: the reply tuple is derived when not given.
    """

    __slots__ = tuple(n + "_bits" if n in ("status", "status_mask") else n for n in _FLOW_FIELDS)
    _fields = _FLOW_FIELDS
    _setters = ("tcp_state", "sctp_state", "dccp_state")
    family: int | None
    orig: Tuple | None
    reply: Tuple | None
    master: Tuple | None
    #: the raw ``CTA_STATUS`` number behind :attr:`status` (no conversion: for hot loops)
    status_bits: int | None
    #: the raw ``CTA_STATUS_MASK`` number behind :attr:`status_mask`
    status_mask_bits: int | None
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

    def __init__(
        self, *, family: int | None = None, orig: Tuple | None = None,
        reply: Tuple | None = None, master: Tuple | None = None,
        status: Status | int | str | Iterable[str] | None = None,
        status_mask: Status | int | str | Iterable[str] | None = None,
        timeout: int | None = None, mark: int | None = None, mark_mask: int | None = None,
        secmark: int | None = None, use: int | None = None, id: int | None = None,
        zone: int | None = None, tcp: TcpInfo | None = None, sctp: SctpInfo | None = None,
        dccp: DccpInfo | None = None, helper: str | None = None,
        helper_info: bytes | None = None, nat_src: NatRange | None = None,
        nat_dst: NatRange | None = None, counters_orig: Counters | None = None,
        counters_reply: Counters | None = None, seq_adj_orig: SeqAdj | None = None,
        seq_adj_reply: SeqAdj | None = None, secctx: str | None = None,
        timestamp: Timestamp | None = None, labels: int | None = None,
        labels_mask: int | None = None, labels_size: int | None = None,
        synproxy: Synproxy | None = None, event_timestamp: int | None = None,
        unknown: tuple[tuple[int, bytes], ...] | None = None,
        tcp_state: TcpState | str | int | None = None,
        sctp_state: SctpState | str | int | None = None,
        dccp_state: DccpState | str | int | None = None,
    ) -> None:
        self.family = family
        self.orig = orig
        self.reply = reply
        self.master = master
        self.status_bits = status_value(status)
        self.status_mask_bits = status_value(status_mask)
        self.timeout = timeout
        self.mark = mark
        self.mark_mask = mark_mask
        self.secmark = secmark
        self.use = use
        self.id = id
        self.zone = zone
        self.tcp = tcp
        self.sctp = sctp
        self.dccp = dccp
        self.helper = helper
        self.helper_info = helper_info
        self.nat_src = nat_src
        self.nat_dst = nat_dst
        self.counters_orig = counters_orig
        self.counters_reply = counters_reply
        self.seq_adj_orig = seq_adj_orig
        self.seq_adj_reply = seq_adj_reply
        self.secctx = secctx
        self.timestamp = timestamp
        self.labels = labels
        self.labels_mask = labels_mask
        self.labels_size = labels_size
        self.synproxy = synproxy
        self.event_timestamp = event_timestamp
        self.unknown = unknown
        self._check()
        if tcp_state is not None:
            self.tcp_state = tcp_state  # type: ignore[assignment]
        if sctp_state is not None:
            self.sctp_state = sctp_state  # type: ignore[assignment]
        if dccp_state is not None:
            self.dccp_state = dccp_state  # type: ignore[assignment]

    # --- converted fields ----------------------------------------------------------
    @property
    def status(self) -> Status | None:
        """The ``enum ip_conntrack_status`` bits (``CTA_STATUS``) as a Status flag."""
        return _status_enum(self.status_bits)

    @status.setter
    def status(self, value: Status | int | str | Iterable[str] | None) -> None:
        self.status_bits = status_value(value)

    @property
    def status_mask(self) -> Status | None:
        """``CTA_STATUS_MASK`` (requests): which status bits a request changes/selects."""
        return _status_enum(self.status_mask_bits)

    @status_mask.setter
    def status_mask(self, value: Status | int | str | Iterable[str] | None) -> None:
        self.status_mask_bits = status_value(value)

    status_flags = status

    @property
    def tcp_state(self) -> TcpState | None:
        return _state_enum(self.tcp[0], "TcpState") if self.tcp is not None else None

    @tcp_state.setter
    def tcp_state(self, value: TcpState | str | int | None) -> None:
        self.tcp = (self.tcp or TcpInfo()).replace(state=value)

    @property
    def sctp_state(self) -> SctpState | None:
        return _state_enum(self.sctp[0], "SctpState") if self.sctp is not None else None

    @sctp_state.setter
    def sctp_state(self, value: SctpState | str | int | None) -> None:
        self.sctp = (self.sctp or SctpInfo()).replace(state=value)

    @property
    def dccp_state(self) -> DccpState | None:
        return _state_enum(self.dccp[0], "DccpState") if self.dccp is not None else None

    @dccp_state.setter
    def dccp_state(self, value: DccpState | str | int | None) -> None:
        self.dccp = (self.dccp or DccpInfo()).replace(state=value)

    # --- identity -------------------------------------------------------------------
    @property
    def key(self) -> FlowKey:
        """The stable identity of the connection (a hashable :class:`FlowKey`): family,
        the original tuple without zone, and the zone of the original direction.

        The same for every copy, every update and every NEW/UPDATE/DESTROY event of one
        entry; the key of a cache. ValueError when the flow has no original tuple."""
        o = self.orig
        if o is None:
            raise ValueError("a flow without an original tuple has no key")
        fam = self.family
        if fam is None:
            fam = o.family or 0
        zone = self.zone
        if zone is None:
            zone = o[8] if o[8] is not None else 0
        if o[8] is not None:
            o = _tnew(Tuple, o[:8] + (None,))
        return _tnew(FlowKey, (fam, o, zone))

    # --- state tracking ---------------------------------------------------------------
    def merge(self, update: Flow) -> Flow:
        """This flow with a (partial) update applied: a new Flow.

        ``update`` is typically the flow of an event, which carries only some
        attributes. NEW and UPDATE events: tuples, id, status, timeout, the protocol
        info, helper, the mark when it is not 0 or changed, labels, sequence adjustment
        and synproxy when they changed, the event timestamp; DESTROY events: tuples, id,
        status, timeout, the TCP state alone, counters and start/stop timestamps (when
        accounting and timestamps are on). None carries ``use``. Every field set in
        ``update`` replaces this flow's; in the records of ``tcp``/``sctp``/``dccp``,
        counters, timestamp, sequence adjustments and synproxy only the set fields do.
        ValueError when the keys differ."""
        if update.orig is not None and self.orig is not None and update.key != self.key:
            raise ValueError("merge() of an update of another flow")
        new = self.copy()
        for slot in self.__slots__:
            v = getattr(update, slot)
            if v is None:
                continue
            old = getattr(self, slot)
            if old is not None and slot in _MERGED_RECORDS:
                v = _tnew(type(v), tuple(b if b is not None else a for a, b in zip(old, v)))
            setattr(new, slot, v)
        return new

    def diff(self, other: Flow) -> dict[str, tuple[Any, Any]]:
        """The fields that differ between this flow and ``other``:
        ``{name: (value here, value there)}`` in field order.

        Names of fields inside records are dotted (``"tcp.state"``, ``"orig.sport"``,
        ``"counters_orig.packets"``); a missing record counts as one whose fields are all
        None. Values read as the fields do (enums for status and states)."""
        out: dict[str, tuple[Any, Any]] = {}
        for name in self._fields:
            a, b = getattr(self, name), getattr(other, name)
            if a == b:
                continue
            rec = a if isinstance(a, _Record) else b if isinstance(b, _Record) else None
            if rec is None or (a is not None and type(a) is not type(rec)) or \
                    (b is not None and type(b) is not type(rec)):
                out[name] = (a, b)
                continue
            for f in rec._fields:
                x = getattr(a, f) if a is not None else None
                y = getattr(b, f) if b is not None else None
                if x != y:
                    out[f"{name}.{f}"] = (x, y)
        return out

    # --- conveniences -------------------------------------------------------------
    @property
    def proto(self) -> int | None:
        """Layer-4 protocol number of the original direction."""
        t = self.orig or self.reply
        return t[2] if t is not None else None

    @property
    def state(self) -> TcpState | SctpState | DccpState | None:
        """The protocol state (TCP, SCTP or DCCP), whichever is present."""
        for info, kind in ((self.tcp, "TcpState"), (self.sctp, "SctpState"),
                           (self.dccp, "DccpState")):
            if info is not None and info[0] is not None:
                return _state_enum(info[0], kind)
        return None

    @property
    def state_name(self) -> str | None:
        for info, names in ((self.tcp, TCP_STATE_NAMES), (self.sctp, SCTP_STATE_NAMES),
                            (self.dccp, DCCP_STATE_NAMES)):
            if info is not None and info[0] is not None:
                v = info[0]
                return names[v] if 0 <= v < len(names) else "NONE"
        return None

    @property
    def counters(self) -> tuple[Counters | None, Counters | None]:
        """(original, reply) counters."""
        return self.counters_orig, self.counters_reply

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


_MERGED_RECORDS = frozenset(("tcp", "sctp", "dccp", "counters_orig", "counters_reply",
                             "timestamp", "seq_adj_orig", "seq_adj_reply", "synproxy"))
Flow._types = {n: t for n, t in (
    ("orig", Tuple), ("reply", Tuple), ("master", Tuple), ("tcp", TcpInfo),
    ("sctp", SctpInfo), ("dccp", DccpInfo), ("nat_src", NatRange), ("nat_dst", NatRange),
    ("counters_orig", Counters), ("counters_reply", Counters), ("seq_adj_orig", SeqAdj),
    ("seq_adj_reply", SeqAdj), ("timestamp", Timestamp), ("synproxy", Synproxy))}


class Expect(_Container):
    """An expectation (``CTA_EXPECT_*``): the expected ``tuple`` under ``mask``,
    created on behalf of the ``master`` connection by ``helper``.

    Mutable and unhashable like :class:`Flow`; its identity is :attr:`key`."""

    __slots__ = ("family", "master", "tuple", "mask", "timeout", "id", "helper", "zone", "flags",
                 "klass", "nat_dir", "nat_tuple", "fn", "unknown")
    _fields = __slots__
    _types = {"master": Tuple, "tuple": Tuple, "mask": Tuple, "nat_tuple": Tuple}
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

    def __init__(
        self, *, family: int | None = None, master: Tuple | None = None,
        tuple: Tuple | None = None, mask: Tuple | None = None, timeout: int | None = None,
        id: int | None = None, helper: str | None = None, zone: int | None = None,
        flags: int | None = None, klass: int | None = None, nat_dir: int | None = None,
        nat_tuple: Tuple | None = None, fn: str | None = None,
        unknown: tuple[tuple[int, bytes], ...] | None = None,
    ) -> None:
        self.family = family
        self.master = master
        self.tuple = tuple
        self.mask = mask
        self.timeout = timeout
        self.id = id
        self.helper = helper
        self.zone = zone
        self.flags = flags
        self.klass = klass
        self.nat_dir = nat_dir
        self.nat_tuple = nat_tuple
        self.fn = fn
        self.unknown = unknown
        self._check()

    @property
    def key(self) -> ExpectKey:
        """The identity of the expectation (a hashable :class:`ExpectKey`): family,
        expected tuple without zone, zone. ValueError without an expected tuple."""
        t = self.tuple
        if t is None:
            raise ValueError("an expectation without a tuple has no key")
        fam = self.family
        if fam is None:
            fam = t.family or 0
        zone = self.zone
        if zone is None:
            zone = t[8] if t[8] is not None else 0
        if t[8] is not None:
            t = _tnew(Tuple, t[:8] + (None,))
        return _tnew(ExpectKey, (fam, t, zone))


class Event(_Container):
    """A multicast notification: ``type`` and the ``flow`` (or ``expect``) it is about.

    ``portid`` is the netlink port id of the process whose request caused the event (0
    for events caused by packets); ``lost`` is set on the first event after a receive
    buffer overrun to the number of messages the kernel dropped meanwhile; ``resync`` is
    True on the events a resynchronisation made after such a loss (see
    :class:`ctnetlink.listen.Listener`). Mutable and unhashable; ``event.flow.key``
    identifies the connection.
    """

    __slots__ = ("type", "flow", "expect", "portid", "lost", "resync")
    _fields = __slots__
    type: EventType
    flow: Flow | None
    expect: Expect | None
    portid: int | None
    lost: int | None
    resync: bool | None

    def __init__(self, *, type: EventType, flow: Flow | None = None, expect: Expect | None = None,
                 portid: int | None = None, lost: int | None = None,
                 resync: bool | None = None) -> None:
        self.type = type
        self.flow = flow
        self.expect = expect
        self.portid = portid
        self.lost = lost
        self.resync = resync

    @property
    def object(self) -> Flow | Expect:
        return self.flow if self.flow is not None else self.expect  # type: ignore[return-value]


class CpuStats(_Container):
    """One CPU's statistics (``-S``): attribute name -> value, plus the cpu number."""

    __slots__ = ("cpu", "values")
    _fields = __slots__
    cpu: int
    values: dict[str, int]

    def __init__(self, *, cpu: int, values: dict[str, int]) -> None:
        self.cpu = cpu
        self.values = values


def __getattr__(name: str) -> Any:
    """``EventType`` lives in :mod:`ctnetlink.enums` (built on first use: enum classes
    cost start-up time); it is importable from here too."""
    if name == "EventType":
        from .enums import EventType

        return EventType
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
