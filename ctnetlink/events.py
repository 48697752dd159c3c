"""Conntrack events without I/O: multicast datagrams in, :class:`~ctnetlink.model.Event` objects out.

:class:`EventReader` is the one place where event datagrams become events: the blocking
``Conntrack.events()``, ``AsyncConntrack.events()``, :class:`~ctnetlink.listen.Listener`
and ``conntrack -E`` all feed it. It splits a datagram into messages, classifies each
(NEW, UPDATE or DESTROY of a flow or an expectation), filters by family and type, decodes
with the shape decoder of :mod:`ctnetlink.decode` and puts the number of messages lost to
an overrun on the next event. :meth:`EventReader.feed_raw` hands out :class:`RawEvent`
objects instead (the message bytes, decoded only on demand). With ``track=True`` the
reader remembers which flows it reported alive (by :attr:`RawEvent.key`), turns a table
dump into events and synthesises DESTROY events for flows that vanished while events were
lost: the resynchronisation :class:`~ctnetlink.listen.Listener` runs after an overrun.
There is no socket here.
"""
from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: the CLI must start fast
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

from nfnl.errors import NetlinkDecodeError
from nfnl.message import NFGENMSG, NLMSGHDR

from . import constants as K
from .decode import Decoder, Shape, event_builder
from .model import Event, EventType

_HDR = NLMSGHDR
_CREATE = 0x400  # NLM_F_CREATE: a NEW message announcing a new entry (else an UPDATE)

_KINDS: dict[int, tuple[EventType, bool]] = {}
"""``nlmsg_type | (flags & NLM_F_CREATE) << 6`` -> (event type, is an expectation)."""
for _sub, _exp in ((K.NFNL_SUBSYS_CTNETLINK, False), (K.NFNL_SUBSYS_CTNETLINK_EXP, True)):
    _KINDS[_sub << 8 | 0] = (EventType.UPDATE, _exp)
    _KINDS[_sub << 8 | 0 | _CREATE << 6] = (EventType.NEW, _exp)
    _KINDS[_sub << 8 | 2] = (EventType.DESTROY, _exp)
    _KINDS[_sub << 8 | 2 | _CREATE << 6] = (EventType.DESTROY, _exp)
del _sub, _exp

FLOWS = Decoder(False)
"""The flow decoder events are decoded with (its shape cache is shared in the process)."""
EXPECTS = Decoder(True)


def event_type(nlmsg_type: int, nlmsg_flags: int) -> EventType | None:
    """The event a ctnetlink multicast message announces (None for other messages)."""
    kind = _KINDS.get(nlmsg_type | (nlmsg_flags & _CREATE) << 6)
    return None if kind is None else kind[0]


def _event_maker() -> Callable[..., Event]:
    """``make(type, flow, expect, portid, lost, resync)``: an Event without the validating
    constructor (every other slot None), generated from ``Event.__slots__``."""
    given = ("type", "flow", "expect", "portid", "lost", "resync")
    body = "".join(f"    o.{s} = {s if s in given else 'None'}\n" for s in Event.__slots__)
    src = f"def make({', '.join(given)}):\n    o = _new(_Event)\n{body}    return o\n"
    ns: dict[str, Any] = {"_new": object.__new__, "_Event": Event}
    exec(src, ns)  # noqa: S102 - generated from __slots__ only
    return ns["make"]


_make_event = _event_maker()


def _key_plan(shape: Shape) -> tuple[int, int, int] | None:
    """(start, end, zone start or 0) of the original tuple and the CTA_ZONE attribute
    in messages of ``shape``, counted from the message start (None: no original tuple)."""
    plan = shape.cache.get("event-key", False)
    if plan is False:
        orig = zone = None
        for name, start, end, _children in shape.tree:
            if name == "CTA_TUPLE_ORIG":
                orig = (start + 20, end + 20)
            elif name == "CTA_ZONE":
                zone = start + 20
        plan = None if orig is None else (orig[0], orig[1], zone or 0)
        shape.cache["event-key"] = plan
    return plan


def _key(buf, off: int, plan: tuple[int, int, int], family: int) -> bytes:
    start, end, zone = plan
    key = bytes((family,)) + buf[off + start:off + end]
    if zone:
        key += buf[off + zone:off + zone + 8]
    return key


