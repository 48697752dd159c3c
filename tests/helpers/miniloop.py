"""A small stand-in for the daemon's event loop (tests only): fd readers and timers
with ``add_reader``/``remove_reader``/``call_later``, run until a condition holds."""
from __future__ import annotations

import heapq
import itertools
import selectors
import time
from typing import Callable


class Timer:
    def __init__(self, when: float, cb: Callable[[], None]) -> None:
        self.when = when
        self.cb = cb
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class MiniLoop:
    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.timers: list[tuple[float, int, Timer]] = []
        self._n = itertools.count()

    def add_reader(self, fd: int, cb: Callable[[], None]) -> None:
        self.sel.register(fd, selectors.EVENT_READ, cb)

    def remove_reader(self, fd: int) -> None:
        self.sel.unregister(fd)

    def call_later(self, delay: float, cb: Callable[[], None]) -> Timer:
        t = Timer(time.monotonic() + delay, cb)
        heapq.heappush(self.timers, (t.when, next(self._n), t))
        return t

    def run_once(self, timeout: float = 0.05) -> None:
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, t = heapq.heappop(self.timers)
            if not t.cancelled:
                t.cb()
        if self.timers:
            timeout = max(0.0, min(timeout, self.timers[0][0] - time.monotonic()))
        for key, _ in self.sel.select(timeout):
            key.data()

    def run_until(self, cond: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            self.run_once()
        return cond()

    def run_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.run_once(min(0.05, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        self.sel.close()
