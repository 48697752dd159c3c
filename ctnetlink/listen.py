"""The event socket, for a blocking loop or for an outside one (``selectors``, asyncio).

:class:`Listener` binds a netlink socket to the conntrack multicast groups (with a large
receive buffer) and feeds what it receives to an :class:`~ctnetlink.events.EventReader`.
``fileno()`` and the non-blocking :meth:`~Listener.read_events` /
:meth:`~Listener.read_raw` let a daemon multiplex it with its other sockets; iterating
over it blocks.

**Overruns.** When the kernel cannot queue an event (``ENOBUFS``) it drops every further
one until the queue has been read empty. The listener then reads what is still queued
(older than the loss), takes the number of dropped messages from the socket's drop
counter, reports it to ``on_overrun`` and on the next event (``Event.lost``).

**Resynchronisation** (``resync=True``). After the count, a dump of the table is
requested on a second socket and delivered as events marked ``resync=True``: NEW for
entries not reported alive before, UPDATE for those that were, then a synthetic DESTROY
(carrying the original tuple and zone) for every flow reported alive that the dump did
not show. Events queued meanwhile on the event socket follow the dump. *Guarantee*: no
event after the loss was dropped (the queue was empty when the dump was requested) and
each of them is applied after the dump, so for every flow the last thing the consumer
hears is either its last event or, if it had none since the loss, the dump's (current)
state; once things are quiet, the flows the consumer holds alive are exactly the
kernel's table. The consumer may meanwhile see a NEW for a flow the resync already
announced, or a DESTROY for one it already removed: apply NEW/UPDATE as "present",
DESTROY as "absent". Only flows are resynchronised, not expectations.
"""
from __future__ import annotations

import errno as E
TYPE_CHECKING = False  # typing is not imported at run time: the CLI must start fast
if TYPE_CHECKING:
    from typing import Callable, Iterable, Iterator

from nfnl.constants import NLM_F_DUMP, NLM_F_REQUEST
from nfnl.errors import DumpInterrupted, NetlinkError
from nfnl.message import DumpReader, build_nfnl
from nfnl.socket import EVENT_RCVBUF, NetlinkSocket

from . import constants as K
from .errors import wrap
from .events import EventReader, RawEvent
from .model import Event, EventType

SIOCGSKNS = 0x894C
"""ioctl: a file descriptor of a socket's network namespace."""