class RawEvent(tuple):
    """One event message as bytes: ``buf[off:off + len]`` is the whole netlink message
    (header included), ``attrs`` its attributes. ``type``, ``family`` (nfgen family),
    ``portid`` (the requesting process's port id, 0 for packets) and ``expect`` (an
    expectation, not a flow) come from the headers; ``lost`` and ``resync`` mean what they
    mean on :class:`~ctnetlink.model.Event`. ``buf`` is the received datagram: keep
    ``message`` (a copy) rather than ``buf`` to hold one event's bytes. Immutable (a
    tuple of these fields, in this order: unpack it in hot loops).
    """

    __slots__ = ()
    _fields = ("type", "buf", "off", "len", "family", "portid", "expect", "lost", "resync")
    type: EventType
    buf: bytes
    off: int
    len: int
    family: int
    portid: int
    expect: bool
    lost: int | None
    resync: bool

    def __new__(cls, type: EventType, buf: bytes, off: int, len: int, family: int,
                portid: int = 0, expect: bool = False, lost: int | None = None,
                resync: bool = False) -> RawEvent:
        return _tnew(cls, (type, buf, off, len, family, portid, expect, lost, resync))

    def __repr__(self) -> str:
        extra = "".join(f" {n}={getattr(self, n)!r}" for n in ("lost", "resync") if getattr(self, n))
        what = "expect" if self.expect else "flow"
        return (f"<RawEvent {self.type.name} {what} family={self.family} portid={self.portid} "
                f"{self.len} bytes{extra}>")

    @property
    def message(self) -> bytes:
        """A copy of the message bytes (header included)."""
        return bytes(self.buf[self.off:self.off + self.len])

    @property
    def attrs(self) -> memoryview:
        """The attributes (after ``nlmsghdr`` and ``nfgenmsg``), without copying."""
        return memoryview(self.buf)[self.off + 20:self.off + self.len]

    @property
    def key(self) -> bytes | None:
        """A compact identity of the flow: family, the original tuple's attribute bytes and
        the zone attribute. Equal for every message about one entry (events and dumps
        encode them alike); None for expectations."""
        if self.expect:
            return None
        plan = _key_plan(FLOWS.shape(self.buf, self.off, self.len))
        return None if plan is None else _key(self.buf, self.off, plan, self.family)

    def __getnewargs__(self) -> tuple:
        return tuple(self)

    def decode(self) -> Event:
        """The :class:`~ctnetlink.model.Event` (flow or expectation decoded)."""
        dec = EXPECTS if self.expect else FLOWS
        obj = dec.decode(self.buf, self.off, self.len, self.family)
        return _make_event(self.type, None if self.expect else obj, obj if self.expect else None,
                           self.portid, self.lost, self.resync or None)


def _getters() -> None:
    try:
        from _collections import _tuplegetter as getter  # what namedtuple uses
    except ImportError:  # pragma: no cover - another Python implementation
        from operator import itemgetter

        def getter(i: int, doc: str):
            return property(itemgetter(i), doc=doc)
    for i, name in enumerate(RawEvent._fields):
        setattr(RawEvent, name, getter(i, f"Field {i}: {name}"))


_getters()
_tnew = tuple.__new__


