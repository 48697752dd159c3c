"""What the sync protocol machines share: sequence numbers, the receive pipeline, the
transmit queue, the channel buffer, the statistics and the actions they return.

A machine never touches a socket or a clock. Received bytes go in through
:meth:`Machine.receive` (one datagram, or complete messages of a TCP stream, see
:class:`StreamReader`); local changes through :meth:`Machine.enqueue` with an opaque
*reference* to a cache object; time through ``now`` arguments (seconds, any monotonic
origin). Datagrams to send come out of :meth:`Machine.flush`, packed like the C
daemon's channel buffer; everything else comes out as :class:`Action` objects. At
transmission time a machine asks its :class:`Source` for the current content of an
object (``render``; a run of objects at once with ``render_many`` where the source has
it, a bulk's references queued and held at once: :meth:`Machine.enqueue_many`): the
message type (NEW/UPD/DEL) and attributes follow the object's state when it is sent,
not when it was queued, as in the C daemon.

Statistics use the C daemon's counters (``-s network``, ``-s queue``), see
:class:`NetworkStats`.
"""
from __future__ import annotations

import struct
from itertools import islice

from ..wire import constants as K
from ..wire.codec import CT_DECODER, EXP_DECODER, walk
from ..wire.errors import SyncDecodeError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Hashable, Iterable, Iterator, Protocol

    class Source(Protocol):
        """The cache side a machine sends from (dcore's internal caches)."""

        def render(self, ref: Hashable, seq: int, flags: int) -> bytes | None:
            """The complete message (header with ``seq`` and ``flags`` included) for the
            object's current state, its type NEW/UPD/DEL chosen from its status; None
            when the object is gone (flushed): it is then skipped."""

        def refs(self) -> Iterable[Hashable]:
            """Every object of the internal caches, conntracks first (bulk send)."""

        def hold(self, ref: Hashable) -> None:
            """The machine keeps ``ref`` (a queue holds it: a dead object must stay)."""

        def release(self, ref: Hashable) -> None:
            """The machine dropped ``ref`` (sent for good, acknowledged or discarded)."""

        # optional, for big runs (a bulk); without them the machine calls the above:

        def render_many(self, refs: list[Hashable], seq: int, flags: int
                        ) -> list[bytes | None]:
            """``render`` of each ref, in one loop: the first message numbered ``seq``,
            each next one the following number; a gone object (or one whose rendering
            fails) is None and takes no number."""

        def hold_many(self, refs: list[Hashable]) -> None:
            """``hold`` of each of the (distinct) refs."""

        def release_many(self, refs: list[Hashable]) -> None:
            """``release`` of each ref."""

SEQ_MASK = 0xFFFFFFFF
ALIVE_INTERVAL = 1.0
"""The alive timer: 1 s after the last transmit run (conntrackd.md §5.10.2, §5.11)."""
DEFAULT_BUFFER = 1500 - 28
"""The channel buffer of a 1500-byte MTU (multicast, UDP); TCP uses MTU - 40."""

_HDR = struct.Struct(">BBHI")
_HDR_ACK = struct.Struct(">BBHIII")
_ACK_BITS = K.NET_F_ACK | K.NET_F_NACK | K.NET_F_RESYNC

# recv() verdicts (the C daemon's MSG_*)
DATA, CTL, DROP, BAD = "data", "ctl", "drop", "bad"


def before(a: int, b: int) -> bool:
    """``before(a, b)`` of 32-bit serial arithmetic: ``(int32)(a - b) < 0``."""
    return ((a - b) & SEQ_MASK) >= 0x80000000


def after(a: int, b: int) -> bool:
    return before(b, a)


# --- actions ------------------------------------------------------------------------------

class Action:
    """Something the integrator does after a call (apply to a cache, log, dump)."""

    __slots__ = ()

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__ if n[0] != "_")
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, n) == getattr(other, n) for n in self.__slots__ if n[0] != "_")


