"""FTFW, the reliable sync mode, as a pure state machine (wire-compatible with 1.4.7).

Public API (:class:`FtfwMachine`, see :mod:`.common` for the shared parts)::

    m = FtfwMachine(source, seq=int(time.time()), window=300, resend_queue_size=131072,
                    startup_resync=False, disable_external_cache=False)
    actions = m.receive(datagram, now)   # CacheOp / Log / Heard actions
    m.enqueue(ref)                       # an internal cache object changed
    m.request_resync(); m.send_bulk()    # -n, -B (return Log actions)
    m.tick(now)                          # timers due (alive/ACK, hole resend)
    for d in m.flush(now): channel.send(d)
    m.next_deadline()                    # when to call tick() next
    m.stats, m.queue_stats(), m.rsqueue_dump()   # -s network / -s queue / -s rsqueue

The C daemon's rules (conntrackd.md §5.10) are kept where a peer can see them: the
message header and flags, ACK windows of ``ACKWindowSize`` messages (control
messages count too; the window is not reset by the alive ACK), the 1 s alive timer
that ACKs what arrived since the last ACK or sends ALIVE, NACK of a gap as
``expected..seq-1`` preceded by an ACK of what came before it, ACK/NACK/RESYNC kept
for resending until acknowledged, resends with new sequence numbers built from the
objects' current state, the resend queue of ``ResendQueueSize`` entries that drops its
oldest when full, HELLO until a HELLO_BACK arrives, HELLO_BACK to a peer saying HELLO.

Where the reference loses data, this machine does not (the peer cannot tell):

* A received HELLO never empties the resend queue. When it announces a restart of the
  peer (its sequence numbers start over), what the peer had not acknowledged is sent
  again with new numbers.
* HELLO travels only on ALIVE messages. Until a HELLO_BACK arrives every other message
  waits in the transmit queue: a C receiver skips its gap detection for HELLO messages
  (and acknowledges what it never received), and every HELLO empties its resend queue
  (losing the NACKs it would send us). Data waits at most until the handshake is done
  (the first ALIVE|HELLO leaves at once, then one per second), and what changed
  meanwhile leaves afterwards, coalesced.
* Gaps in the peer's stream are detected on HELLO messages too. A gap among messages
  the peer sent before it processed our last HELLO may be unrecoverable with a C peer
  (that HELLO emptied its resend queue): the machine then asks for a resync once the
  handshake is done, so everything the peer has arrives again.
* An entry the peer should have acknowledged (it acknowledged later ones) but did not
  within ``hole_timeout`` seconds is sent again (its NACK or ACK was lost).
* ``StartupResync``'s RESYNC, like all data, leaves after the handshake.
* When the peer (re)starts (its HELLO comes with sequence numbers that start over, or
  at first contact), the machine asks it for a resync: a restarted daemon does not
  send what changed while it was down, nor what its previous life lost.
* With ``bulk_on_start`` (default), once the first handshake is done the machine sends
  its internal cache (as ``-B`` does): a peer that kept running gets what changed here
  while this daemon was down. A C peer applies it like any bulk.

Stale entries are the limit of all this: a DEL lost together with the peer's resend
queue (a C peer's, emptied by a HELLO, or a daemon that died) is not in any bulk.
"""
from __future__ import annotations

from itertools import chain, islice, repeat