class EventReader:
    """Datagrams in, events out (sans-IO).

    ``family`` keeps only messages of that nfgen family; ``types`` only those event
    types. :meth:`overrun` tells the reader that ``n`` messages were lost (the socket's
    drop counter): the next event carries ``lost=n``. Malformed messages are skipped and
    counted in ``malformed``. With ``track`` the reader keeps the keys of the flows it
    reported alive (NEW/UPDATE delivered, no DESTROY since) for :meth:`begin_resync`.
    """

    def __init__(self, *, family: int | None = None, types: Iterable[EventType] | None = None,
                 track: bool = False) -> None:
        self.family = family or None
        self.types = None if types is None else frozenset(EventType(t) for t in types)
        self.track = track
        self.alive: set[bytes] = set()
        """Keys of the flows reported alive (only with ``track``)."""
        self.malformed = 0
        self.lost = 0
        """Messages lost, waiting to be reported on the next event."""
        self._seen: set[bytes] | None = None
        self._flow = FLOWS.decoder()
        self._fused: dict[int, Callable] = {}  # message length -> decode.event_builder
        self._plain = self.family is None and self.types is None and not track

    # --- losses ----------------------------------------------------------------------
    def overrun(self, lost: int) -> None:
        """Record ``lost`` messages dropped by the kernel (reported on the next event)."""
        self.lost += max(lost, 0)

    def _take_lost(self) -> int | None:
        lost, self.lost = self.lost, 0
        return lost or None

    # --- events ------------------------------------------------------------------------
    def _messages(self, data) -> list[tuple[EventType, int, int, int, int, bool]]:
        """(type, offset, length, family, portid, expect) of the event messages kept."""
        out = []
        off = 0
        end = len(data)
        unpack = _HDR.unpack_from
        kinds = _KINDS
        want = self.family
        types = self.types
        while end - off >= 16:
            ln, mtype, flags, _seq, pid = unpack(data, off)
            if ln < 16 or ln > end - off:
                self.malformed += 1
                break
            kind = kinds.get(mtype | (flags & _CREATE) << 6)
            if kind is not None:
                fam = data[off + 16] if ln >= 20 else -1
                if fam < 0:
                    self.malformed += 1
                elif (want is None or fam == want) and (types is None or kind[0] in types):
                    out.append((kind[0], off, ln, fam, pid, kind[1]))
            off += (ln + 3) & ~3
        return out

    def feed(self, data: bytes) -> list[Event]:
        """The events of one datagram, decoded."""
        if self._plain and not self.lost and len(data) >= 20:
            # the usual datagram: one flow message, nothing to select or track
            ln, mtype, flags, _seq, pid = _HDR.unpack_from(data)
            if 20 <= ln <= len(data) <= (ln + 3) & ~3:
                kind = _KINDS.get(mtype | (flags & _CREATE) << 6)
                if kind is None:
                    return []
                if not kind[1]:
                    try:
                        return [_make_event(kind[0], self._flow(data, 0, ln), None, pid, None,
                                            None)]
                    except NetlinkDecodeError:
                        self.malformed += 1
                        return []
        out: list[Event] = []
        for etype, off, ln, fam, pid, expect in self._messages(data):
            try:
                if expect:
                    ev = _make_event(etype, None, EXPECTS.decode(data, off, ln, fam), pid, None, None)
                elif self.track:
                    sh = FLOWS.shape(data, off, ln)
                    self._note(sh, data, off, fam, etype)
                    ev = _make_event(etype, sh.build(sh.struct.unpack_from(data, off + 20), fam),
                                     None, pid, None, None)
                else:
                    ev = _make_event(etype, self._flow(data, off, ln), None, pid, None, None)
            except NetlinkDecodeError:
                self.malformed += 1
                continue
            if self.lost:
                ev.lost = self._take_lost()
            out.append(ev)
        return out

    def feed_many(self, datagrams: Iterable[bytes]) -> list[Event]:
        """The events of several datagrams, decoded (:meth:`feed` of each, in one loop:
        the usual datagram, one flow message of a known layout, is decoded inline)."""
        if not self._plain:
            out: list[Event] = []
            for data in datagrams:
                out += self.feed(data)
            return out
        out = []
        append = out.append
        unpack = _HDR.unpack_from
        kinds = _KINDS
        fused = self._fused
        for data in datagrams:
            n = len(data)
            if n >= 20 and not self.lost:
                ln, mtype, flags, _seq, pid = unpack(data)
                if 20 <= ln <= n <= (ln + 3) & ~3:
                    kind = kinds.get(mtype | (flags & _CREATE) << 6)
                    if kind is None:
                        continue
                    if not kind[1]:
                        build = fused.get(ln)
                        if build is None:
                            build = self._fuse(ln)
                        if build is not None:
                            ev = build(data, kind[0], pid)
                            if ev is not None:
                                append(ev)
                                continue
            out += self.feed(data)
        return out

    def _fuse(self, ln: int):
        """The fused builder (``decode.event_builder``) for flow messages of length
        ``ln``: of the first layout known for it, None while none is."""
        cands = FLOWS.shapes.get(ln)
        if not cands:
            return None
        if len(self._fused) > 1024:
            self._fused.clear()
        build = self._fused[ln] = event_builder(cands[0], Event)
        return build

    def feed_raw_many(self, datagrams: Iterable[bytes]) -> list[RawEvent]:
        """:meth:`feed_raw` of several datagrams, in one loop."""
        if not self._plain:
            out: list[RawEvent] = []
            for data in datagrams:
                out += self.feed_raw(data)
            return out
        out = []
        append = out.append
        unpack = _HDR.unpack_from
        kinds = _KINDS
        for data in datagrams:
            n = len(data)
            if n >= 20 and not self.lost:
                ln, mtype, flags, _seq, pid = unpack(data)
                if 20 <= ln <= n <= (ln + 3) & ~3:
                    kind = kinds.get(mtype | (flags & _CREATE) << 6)
                    if kind is not None:
                        append(_tnew(RawEvent, (kind[0], data, 0, ln, data[16], pid, kind[1],
                                                None, False)))
                    continue
            out += self.feed_raw(data)
        return out

    def feed_raw(self, data: bytes) -> list[RawEvent]:
        """The events of one datagram as :class:`RawEvent` (nothing decoded)."""
        if self._plain and not self.lost and len(data) >= 20:
            # the usual datagram: one message, nothing to select or track
            ln, mtype, flags, _seq, pid = _HDR.unpack_from(data)
            if 20 <= ln <= len(data) <= (ln + 3) & ~3:
                kind = _KINDS.get(mtype | (flags & _CREATE) << 6)
                if kind is None:
                    return []
                return [_tnew(RawEvent, (kind[0], data, 0, ln, data[16], pid, kind[1], None,
                                         False))]
        out: list[RawEvent] = []
        for etype, off, ln, fam, pid, expect in self._messages(data):
            if self.track and not expect:
                try:
                    self._note(FLOWS.shape(data, off, ln), data, off, fam, etype)
                except NetlinkDecodeError:
                    self.malformed += 1
                    continue
            out.append(_tnew(RawEvent, (etype, data, off, ln, fam, pid, expect,
                                        self._take_lost() if self.lost else None, False)))
        return out

    def _note(self, shape: Shape, data, off: int, fam: int, etype: EventType) -> None:
        plan = _key_plan(shape)
        if plan is None:
            return
        key = _key(data, off, plan, fam)
        if etype is EventType.DESTROY:
            self.alive.discard(key)
        else:
            self.alive.add(key)

    # --- resynchronisation ----------------------------------------------------------------
    @property
    def resyncing(self) -> bool:
        return self._seen is not None

    def begin_resync(self) -> None:
        """A table dump follows (:meth:`feed_dump`, then :meth:`end_resync`)."""
        if not self.track:
            raise ValueError("resynchronisation needs a reader made with track=True")
        self._seen = set()

    def feed_dump(self, items: Iterable[tuple[bytes, int, int]], *, raw: bool = False) -> list:
        """Events (``resync=True``) for dumped entries ``(datagram, offset, length)``: NEW
        for a flow not reported alive, UPDATE for one that was."""
        seen = self._seen
        if seen is None:
            raise ValueError("feed_dump() outside begin_resync()/end_resync()")
        alive = self.alive
        want = self.family
        out: list = []
        for buf, off, ln in items:
            if ln < 20:
                continue
            fam = buf[off + 16]
            if want is not None and fam != want:
                continue
            try:
                plan = _key_plan(FLOWS.shape(buf, off, ln))
                if plan is None:
                    continue
                key = _key(buf, off, plan, fam)
                etype = EventType.UPDATE if key in alive else EventType.NEW
                if raw:
                    ev = RawEvent(etype, buf, off, ln, fam, 0, False, self.lost or None, True)
                else:
                    ev = _make_event(etype, FLOWS.decode(buf, off, ln, fam), None, 0,
                                     self.lost or None, True)
            except NetlinkDecodeError:
                self.malformed += 1
                continue
            self.lost = 0
            seen.add(key)
            alive.add(key)
            out.append(ev)
        return out

    def end_resync(self, *, raw: bool = False) -> list:
        """Synthetic DESTROY events (``resync=True``) for the flows reported alive that
        the dump did not show; the reader's view is the dump's from now on."""
        seen = self._seen
        if seen is None:
            raise ValueError("end_resync() without begin_resync()")
        self._seen = None
        gone = self.alive - seen
        self.alive = seen
        out: list = []
        for key in sorted(gone):
            msg = destroy_message(key)
            lost = self._take_lost()
            if raw:
                ev = RawEvent(EventType.DESTROY, msg, 0, len(msg), key[0], 0, False, lost, True)
            else:
                ev = _make_event(EventType.DESTROY, FLOWS.decode(msg, 0, len(msg), key[0]), None,
                                 0, lost, True)
            out.append(ev)
        return out

    def abort_resync(self) -> None:
        """Forget a resynchronisation that could not finish (the view stays as it was)."""
        self._seen = None


def destroy_message(key: bytes) -> bytes:
    """A DESTROY message for the flow with :attr:`RawEvent.key` ``key`` (its original
    tuple and zone; what a synthetic DESTROY event carries)."""
    body = key[1:]
    return (NLMSGHDR.pack(20 + len(body), K.IPCTNL_MSG_CT_DELETE, 0, 0, 0)
            + NFGENMSG.pack(key[0], 0, 0) + body)


__all__ = ["EventReader", "RawEvent", "event_type", "destroy_message", "FLOWS", "EXPECTS"]