class CacheOp(Action):
    """A received state message to apply (conntrackd.md §6.6).

    ``op`` is ``"new"`` (replace: delete any existing entry, add), ``"update"`` (update
    or add) or ``"delete"``; ``expect`` tells expectation messages from conntrack ones;
    ``inject`` is True with ``DisableExternalCache`` (apply to the kernel: NEW create,
    EEXIST -> delete + create; UPD update, ENOENT -> create; DEL delete, ENOENT ignored)
    instead of the external cache. ``payload`` is the message's attributes (validated),
    ``shape``/``values`` their compiled layout and unpacked values (the input of the
    codec's direct paths); :attr:`obj` builds the Flow / Expect on first use.
    ``expired`` marks an ALARM cache entry that timed out (``CacheTimeout``)."""

    __slots__ = ("op", "expect", "inject", "payload", "shape", "values", "expired", "_obj")

    def __init__(self, op: str, expect: bool, inject: bool, payload: bytes, shape, values,
                 expired: bool = False) -> None:
        self.op = op
        self.expect = expect
        self.inject = inject
        self.payload = payload
        self.shape = shape
        self.values = values
        self.expired = expired
        self._obj = None

    @property
    def obj(self):
        """The :class:`~ctnetlink.model.Flow` or :class:`~ctnetlink.model.Expect`."""
        if self._obj is None:
            self._obj = self.shape.build(self.values)
        return self._obj

    def __repr__(self) -> str:
        return f"CacheOp({self.op}{' exp' if self.expect else ''}" \
               f"{' inject' if self.inject else ''}{' expired' if self.expired else ''}, {self.obj!r})"

    def __eq__(self, other: object) -> bool:
        return (type(other) is CacheOp and (self.op, self.expect, self.inject, self.expired)
                == (other.op, other.expect, other.inject, other.expired)
                and self.obj == other.obj)


class StateBatch(Action):
    """Received conntrack state messages (CT NEW/UPD/DEL), in order, as one action: what
    the batched receive path (``Machine.batch_states``) returns instead of one
    :class:`CacheOp` per message. ``items`` are ``(type, payload, shape, values)``
    (``type`` 0-2: NEW, UPD, DEL); :meth:`ops` gives the equivalent CacheOps."""

    __slots__ = ("items",)

    def __init__(self, items: list[tuple]) -> None:
        self.items = items

    def ops(self) -> list[CacheOp]:
        return [CacheOp(_OPS[t], False, False, body, shape, values)
                for t, body, shape, values in self.items]


class Log(Action):
    """A daemon log line (``level`` "notice", "warning", "ERROR")."""

    __slots__ = ("level", "message")

    def __init__(self, level: str, message: str) -> None:
        self.level = level
        self.message = message


class KernelDump(Action):
    """NOTRACK with ``DisableInternalCache``: send the kernel table (every entry passing
    the filter, as CT NEW, through :meth:`Machine.enqueue_message`)."""

    __slots__ = ()


class Heard(Action):
    """A valid DATA or CTL message arrived: the receiving channel becomes the active
    one (conntrackd.md §5.13). Returned at most once per :meth:`Machine.receive`."""

    __slots__ = ()


# --- statistics ---------------------------------------------------------------------------

class NetworkStats:
    """The receive counters of ``-s network`` (and the message tracking of ``-s``)."""

    __slots__ = ("malformed", "bad_version", "bad_header", "bad_payload", "bad_type",
                 "truncated", "bad_size", "lost", "before")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def count(self, reason: str) -> None:
        """A framing or payload error (a :data:`~..wire.constants.REASONS` value)."""
        self.malformed += 1
        if reason == K.BAD_VERSION:
            self.bad_version += 1
        elif reason == K.BAD_PAYLOAD:
            self.bad_payload += 1
        elif reason == K.BAD_TYPE:
            self.bad_type += 1
        elif reason == K.BAD_SIZE:
            self.bad_size += 1
        else:  # truncated, oversized (the C receiver's buffer would cut it)
            self.truncated += 1

    def as_dict(self) -> dict[str, int]:
        return {n: getattr(self, n) for n in self.__slots__}


class SeqTracker:
    """The receiver's ``last_seq_recv`` and the C classification of a new seq
    (``nethdr_track_seq``): ``"unset"``, ``"in-sync"``, ``"after"`` (a gap: "Packets lost"
    grows by ``seq - last + 1``, two more than missing, as in 1.4.7) or ``"before"``
    ("Packets before" + 1)."""

    __slots__ = ("last", "set", "stats")

    def __init__(self, stats: NetworkStats) -> None:
        self.last = 0
        self.set = False
        self.stats = stats

    def classify(self, seq: int) -> str:
        if not self.set:
            return "unset"
        expected = (self.last + 1) & SEQ_MASK
        if seq == expected:
            return "in-sync"
        if after(seq, expected):
            self.stats.lost += (seq - self.last + 1) & SEQ_MASK
            return "after"
        self.stats.before += 1
        return "before"

    @property
    def expected(self) -> int:
        return (self.last + 1) & SEQ_MASK

    def update(self, seq: int) -> None:
        self.last = seq
        self.set = True


