"""The daemon's one event loop: the only place that waits.

A :mod:`selectors` loop with timers on a monotonic clock, like the reference's
``select()`` loop: file descriptors are served in registration order (the first
registered first), expired timers run before the next wait, and the wait lasts until
the next timer. Signals arrive through ``signal.set_wakeup_fd`` and their callbacks run
inside the loop, never in the middle of another callback. A callback that raises is
reported to :attr:`Loop.on_error` and the loop goes on (a bad request or datagram never
ends the daemon). Fairness limits (``EventIterationLimit``) belong to the callbacks.

API: :meth:`Loop.add_reader` / :meth:`Loop.remove_reader`, :meth:`Loop.add_writer` /
:meth:`Loop.remove_writer`, :meth:`Loop.call_later` / :meth:`Loop.call_at` returning a
:class:`Timer` (``cancel()``), :meth:`Loop.add_signal`, :meth:`Loop.run`,
:meth:`Loop.stop`, :meth:`Loop.time`.
"""
from __future__ import annotations

import heapq
import itertools
import os
import selectors
import signal
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable


class Timer:
    """A scheduled callback; :meth:`cancel` before it runs and it never will."""
    __slots__ = ("when", "callback", "args", "cancelled")

    def __init__(self, when: float, callback: "Callable[..., Any]", args: tuple) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Entry:
    __slots__ = ("seq", "reader", "writer")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.reader = None
        self.writer = None


def _fileno(fd) -> int:
    return fd if isinstance(fd, int) else fd.fileno()


class Loop:
    """One selectors loop with timers and signals (see the module docstring)."""

    def __init__(self, clock: "Callable[[], float]" = time.monotonic) -> None:
        self.clock = clock
        self.selector = selectors.DefaultSelector()
        self.entries: dict[int, _Entry] = {}
        self.timers: list[tuple[float, int, Timer]] = []
        self.seq = itertools.count()
        self.running = False
        self.signals: dict[int, "Callable[[int], Any]"] = {}
        self._wakeup: tuple[int, int] | None = None
        self._old_wakeup = -1
        self.on_error: "Callable[[BaseException], Any] | None" = None

    # --- time and timers ---
    def time(self) -> float:
        return self.clock()

    def call_at(self, when: float, callback: "Callable[..., Any]", *args: Any) -> Timer:
        timer = Timer(when, callback, args)
        heapq.heappush(self.timers, (when, next(self.seq), timer))
        return timer

    def call_later(self, delay: float, callback: "Callable[..., Any]", *args: Any) -> Timer:
        return self.call_at(self.clock() + delay, callback, *args)

    # --- descriptors ---
    def _update(self, fd: int) -> None:
        entry = self.entries[fd]
        events = (selectors.EVENT_READ if entry.reader else 0) | \
                 (selectors.EVENT_WRITE if entry.writer else 0)
        try:
            self.selector.unregister(fd)
        except KeyError:
            pass
        if events:
            self.selector.register(fd, events, entry)
        else:
            del self.entries[fd]

    def add_reader(self, fd, callback: "Callable[[], Any]") -> None:
        """Call ``callback()`` whenever ``fd`` (an int or an object with ``fileno()``)
        is readable."""
        fd = _fileno(fd)
        entry = self.entries.setdefault(fd, _Entry(next(self.seq)))
        entry.reader = callback
        self._update(fd)

    def remove_reader(self, fd) -> None:
        fd = _fileno(fd)
        if fd in self.entries:
            self.entries[fd].reader = None
            self._update(fd)

    def add_writer(self, fd, callback: "Callable[[], Any]") -> None:
        fd = _fileno(fd)
        entry = self.entries.setdefault(fd, _Entry(next(self.seq)))
        entry.writer = callback
        self._update(fd)

    def remove_writer(self, fd) -> None:
        fd = _fileno(fd)
        if fd in self.entries:
            self.entries[fd].writer = None
            self._update(fd)

    # --- signals ---
    def add_signal(self, signum: int, callback: "Callable[[int], Any]") -> None:
        """Run ``callback(signum)`` inside the loop when the signal arrives."""
        if self._wakeup is None:
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._wakeup = (r, w)
            self._old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
            self.add_reader(r, self._read_signals)
        self.signals[signum] = callback
        signal.signal(signum, _noop)

    def _read_signals(self) -> None:
        assert self._wakeup is not None
        try:
            data = os.read(self._wakeup[0], 512)
        except BlockingIOError:
            return
        for signum in data:
            cb = self.signals.get(signum)
            if cb is not None:
                self._call(cb, signum)

    # --- running ---
    def stop(self) -> None:
        """Return from :meth:`run` after the current callback."""
        self.running = False

    def _call(self, callback, *args) -> None:
        try:
            callback(*args)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - reported, the daemon goes on
            if self.on_error is None:
                raise
            self.on_error(e)

    def _run_timers(self) -> float | None:
        now = self.clock()
        while self.timers and self.running:
            when, _, timer = self.timers[0]
            if timer.cancelled:
                heapq.heappop(self.timers)
                continue
            if when > now:
                return when - now
            heapq.heappop(self.timers)
            timer.cancelled = True
            self._call(timer.callback, *timer.args)
            now = self.clock()
        return None

    def run_once(self, timeout: float | None = None) -> None:
        """Run expired timers, wait once (at most ``timeout`` seconds, or until the next
        timer) and serve the ready descriptors in registration order."""
        wait = self._run_timers()
        if not self.running:
            return
        if timeout is not None:
            wait = timeout if wait is None else min(wait, timeout)
        if not self.entries and wait is None:
            self.running = False  # nothing left that could ever wake us
            return
        ready = self.selector.select(wait)
        ready.sort(key=lambda kv: kv[0].data.seq)
        for key, events in ready:
            if not self.running:
                return
            entry = key.data
            if events & selectors.EVENT_READ and entry.reader is not None:
                self._call(entry.reader)
            if events & selectors.EVENT_WRITE and entry.writer is not None \
                    and self.entries.get(key.fd) is entry:
                self._call(entry.writer)

    def run(self) -> None:
        """Serve descriptors, timers and signals until :meth:`stop`."""
        self.running = True
        while self.running:
            self.run_once()

    def close(self) -> None:
        if self._wakeup is not None:
            signal.set_wakeup_fd(self._old_wakeup)
            for fd in self._wakeup:
                os.close(fd)
            self._wakeup = None
        self.selector.close()


def _noop(signum, frame) -> None:
    """Python-level handler: the work happens in the loop (wakeup fd)."""