from ..wire import constants as K
from ..wire.codec import CT_DECODER
from ..wire.errors import SyncDecodeError
from .common import (
    _HDR, ALIVE_INTERVAL, BAD, CTL, DATA, DEFAULT_BUFFER, DROP, Ctl, Direct, Heard, Log,
    Machine, Packer, StateBatch, after, before, bulk, runs,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from .common import Action, Source

SAY, DONE = "say", "done"
HELLO, HELLO_BACK = K.NET_F_HELLO, K.NET_F_HELLO_BACK
HOLE_TIMEOUT = 3.0
_NOT_DATA = ~(HELLO | HELLO_BACK)


class FtfwMachine(Machine):
    """The FTFW protocol of one node (see the module docstring)."""

    mode = "ftfw"

    def __init__(self, source: Source | None = None, *, seq: int = 0, window: int = 300,
                 resend_queue_size: int = 131072, startup_resync: bool = False,
                 disable_external_cache: bool = False, buffer_size: int = DEFAULT_BUFFER,
                 hole_timeout: float = HOLE_TIMEOUT, bulk_on_start: bool = True) -> None:
        super().__init__(source, seq=seq, buffer_size=buffer_size,
                         disable_external_cache=disable_external_cache)
        self.window_size = max(1, window)
        self.window = self.window_size
        self.ack_from = 0
        self.ack_from_set = False
        #: our handshake: SAY until a HELLO_BACK arrives
        self.hello = SAY
        #: the peer's last message said HELLO: our messages carry HELLO_BACK
        self.peer_hello = False
        #: sent ACK/NACK/RESYNC and objects awaiting acknowledgement, oldest first:
        #: entry -> (seq, time sent)
        self.rsq: dict = {}
        self.rsq_size = resend_queue_size
        self.rsq_full = 0
        self.hole_timeout = hole_timeout
        self.alive_at: float | None = None  # None: due at once (the first ALIVE|HELLO)
        self.hello_seq: int | None = None   # our last HELLO message
        self.fence: int | None = None       # the peer's seq from which its rsq is safe
        self.acked_upto: int | None = None  # the highest 'to' the peer acknowledged
        self.resync_wanted = startup_resync
        self.resynced = False               # a RESYNC left since the handshake
        self.peer_episode = False           # the peer's HELLO episode was handled
        self.bulk_on_start = bulk_on_start
        self.hello_alive: Ctl | None = None  # the ALIVE|HELLO waiting to leave
        self.hello_answer: Ctl | None = None  # an ALIVE queued to answer a HELLO

    @classmethod
    def from_config(cls, sync, source: Source | None = None, **kw) -> "FtfwMachine":
        """From a ``Sync`` configuration section (attribute names of conntrackd's
        frozen Config)."""
        return cls(source, window=sync.ack_window_size, resend_queue_size=sync.resend_queue_size,
                   startup_resync=sync.startup_resync,
                   disable_external_cache=sync.disable_external_cache, **kw)

    # --- receiving --------------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> list[Action]:
        """:meth:`.common.Machine.receive`; with ``batch_states``, the run of plain
        conntrack state messages at the front of the datagram (version 1, no flags, each
        the next sequence number: what a bulk and the event stream are made of) takes a
        path of its own, with the effects :meth:`_recv` has on them, and comes out as one
        :class:`.common.StateBatch`; the rest goes through the general pipeline."""
        tr = self.tracker
        end = len(data)
        if not self.batch_states or self.inject or not tr.set or end > K.MAX_DATAGRAM:
            return Machine.receive(self, data, now)
        if type(data) is not bytes:
            data = bytes(data)
        last = tr.last
        unpack = _HDR.unpack_from
        shapes = CT_DECODER._shapes
        from_bytes = int.from_bytes
        items: list[tuple] = []
        window = self.window
        ack_from = self.ack_from
        ack_from_set = self.ack_from_set
        off = 0
        while end - off >= 8:
            vt, flags, ln, seq = unpack(data, off)
            if flags or not 0x10 <= vt <= 0x12 or ln < 8 or ln > end - off \
                    or seq != (last + 1) & 0xFFFFFFFF:
                break
            # _recv of an in-sync DATA message without flags
            if not ack_from_set:
                ack_from = seq
                ack_from_set = True
            window -= 1
            if window <= 0:
                self._queue_ctl(K.NET_F_ACK, ack_from, seq)
                window = self.window_size
                ack_from_set = False
            last = seq
            body = data[off + 8:off + ln]
            off += ln
            cands = shapes.get(ln - 8)
            if cands:
                k = from_bytes(body, "little")
                for sh in cands:
                    if k & sh.mask == sh.expected:
                        items.append((vt & 0x0F, body, sh, sh.unpack_from(body)))
                        break
                else:
                    cands = None
            if not cands:
                try:
                    sh, values = CT_DECODER.values(body, 0, len(body))
                except SyncDecodeError as e:
                    self.stats.count(e.reason)
                    continue
                items.append((vt & 0x0F, body, sh, values))
        if not off:
            return Machine.receive(self, data, now)
        tr.last = last
        self.window = window
        self.ack_from = ack_from
        self.ack_from_set = ack_from_set
        self.peer_hello = False
        self.peer_episode = False
        out: list[Action] = [StateBatch(items)] if items else []
        if off < end:
            rest = Machine.receive(self, data[off:], now)
            if rest and type(rest[-1]) is Heard:
                out += rest
                return out
            out += rest
        out.append(Heard())
        return out

    def _recv(self, msg, now: float, out: list[Action]) -> str:
        flags = msg.flags
        seq = msg.seq
        tr = self.tracker
        if flags & HELLO_BACK and self.hello == SAY:
            self._handshake_done(out)
        if flags & HELLO:
            if tr.set and not after(seq, tr.last):
                # the peer's numbers start over: it restarted
                tr.set = False
                self.ack_from_set = False
                self.window = self.window_size
                self._peer_started()
            elif not tr.set or (not self.peer_hello and seq != tr.expected):
                self._peer_started()  # first contact, or maybe a restart
            if not self.peer_hello:
                self._answer_hello()
            self.peer_hello = True
        else:
            self.peer_hello = False
            self.peer_episode = False
        if tr.set and seq == (tr.last + 1) & 0xFFFFFFFF:
            cls = "in-sync"  # what classify() says without counting anything
        else:
            cls = tr.classify(seq)
            if cls == "before":
                return DROP
        if msg.type <= K.NET_T_STATE_MAX and not flags & _NOT_DATA:  # IS_DATA
            verdict = DATA
        else:
            verdict = self._digest(msg, now, out)
        if verdict is BAD:
            return BAD
        if cls == "after":
            expected = tr.expected
            if self.ack_from_set:
                self._queue_ctl(K.NET_F_ACK, self.ack_from, (expected - 1) & 0xFFFFFFFF)
            self._queue_ctl(K.NET_F_NACK, expected, (seq - 1) & 0xFFFFFFFF)
            self.window = self.window_size - 1
            self.ack_from = seq
            self.ack_from_set = True
            self._gap(expected)
        else:
            if not self.ack_from_set:
                self.ack_from = seq
                self.ack_from_set = True
            self.window -= 1
            if self.window <= 0:
                self._queue_ctl(K.NET_F_ACK, self.ack_from, seq)
                self.window = self.window_size
                self.ack_from_set = False
        tr.last = seq  # tr.update(seq)
        tr.set = True
        if (self.fence is None and self.hello == DONE and self.hello_seq is not None
                and msg.type == K.NET_T_CTL and flags & K.NET_F_ACK
                and not before(msg.to_seq, self.hello_seq)):
            self.fence = seq  # the peer had processed our last HELLO before this
        return verdict

    def _digest(self, msg, now: float, out: list[Action]) -> str:
        if msg.type <= K.NET_T_STATE_MAX and not msg.flags & _NOT_DATA:  # IS_DATA
            return DATA
        if msg.type != K.NET_T_CTL:
            return BAD
        flags = msg.flags
        if flags & K.NET_F_ACK:
            if before(msg.to_seq, msg.from_seq):
                return BAD
            self._rsq_range(msg.from_seq, msg.to_seq, resend=False)
            if self.acked_upto is None or after(msg.to_seq, self.acked_upto):
                self.acked_upto = msg.to_seq
            return CTL
        if flags & K.NET_F_NACK:
            if before(msg.to_seq, msg.from_seq):
                return BAD
            self._rsq_range(msg.from_seq, msg.to_seq, resend=True)
            return CTL
        if flags & K.NET_F_RESYNC:
            out.append(Log("notice", "resync requested by other node"))
            out.append(Log("notice", "sending bulk update"))
            bulk(self)
            return CTL
        if flags & K.NET_F_ALIVE:
            return CTL
        return BAD

    def _rsq_range(self, from_seq: int, to_seq: int, resend: bool) -> None:
        """Acknowledge (drop) or NACK (send again) the resend-queue entries with a seq in
        ``[from_seq, to_seq]``; the queue is in sending order (strictly increasing
        numbers), the walk stops at the first entry after ``to_seq``."""
        rsq = self.rsq
        if not rsq:
            return
        hit: list | None = None
        count = ((to_seq - from_seq) & 0xFFFFFFFF) + 1
        if count <= len(rsq) and next(iter(rsq.values()))[0] == from_seq:
            # the usual ACK: the range is the head of the queue, without a gap
            hit = list(islice(rsq, count))
            if rsq[hit[-1]][0] != to_seq:
                hit = None
        if hit is None:
            hit = []
            for entry, (seq, _) in rsq.items():
                if (seq - from_seq) & 0xFFFFFFFF >= 0x80000000:  # before(seq, from_seq)
                    continue
                if (to_seq - seq) & 0xFFFFFFFF >= 0x80000000:  # after(seq, to_seq)
                    break
                hit.append(entry)
        if resend:
            txq = self.txq
            for entry in hit:
                del rsq[entry]
                txq[entry] = None
            return
        for _ in map(rsq.pop, hit):  # del rsq[entry] of each, without a Python loop body
            pass
        self._release_many([e for e in hit if type(e) is not Ctl])

    def _peer_started(self) -> None:
        """The peer (re)started (once per HELLO episode): send again, with new numbers,
        the objects and RESYNC requests it did not acknowledge (old ACKs and NACKs are
        void), and ask for its internal cache (after a restart it does not send what
        changed while it was down, nor what its previous life lost)."""
        if self.peer_episode:
            return
        self.peer_episode = True
        self._want_resync()
        for entry in list(self.rsq):
            if type(entry) is Ctl and not entry.flags & K.NET_F_RESYNC:
                continue
            del self.rsq[entry]
            self.txq[entry] = None
        self.rsq.clear()

    def _gap(self, first_missing: int) -> None:
        """A gap in the peer's stream. NACK recovers it unless the peer sent the lost
        messages before it processed our last HELLO (a C peer emptied its resend queue
        then): one RESYNC after the handshake covers all of those, because the peer
        processes it after that HELLO."""
        if self.hello_seq is None or self.resynced:
            return
        if self.fence is None or before(first_missing, self.fence):
            self._want_resync()

    def _answer_hello(self) -> None:
        """The peer's HELLO is answered at once (an ALIVE that carries HELLO_BACK, unless
        something else leaves first): the C daemon answers on its next message, up to
        its 1 s alive timer later, and the peer holds its data until then."""
        if self.hello != DONE:
            if self.hello_alive is None:
                self.hello_alive = Ctl(K.NET_F_ALIVE)
        elif not self.txq:
            self.hello_answer = self._queue_ctl(K.NET_F_ALIVE)

    def _handshake_done(self, out: list[Action]) -> None:
        self.hello = DONE
        if self.resync_wanted:
            self._queue_resync()
        if self.bulk_on_start:
            self.bulk_on_start = False
            out.extend(self.send_bulk())

    def _want_resync(self) -> None:
        self.resync_wanted = True
        if self.hello == DONE:
            self._queue_resync()

    def _queue_resync(self) -> None:
        self.resync_wanted = False
        for e in self.txq:
            if type(e) is Ctl and e.flags & K.NET_F_RESYNC:
                return
        self._queue_ctl(K.NET_F_RESYNC)

    # --- local requests ---------------------------------------------------------------------
    def enqueue(self, ref, now: float | None = None, dead: bool = False) -> None:
        if ref in self.rsq:
            del self.rsq[ref]
            self.txq[ref] = None
        elif ref not in self.txq:
            self.txq[ref] = None
            self.source.hold(ref)

    def enqueue_many(self, refs: list) -> None:
        """:meth:`enqueue` of each of ``refs`` (distinct), in one go."""
        if type(self).enqueue is not FtfwMachine.enqueue:
            return super().enqueue_many(refs)
        rsq, txq = self.rsq, self.txq
        if not rsq and not txq:
            txq.update(dict.fromkeys(refs))
            self._hold_many(refs)
            return
        new: list = []
        add = new.append
        for ref in refs:
            if ref in rsq:
                del rsq[ref]
                txq[ref] = None
            elif ref not in txq:
                txq[ref] = None
                add(ref)
        self._hold_many(new)

    def request_resync(self) -> list[Action]:
        self._want_resync()
        return [Log("notice", "resync requested")]

    def send_bulk(self) -> list[Action]:
        bulk(self)
        return [Log("notice", "sending bulk update")]

    # --- sending ------------------------------------------------------------------------------
    def pending(self) -> bool:
        if self.hello == DONE:
            return bool(self.txq) or self.hello_alive is not None
        return self.hello_alive is not None

    def flush(self, now: float, limit: int | None = None) -> list[bytes]:
        alive = self.hello_alive
        if alive is not None:  # the ALIVE|HELLO of the handshake leaves first
            self.hello_alive = None
            msg = self._transmit(alive, now)
            out = [msg]
            if self.hello == DONE:
                out += super().flush(now, limit)
            self._after_run(now)
            return out
        if self.hello != DONE:  # everything else waits for the HELLO_BACK, in order
            return []
        answer = self.hello_answer
        if answer is not None:  # not needed when other messages leave with it
            self.hello_answer = None
            if len(self.txq) > 1 and answer in self.txq:
                del self.txq[answer]
        return super().flush(now, limit)

    def _transmit(self, entry, now: float) -> bytes | None:
        extra = HELLO_BACK if self.peer_hello else 0
        if type(entry) is Ctl:
            if self.hello != DONE:
                extra |= HELLO
            seq = self.next_seq()
            msg = entry.encode(seq, extra)
            entry.seq = seq
            if entry.has_range:
                self._rsq_add(entry, seq, now)
                if entry.flags & K.NET_F_RESYNC:
                    self.resynced = True
            elif extra & HELLO:
                self.hello_seq = seq
            return msg
        if type(entry) is Direct:
            return entry.build(self.next_seq(), extra)
        seq = self.seq
        msg = self._render(entry, seq, extra)
        if msg is None:
            self.source.release(entry)
            return None
        self.next_seq()
        self._rsq_add(entry, seq, now)
        return msg

    def _transmit_all(self, entries: list, now: float, packer: Packer) -> None:
        """:meth:`_transmit` of each entry into ``packer``; the runs of objects between
        control messages go through the source's ``render_many`` in one loop."""
        render_many = getattr(self.source, "render_many", None)
        if render_many is None:
            return super()._transmit_all(entries, now, packer)
        for run, entry in runs(entries):
            if run:
                self._send_objects(run, now, packer, render_many)
            if entry is not None:
                msg = self._transmit(entry, now)
                if msg is not None:
                    packer.add(msg)

    def _send_objects(self, refs: list, now: float, packer: Packer,
                      render_many: Callable) -> None:
        """Send the objects ``refs``: :meth:`_transmit` of each, rendered together."""
        seq = self.seq
        msgs = render_many(refs, seq, HELLO_BACK if self.peer_hello else 0)
        rsq = self.rsq
        n = len(msgs)
        if None in msgs or n > self.rsq_size - len(rsq):
            return self._send_some(refs, msgs, now, packer)
        # every object rendered, room in the resend queue: the numbers are a range
        end = seq + n
        seqs = range(seq, end) if end <= 0x100000000 else \
            chain(range(seq, 0x100000000), range(end - 0x100000000))
        rsq.update(zip(refs, zip(seqs, repeat(now))))
        self.seq = end & 0xFFFFFFFF
        packer.add_many(msgs)

    def _send_some(self, refs: list, msgs: list, now: float, packer: Packer) -> None:
        """:meth:`_send_objects` where objects are gone or the resend queue is full."""
        seq = self.seq
        rsq = self.rsq
        room = self.rsq_size - len(rsq)
        gone, sent = [], []
        for ref, msg in zip(refs, msgs):
            if msg is None:
                gone.append(ref)
                continue
            if room > 0:
                room -= 1
                rsq[ref] = (seq, now)
            else:
                self._rsq_add(ref, seq, now)
            seq = (seq + 1) & 0xFFFFFFFF
            sent.append(msg)
        packer.add_many(sent)
        self.seq = seq
        if gone:
            self._release_many(gone)

    def _rsq_add(self, entry, seq: int, now: float) -> None:
        if len(self.rsq) >= self.rsq_size:
            oldest = next(iter(self.rsq))
            del self.rsq[oldest]
            self.rsq_full += 1
            if type(oldest) is not Ctl:
                self.source.release(oldest)
        self.rsq[entry] = (seq, now)

    def _after_run(self, now: float) -> None:
        self.alive_at = now + ALIVE_INTERVAL

    # --- timers -------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        t = 0.0 if self.alive_at is None else self.alive_at
        hole = self._hole_deadline()
        return t if hole is None else min(t, hole)

    def _hole_deadline(self) -> float | None:
        if self.acked_upto is None or not self.rsq or self.hello != DONE:
            return None
        for seq, sent in self.rsq.values():
            if after(seq, self.acked_upto):
                return None
            return sent + self.hole_timeout
        return None

    def tick(self, now: float) -> list[Action]:
        if self.alive_at is None or now >= self.alive_at:
            self.alive_at = now + ALIVE_INTERVAL
            if self.hello != DONE:
                self.hello_alive = Ctl(K.NET_F_ALIVE)
            elif self.ack_from_set and self.tracker.set:
                self._queue_ctl(K.NET_F_ACK, self.ack_from, self.tracker.last)
                self.ack_from_set = False
            else:
                self._queue_ctl(K.NET_F_ALIVE)
        if self.hello == DONE and self.acked_upto is not None:
            holes = []
            for entry, (seq, sent) in self.rsq.items():
                if after(seq, self.acked_upto) or sent + self.hole_timeout > now:
                    break
                holes.append(entry)
            for entry in holes:
                del self.rsq[entry]
                if type(entry) is Ctl and entry.flags & K.NET_F_ACK:
                    continue  # a lost ACK: the next ones cover the window anyway
                self.txq[entry] = None
        return []

    # --- statistics -----------------------------------------------------------------------------
    def queue_stats(self) -> tuple[int, list[tuple[str, int, int, int]]]:
        nodes = sum(1 for e in self.txq if type(e) is Ctl) + sum(
            1 for e in self.rsq if type(e) is Ctl)
        return nodes, [("txqueue", len(self.txq), 2147483647, 0),
                       ("rsqueue", len(self.rsq), self.rsq_size, self.rsq_full)]

    def rsqueue_dump(self) -> str:
        """The text of ``-s rsqueue`` (conntrackd.md §7.10)."""
        lines = [f"resent queue (len={len(self.rsq)})\n"]
        for entry, (seq, _) in self.rsq.items():
            if type(entry) is Ctl:
                lines.append(f"control -> seq:{seq} flags:{entry.flags}\n")
            else:
                lines.append(f"object -> seq:{seq}\n")
        return "".join(lines)
