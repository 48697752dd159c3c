"""A model of the C daemon's FTFW logic (conntrack-tools 1.4.7 ``sync-ftfw.c``), for tests.

Written from conntrackd.md §5.8-§5.10 and checked against the recorded datagrams of C
daemons (``tests/unit/test_sync_recorded.py``). Same interface as
:class:`~conntrack_tools.conntrackd.sync.ftfw.FtfwMachine`, so the two can be paired on
a simulated link. What makes the C pair lose data is kept on purpose:

* every received HELLO empties the resend queue (``queue_flush(rs_queue)``) and the
  message is accepted "in sync" without sequence tracking (no gap detection, and the
  window ACK then covers messages that never arrived);
* HELLO is set on every message until a HELLO_BACK arrives, HELLO_BACK on the single
  next message after a HELLO;
* the HELLO/HELLO_BACK bits are OR'ed into the stored control message, so a control
  message resent after a NACK keeps them;
* the window is reset only by a window ACK (not by the alive ACK); data is resent only
  after a NACK; the resend queue drops its oldest entry when full.
"""
from __future__ import annotations

from conntrack_tools.conntrackd.sync.common import (
    ALIVE_INTERVAL, BAD, CTL, DATA, DEFAULT_BUFFER, DROP, Ctl, Log, Machine, after, before, bulk,
)
from conntrack_tools.conntrackd.wire import constants as K

HELLO_INIT, HELLO_SAY, HELLO_DONE = 0, 1, 2