# --- transmit side ------------------------------------------------------------------------

class Ctl:
    """A queued control message (ACK, NACK, RESYNC or ALIVE): ``flags`` and the range;
    ``seq`` once sent."""

    __slots__ = ("flags", "from_seq", "to_seq", "seq")

    def __init__(self, flags: int, from_seq: int = 0, to_seq: int = 0) -> None:
        self.flags = flags
        self.from_seq = from_seq
        self.to_seq = to_seq
        self.seq = 0

    @property
    def has_range(self) -> bool:
        return bool(self.flags & _ACK_BITS)

    def encode(self, seq: int, extra_flags: int = 0) -> bytes:
        flags = self.flags | extra_flags
        if self.flags & _ACK_BITS:
            return _HDR_ACK.pack(0x10 | K.NET_T_CTL, flags, 16, seq, self.from_seq, self.to_seq)
        return _HDR.pack(0x10 | K.NET_T_CTL, flags, 8, seq)

    def __repr__(self) -> str:
        names = "|".join(K.flag_names(self.flags))
        rng = f" {self.from_seq}-{self.to_seq}" if self.has_range else ""
        return f"Ctl({names}{rng})"


class Direct:
    """A message built outside the caches (NOTRACK ``DisableInternalCache``):
    ``build(seq, flags) -> bytes``."""

    __slots__ = ("build",)

    def __init__(self, build: Callable[[int, int], bytes]) -> None:
        self.build = build


class Packer:
    """The C channel buffer: messages are appended while ``used + len < size``
    (strictly), otherwise the buffer leaves as one datagram first; :meth:`done` returns
    the datagrams of one transmit run (the buffer is flushed at its end)."""

    __slots__ = ("size", "out", "cur", "used")

    def __init__(self, size: int) -> None:
        self.size = size
        self.out: list[bytes] = []
        self.cur: list[bytes] = []
        self.used = 0

    def add(self, msg: bytes) -> None:
        n = len(msg)
        if self.used + n >= self.size and self.cur:
            self.out.append(b"".join(self.cur))
            self.cur = []
            self.used = 0
        self.cur.append(msg)
        self.used += n

    def add_many(self, msgs: list[bytes]) -> None:
        """:meth:`add` of each message (the list is the packer's afterwards)."""
        used, size = self.used, self.size
        cuts = []
        for i, ln in enumerate(map(len, msgs)):
            if used + ln >= size and used:  # used > 0: the buffer holds a message
                cuts.append(i)
                used = 0
            used += ln
        if not cuts:
            self.cur += msgs
        else:
            out = self.out
            a = cuts[0]
            out.append(b"".join(self.cur + msgs[:a]) if self.cur else b"".join(msgs[:a]))
            for c in cuts[1:]:
                out.append(b"".join(msgs[a:c]))
                a = c
            self.cur = msgs[a:]
        self.used = used

    def done(self) -> list[bytes]:
        if self.cur:
            self.out.append(b"".join(self.cur))
            self.cur = []
            self.used = 0
        out, self.out = self.out, []
        return out