class Listener:
    """Conntrack (and expectation) events of the multicast ``groups``.

    The socket is bound when the listener is made: events from then on are kept.
    ``family`` and ``types`` select events; ``rcvbuf`` sizes the receive buffer;
    ``sock`` uses an existing bound socket (closed with the listener only if the
    listener opened it). See the module docstring for ``on_overrun`` and ``resync``.

    >>> src = Conntrack().listen()                             # doctest: +SKIP
    >>> sel.register(src, selectors.EVENT_READ)
    >>> for ev in src.read_events(): ...
    """

    def __init__(
        self, groups: int = K.NL_GROUPS_CONNTRACK, *, family: int | None = None,
        types: Iterable[EventType] | None = None, rcvbuf: int | None = EVENT_RCVBUF,
        resync: bool = False, on_overrun: Callable[[int], None] | None = None,
        sock: NetlinkSocket | None = None, nonblocking: bool = False,
    ) -> None:
        if types is not None:
            types = frozenset(EventType(t) for t in types)
        if resync:
            need = K.Group.NEW | K.Group.DESTROY
            bound = groups if sock is None else sock.groups
            if bound & need != need or (types is not None and not
                                        {EventType.NEW, EventType.DESTROY} <= types):
                raise ValueError("resync needs the NEW and DESTROY events")
        self.own = sock is None
        self.sock = sock if sock is not None else NetlinkSocket(groups=groups, rcvbuf=rcvbuf,
                                                                 nonblocking=nonblocking)
        self.reader = EventReader(family=family, types=types, track=resync)
        self.resync = resync
        self.on_overrun = on_overrun
        self.overruns = 0
        """``ENOBUFS`` seen."""
        self.lost = 0
        """Messages the kernel dropped, in all."""
        self._drops = self.sock.drops
        self._gap = False
        self._pending: Exception | None = None
        self._dump: DumpReader | None = None
        self._epoll = None
        self._dump_sock: NetlinkSocket | None = None
        if resync:
            # opened now, in the namespace the listener is made in (never later, when the
            # thread may have moved), and checked against a socket we were given
            try:
                self._dump_sock = NetlinkSocket(self.sock.protocol, rcvbuf=4 << 20)
                if not self.own and not _same_netns(self.sock, self._dump_sock):
                    raise ValueError("resync: the event socket belongs to another network "
                                     "namespace")
            except BaseException:
                self.close()
                raise

    # --- lifetime -----------------------------------------------------------------------
    def fileno(self) -> int:
        """Readable when :meth:`read_events` has something to return."""
        if not self.resync:
            return self.sock.fileno()
        if self._epoll is None:
            import select

            self._epoll = select.epoll()
            self._epoll.register(self.sock.fileno(), select.EPOLLIN)
            if self._dump is not None:
                self._epoll.register(self._dump_sock.fileno(), select.EPOLLIN)
        return self._epoll.fileno()

    @property
    def closed(self) -> bool:
        return self.sock.closed

    @property
    def repairing(self) -> bool:
        """Between an overrun and the end of its count (and, with ``resync``, of the
        dump): the consumer's view is not yet the kernel's."""
        return self._gap or self._dump is not None

    def close(self) -> None:
        if self.own:
            self.sock.close()
        if self._dump_sock is not None:
            self._dump_sock.close()
        if self._epoll is not None:
            self._epoll.close()

    def __enter__(self) -> "Listener":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- reading -------------------------------------------------------------------------
    def read_events(self, max: int = 4096) -> list[Event]:
        """The events ready now (at most about ``max``), without blocking."""
        return self._pull(False, max, False)

    def read_raw(self, max: int = 4096, *, block: bool = False) -> list[RawEvent]:
        """Like :meth:`read_events`, as :class:`~ctnetlink.events.RawEvent` (undecoded);
        with ``block``, waits for the first one."""
        return self._pull(True, max, block)

    def read_datagrams(self, max: int = 4096, *, block: bool = False) -> list[bytes]:
        """The datagrams received (at most about ``max``), undecoded and unselected:
        for programs that format straight from the bytes (``conntrack -E``). Overruns
        are counted as for :meth:`read_events`; what the caller does not handle itself
        it passes to ``listener.reader.feed_raw`` (family and type selection, several
        messages in a datagram, malformed input). Not with ``resync``."""
        if self.resync:
            raise ValueError("read_datagrams() of a listener with resync")
        return self._pull(None, max, block)

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    def events(self, *, close: bool = False) -> Iterator[Event]:
        """Block for events; ends when the socket is closed (or raises its timeout).
        With ``close``, the listener is closed when the iterator ends."""
        return self._iterate(False, close)

    def raw(self, *, close: bool = False) -> Iterator[RawEvent]:
        """Like :meth:`events`, as :class:`~ctnetlink.events.RawEvent`."""
        return self._iterate(True, close)

    def _iterate(self, raw: bool, close: bool) -> Iterator:
        import select

        try:
            while True:
                try:
                    # one receive batch at a time: the fewer decoded events wait to be
                    # taken, the less the cyclic GC has to walk (about a tenth of the
                    # cost per event with 256)
                    got = self._pull(raw, 64, True)
                except OSError as e:
                    if e.errno == E.EBADF or self.sock.closed:
                        return
                    raise
                if got:
                    yield from got
                elif self.sock.closed:
                    return
                else:  # a non-blocking socket with nothing to read
                    select.select([self], [], [])
        finally:
            if close:
                self.close()

    def _pull(self, raw: bool | None, limit: int, block: bool) -> list:
        """Receive and feed datagrams until ``limit`` events are out or nothing is ready
        (with ``block``, the first receive waits). An error after some events were
        taken is raised by the next call, so that no received event is lost. ``raw``
        None: the datagrams themselves."""
        if self._pending is not None:
            exc, self._pending = self._pending, None
            raise exc
        out: list = []
        feed = self.reader.feed_raw_many if raw else self.reader.feed_many
        sock = self.sock
        try:
            # (without blocking, a loss is always counted before returning: nothing would
            # make the socket readable again once its queue is empty)
            while len(out) < limit or (self._gap and not block):
                if self._dump is not None:
                    out += self._pump_dump(raw)
                    continue
                before = sock.overruns
                wait = block and not out and not self._gap
                count = 64 if self._gap else max(1, min(64, limit - len(out)))
                batch = sock.recv_many(count, nowait=not wait)
                if batch:
                    out += batch if raw is None else feed(batch)
                if sock.overruns != before:
                    self._gap = True
                    self.overruns += sock.overruns - before
                elif len(batch) < count:  # the queue was empty
                    if not self._gap:
                        break
                    self._close_gap()
        except Exception as e:
            if not out:
                raise
            self._pending = e
        return out

    # --- overruns and resynchronisation ---------------------------------------------------
    def _close_gap(self) -> None:
        """The queue is empty after an overrun: the kernel queues events again."""
        self._gap = False
        now = self.sock.drops
        n = max(now - self._drops, 1)
        self._drops = now
        self.lost += n
        self.reader.overrun(n)
        if self.on_overrun is not None:
            self.on_overrun(n)
        if self.resync:
            self._start_dump()

    def _start_dump(self) -> None:
        ds = self._dump_sock
        self.reader.begin_resync()
        seq = ds.next_seq()
        msg = build_nfnl(K.IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, self.reader.family or 0,
                         b"", seq)
        self._dump = DumpReader(seq, msg)
        ds.send(msg)
        if self._epoll is not None:
            import select

            self._epoll.register(ds.fileno(), select.EPOLLIN)

    def _end_dump(self) -> None:
        self._dump = None
        if self._epoll is not None:
            self._epoll.unregister(self._dump_sock.fileno())

    def _pump_dump(self, raw: bool) -> list:
        """One datagram of the resync dump (the kernel has it ready: this never waits long)."""
        data = self._dump_sock.recv()
        try:
            if data is None:
                raise NetlinkError(E.ENOBUFS)
            items = self._dump.feed(data)
        except DumpInterrupted:
            self._end_dump()
            self.reader.abort_resync()
            self._start_dump()
            return []
        except NetlinkError as e:
            self._end_dump()
            self.reader.abort_resync()
            raise wrap(e) from None
        out = self.reader.feed_dump(items, raw=raw)
        if self._dump.done:
            self._end_dump()
            out += self.reader.end_resync(raw=raw)
        return out


def _same_netns(a: NetlinkSocket, b: NetlinkSocket) -> bool:
    """Whether two sockets live in the same network namespace (True when unknown)."""
    import fcntl
    import os

    inodes = []
    for s in (a, b):
        try:
            fd = fcntl.ioctl(s.fileno(), SIOCGSKNS)
        except OSError:
            return True
        try:
            inodes.append(os.fstat(fd).st_ino)
        finally:
            os.close(fd)
    return inodes[0] == inodes[1]


__all__ = ["Listener", "EVENT_RCVBUF"]