class CFtfw(Machine):
    """The reference's FTFW node (see the module docstring)."""

    mode = "ftfw"

    def __init__(self, source=None, *, seq: int = 0, window: int = 300,
                 resend_queue_size: int = 131072, startup_resync: bool = False,
                 disable_external_cache: bool = False, buffer_size: int = DEFAULT_BUFFER,
                 start: float = 0.0) -> None:
        super().__init__(source, seq=seq, buffer_size=buffer_size,
                         disable_external_cache=disable_external_cache)
        self.window_size = window
        self.window = window
        self.ack_from = 0
        self.ack_from_set = False
        self.hello_state = HELLO_INIT
        self.say_hello_back = False
        self.rsq: dict = {}  # entry -> seq, oldest first
        self.rsq_size = resend_queue_size
        self.rsq_full = 0
        self.alive_at = start + ALIVE_INTERVAL  # ftfw_init: add_alarm(&alive_alarm, 1, 0)
        if startup_resync:
            self._queue_ctl(K.NET_F_RESYNC)

    # --- ftfw_recv ------------------------------------------------------------------------------
    def _recv(self, msg, now: float, out: list) -> str:
        tr = self.tracker
        if self._digest_hello(msg):
            if self.ack_from_set and before(msg.seq, self.ack_from):
                self.window = self.window_size - 1
                self.ack_from = msg.seq
            self._queue_flush()
            cls = "bypass"
        else:
            cls = tr.classify(msg.seq)
        if cls == "after":
            ret = self._digest_msg(msg, out)
            if ret is BAD:
                return BAD
            expected = tr.expected
            if self.ack_from_set:
                self._queue_ctl(K.NET_F_ACK, self.ack_from, (expected - 1) & 0xFFFFFFFF)
                self.ack_from_set = False
            self._queue_ctl(K.NET_F_NACK, expected, (msg.seq - 1) & 0xFFFFFFFF)
            self.window = self.window_size - 1
            self.ack_from = msg.seq
            self.ack_from_set = True
        elif cls == "before":
            return DROP
        else:  # unset, in sync, bypass
            ret = self._digest_msg(msg, out)
            if ret is BAD:
                return BAD
            if not self.ack_from_set:
                self.ack_from_set = True
                self.ack_from = msg.seq
            self.window -= 1
            if self.window <= 0:
                self._queue_ctl(K.NET_F_ACK, self.ack_from, msg.seq)
                self.window = self.window_size
                self.ack_from_set = False
        tr.update(msg.seq)
        return ret

    def _digest_hello(self, msg) -> bool:
        ret = False
        if msg.flags & K.NET_F_HELLO:
            self.say_hello_back = True
            ret = True
        if msg.flags & K.NET_F_HELLO_BACK and self.hello_state == HELLO_SAY:
            self.hello_state = HELLO_DONE
        return ret

    def _digest_msg(self, msg, out: list) -> str:
        if msg.is_data:
            return DATA
        if msg.is_ack:
            if before(msg.to_seq, msg.from_seq):
                return BAD
            self._rs_iterate(msg.from_seq, msg.to_seq, resend=False)
            return CTL
        if msg.is_nack:
            if before(msg.to_seq, msg.from_seq):
                return BAD
            self._rs_iterate(msg.from_seq, msg.to_seq, resend=True)
            return CTL
        if msg.is_resync:
            out.append(Log("notice", "resync requested by other node"))
            bulk(self)
            return CTL
        if msg.is_alive:
            return CTL
        return BAD

    def _rs_iterate(self, from_seq: int, to_seq: int, resend: bool) -> None:
        hit = []
        for entry, seq in self.rsq.items():
            if before(seq, from_seq):
                continue
            if after(seq, to_seq):
                break
            hit.append(entry)
        for entry in hit:
            del self.rsq[entry]
            if resend:
                self.txq[entry] = None
            elif type(entry) is not Ctl:
                self.source.release(entry)

    def _queue_flush(self) -> None:
        for entry in self.rsq:
            if type(entry) is not Ctl:
                self.source.release(entry)
        self.rsq.clear()

    # --- local events ---------------------------------------------------------------------------
    def enqueue(self, ref, now=None, dead: bool = False) -> None:
        if ref in self.rsq:
            del self.rsq[ref]
            self.txq[ref] = None
        elif ref not in self.txq:
            self.txq[ref] = None
            self.source.hold(ref)

    def request_resync(self) -> list:
        self._queue_ctl(K.NET_F_RESYNC)
        return [Log("notice", "resync requested")]

    def send_bulk(self) -> list:
        bulk(self)
        return [Log("notice", "sending bulk update")]

    # --- tx_queue_xmit --------------------------------------------------------------------------
    def _hello_flags(self) -> int:
        flags = 0
        if self.hello_state == HELLO_INIT:
            self.hello_state = HELLO_SAY
        if self.hello_state == HELLO_SAY:
            flags |= K.NET_F_HELLO
        if self.say_hello_back:
            flags |= K.NET_F_HELLO_BACK
            self.say_hello_back = False
        return flags

    def _transmit(self, entry, now: float):
        if type(entry) is Ctl:
            entry.flags |= self._hello_flags()  # set in the stored message: kept on resend
            seq = self.next_seq()
            msg = entry.encode(seq)
            entry.seq = seq
            if entry.has_range:
                self._rs_add(entry, seq)
            return msg
        flags = self._hello_flags()
        seq = self.seq
        msg = self._render(entry, seq, flags)
        if msg is None:
            self.source.release(entry)
            return None
        self.next_seq()
        self._rs_add(entry, seq)
        return msg

    def _rs_add(self, entry, seq: int) -> None:
        if len(self.rsq) >= self.rsq_size:
            oldest = next(iter(self.rsq))
            del self.rsq[oldest]
            self.rsq_full += 1
            if type(oldest) is not Ctl:
                self.source.release(oldest)
        self.rsq[entry] = seq

    def _after_run(self, now: float) -> None:
        self.alive_at = now + ALIVE_INTERVAL

    # --- do_alive_alarm -------------------------------------------------------------------------
    def next_deadline(self) -> float:
        return self.alive_at

    def tick(self, now: float) -> list:
        if now >= self.alive_at:
            if self.ack_from_set and self.tracker.set:
                self._queue_ctl(K.NET_F_ACK, self.ack_from, self.tracker.last)
                self.ack_from_set = False
            else:
                self._queue_ctl(K.NET_F_ALIVE)
            self.alive_at = now + ALIVE_INTERVAL
        return []

    @property
    def hello(self) -> str:
        return "done" if self.hello_state == HELLO_DONE else "say"