class StreamReader:
    """TCP: bytes in, complete messages out (a message split across reads is kept for
    the next one, as the C receiver does). A header that cannot start a message (length
    0 or below the header size) makes the buffered bytes unusable: they are dropped and
    returned once so that the receive pipeline counts the error."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> bytes:
        """The complete messages at the front of everything received so far."""
        buf = self.buf + data if self.buf else bytes(data)
        off = 0
        end = len(buf)
        while end - off >= K.NETHDR_SIZ:
            vt, flags, ln, _ = _HDR.unpack_from(buf, off)
            ack = (vt & 0x0F) == K.NET_T_CTL and flags & _ACK_BITS
            if ln == 0 or ln < (K.NETHDR_ACK_SIZ if ack else K.NETHDR_SIZ):
                self.buf = b""
                return buf  # the pipeline counts the bad size at this message
            if ln > end - off:
                break
            off += ln
        if off > K.MAX_DATAGRAM:  # never hand over more than the C receive buffer
            off = _cut(buf, K.MAX_DATAGRAM)
        self.buf = buf[off:]
        return buf[:off]


def _cut(buf: bytes, limit: int) -> int:
    off = 0
    while True:
        (ln,) = struct.unpack_from(">H", buf, off + 2)
        if off + ln > limit:
            return off
        off += ln


# --- the machine base -----------------------------------------------------------------------

class _NullSource:
    def render(self, ref, seq, flags):
        return None

    def refs(self):
        return ()

    def hold(self, ref) -> None:
        pass

    def release(self, ref) -> None:
        pass


class Machine:
    """The parts every sync mode has: the sequence counter, the receive pipeline
    (conntrackd.md §5.7), the transmit queue (§5.9) and the channel buffer (§5.2.4).
    Subclasses implement ``_recv`` (the mode's sequence tracking and control messages)
    and ``_transmit`` (what happens to a queue entry when it is sent)."""

    mode = ""

    def __init__(self, source: Source | None = None, *, seq: int = 0,
                 buffer_size: int = DEFAULT_BUFFER, disable_external_cache: bool = False) -> None:
        self.source = source if source is not None else _NullSource()
        #: the next sequence number to send (the C daemon starts at ``time(NULL)``)
        self.seq = seq & SEQ_MASK
        self.buffer_size = buffer_size
        self.inject = disable_external_cache
        #: return received conntrack state messages as :class:`StateBatch` actions where
        #: the mode has a batched path (FTFW), instead of one :class:`CacheOp` each
        self.batch_states = False
        self.stats = NetworkStats()
        self.tracker = SeqTracker(self.stats)
        #: the transmit queue: entries (object references, :class:`Ctl`, :class:`Direct`)
        #: in order, each at most once (changes of one object coalesce)
        self.txq: dict[Any, None] = {}

    # --- input -----------------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> list[Action]:
        """Process one datagram (or complete messages of a TCP stream) received at
        ``now``: the framing checks and counters of the C receiver, the mode's protocol
        logic, then the state messages as :class:`CacheOp` actions. Never raises for
        bad input: it is dropped and counted."""
        out: list[Action] = []
        heard = False
        recv = self._recv
        apply = self._apply
        inject = self.inject
        ct_shapes = CT_DECODER._shapes  # the decoder's shape cache, looked up inline
        from_bytes = int.from_bytes
        for msg in walk(data):
            if type(msg) is SyncDecodeError:
                self.stats.count(msg.reason)
                continue  # walk() ends after a framing error, goes on after a bad version
            verdict = recv(msg, now, out)
            if verdict is DROP:
                continue
            if verdict is BAD:
                self.stats.malformed += 1
                self.stats.bad_header += 1
                continue
            heard = True
            if verdict is CTL:
                continue
            mtype = msg.type
            if mtype > K.NET_T_STATE_MAX:
                self.stats.count(K.BAD_TYPE)
                continue
            body = msg.payload
            expect = mtype >= K.NET_T_STATE_EXP_NEW
            shape = None
            if not expect:
                cands = ct_shapes.get(len(body))
                if cands:
                    k = from_bytes(body, "little")
                    for sh in cands:
                        if k & sh.mask == sh.expected:
                            shape = sh
                            values = sh.unpack_from(body)
                            break
            if shape is None:
                try:
                    shape, values = (EXP_DECODER if expect else CT_DECODER).values(
                        body, 0, len(body))
                except SyncDecodeError as e:
                    self.stats.count(e.reason)
                    continue
            apply(CacheOp(_OPS[mtype % 3], expect, inject, body, shape, values), now, out)
        if heard:
            out.append(Heard())
        return out

    def _apply(self, op: CacheOp, now: float, out: list[Action]) -> None:
        out.append(op)

    def _recv(self, msg, now: float, out: list[Action]) -> str:  # pragma: no cover
        raise NotImplementedError

    # --- local changes -------------------------------------------------------------------------
    def enqueue(self, ref, now: float | None = None, dead: bool = False) -> None:
        """An object of the internal cache changed (``dead``: was destroyed): send its
        state at the next :meth:`flush` (coalesced with earlier changes not yet sent)."""
        if ref not in self.txq:
            self.txq[ref] = None
            self.source.hold(ref)

    def enqueue_many(self, refs: list) -> None:
        """:meth:`enqueue` of each of ``refs`` (distinct references, e.g. a bulk), in
        one go where :meth:`enqueue` is this class's."""
        if type(self).enqueue is not Machine.enqueue:
            for ref in refs:
                self.enqueue(ref)
            return
        txq = self.txq
        new = [r for r in refs if r not in txq] if txq else refs
        txq.update(dict.fromkeys(new))
        self._hold_many(new)

    def _hold_many(self, refs: list) -> None:
        hold_many = getattr(self.source, "hold_many", None)
        if hold_many is not None:
            hold_many(refs)
        else:
            for ref in refs:
                self.source.hold(ref)

    def _release_many(self, refs: list) -> None:
        release_many = getattr(self.source, "release_many", None)
        if release_many is not None:
            release_many(refs)
        else:
            for ref in refs:
                self.source.release(ref)

    def enqueue_message(self, build: Callable[[int, int], bytes]) -> None:
        """A message built outside the caches (``build(seq, flags) -> bytes``)."""
        self.txq[Direct(build)] = None

    def _queue_ctl(self, flags: int, from_seq: int = 0, to_seq: int = 0) -> Ctl:
        c = Ctl(flags, from_seq, to_seq)
        self.txq[c] = None
        return c

    # --- output -----------------------------------------------------------------------------
    def next_seq(self) -> int:
        s = self.seq
        self.seq = (s + 1) & SEQ_MASK
        return s

    def pending(self) -> bool:
        """Whether :meth:`flush` has something to send."""
        return bool(self.txq)

    def flush(self, now: float, limit: int | None = None) -> list[bytes]:
        """Run the transmit queue: the datagrams to send now (possibly none). With
        ``limit``, only the first ``limit`` entries are sent (the rest stays queued in
        order: :meth:`pending`), so that a big run (a bulk) leaves in parts the peer
        processes while the next part is rendered."""
        txq = self.txq
        if not txq:
            return []
        if limit is None or len(txq) <= limit:
            entries = list(txq)
            txq.clear()
        else:
            entries = list(islice(txq, limit))
            for entry in entries:
                del txq[entry]
        packer = Packer(self.buffer_size)
        self._transmit_all(entries, now, packer)
        self._after_run(now)
        return packer.done()

    def _transmit_all(self, entries: list, now: float, packer: Packer) -> None:
        """Send ``entries`` (taken off the transmit queue) in order into ``packer``."""
        for entry in entries:
            msg = self._transmit(entry, now)
            if msg is not None:
                packer.add(msg)

    def _transmit(self, entry, now: float) -> bytes | None:  # pragma: no cover
        raise NotImplementedError

    def _after_run(self, now: float) -> None:
        pass

    def _render(self, ref, seq: int, flags: int) -> bytes | None:
        try:
            return self.source.render(ref, seq, flags)
        except Exception:  # a broken object must not stop the daemon: skip it
            return None

    # --- timers ---------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When :meth:`tick` has something to do (None: never)."""
        return None

    def tick(self, now: float) -> list[Action]:
        """Fire the timers due at ``now`` (they queue messages: :meth:`flush` next)."""
        return []

    # --- control requests ---------------------------------------------------------------
    def request_resync(self) -> list[Action]:
        """``-n`` (and ``StartupResync``): ask the peers for their internal caches."""
        return []

    def send_bulk(self) -> list[Action]:
        """``-B``: send every object of the internal caches."""
        return []

    def queue_stats(self) -> tuple[int, list[tuple[str, int, int, int]]]:
        """(allocated queue nodes, [(queue, current, maximum, not enough space errors)])
        for ``-s queue``, without the channel's ``errorq``."""
        nodes = sum(1 for e in self.txq if type(e) is not Direct and isinstance(e, (Ctl,)))
        return nodes, [("txqueue", len(self.txq), 2147483647, 0)]


_OPS = ("new", "update", "delete")


def runs(entries: list) -> Iterator[tuple[list, Any]]:
    """``(objects, entry)`` pairs covering ``entries`` in order: the run of object
    references before each control message or :class:`Direct` message (``entry``, None
    after the last run)."""
    i, n = 0, len(entries)
    while i < n:
        j = i
        while j < n:
            t = type(entries[j])
            if t is Ctl or t is Direct:
                break
            j += 1
        yield (entries[i:j] if i or j < n else entries), (entries[j] if j < n else None)
        i = j + 1


def bulk(machine: Machine) -> None:
    """Queue every object of the source's internal caches."""
    machine.enqueue_many(list(machine.source.refs()))
