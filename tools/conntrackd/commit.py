"""Commit (``-c``, ``-c ct``, ``-c expect``): the external caches written into the kernel
(spec §6.7), in steps on the daemon's loop.

:class:`Committer` takes the request of a client, keeps its connection open and writes
the external conntrack cache (then, for ``-c`` with ``ExpectationSync``, the external
expectation cache) into the kernel as the C daemon does: each entry becomes the request
of :func:`~.wire.ctsync.stored_commit_request` (original tuple, its inversion as reply
tuple, NAT requests, status without EXPECTED, the estimated timeout or
``CommitTimeout``, mark, zone, helper, labels, protocol state, "be liberal" TCP flags
without ``TCPWindowTracking``), flows that are not related go first and related ones in
a second pass; a create refused with EEXIST is deleted and created once more. The log
lines are the reference's (``Committed N new entries``, ``N entries can't be
committed``, ``commit has taken S.UUUUUU seconds``, ``commit-create: ...`` /
``commit-destroy: ...`` followed by the flow). When everything is written the client's
connection is closed: ``conntrackd -c`` returns, exit 0, nothing written.

Unlike 1.4.7 the requests of a step go to the kernel in batches (a few hundred per
datagram, :meth:`ctnetlink.client.Conntrack.create_raw_many`) instead of one
request-and-ACK round trip per entry; a step handles :data:`STEP` entries and the next
step runs at the next loop iteration, so events, datagrams and other requests are
served in between. ``running`` is set for exactly the duration of a commit (the flush
requests check it), a second commit while one runs is refused with the reference's
``commit already in progress, skipping``, and a timeout estimate of 0 gets the 60 s of
a negative one instead of a request the kernel refuses.
"""
from __future__ import annotations

import errno
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

from . import handlers as H
from .cache import F_INET6, META, Cache, ExpectCache
from .wire.ctsync import stored_commit_request

STEP = 2048
"""Entries handled per loop iteration (about 10-20 ms of work)."""
FALLBACK_TIMEOUT = 60


class CommitSettings:
    """The options that shape commit requests: ``CommitTimeout`` (0: estimate) and
    ``TCPWindowTracking``."""

    __slots__ = ("commit_timeout", "window_tracking", "step")

    def __init__(self, commit_timeout: int = 0, window_tracking: bool = False,
                 step: int = STEP) -> None:
        self.commit_timeout = commit_timeout or 0
        self.window_tracking = bool(window_tracking)
        self.step = step

    @classmethod
    def from_config(cls, sync: Any) -> "CommitSettings":
        return cls(commit_timeout=getattr(sync, "commit_timeout", 0) or 0,
                   window_tracking=getattr(sync, "tcp_window_tracking", False))


class _Job:
    """One cache being committed: the keys still to do, the pass, the counters."""

    __slots__ = ("cache", "keys", "pos", "related", "second", "ok", "fail", "start", "what")

    def __init__(self, cache: Cache, what: str, start: float) -> None:
        self.cache = cache
        self.keys = list(cache._d)  # the hash table walk of the reference, in one go
        self.pos = 0
        self.related: list[bytes] = []
        self.second = False
        self.ok = 0
        self.fail = 0
        self.start = start
        self.what = what


class Committer:
    """Commits external caches in steps on ``loop`` (see the module docstring).

    ``ct`` is the :class:`ctnetlink.client.Conntrack` of the commit socket (its events
    are the daemon's own: register its port id as the commit origin); ``mode`` is the
    :class:`~.syncmode.SyncMode` (external caches, ``commit_running``,
    ``cancel_purge``); ``flow_log(text, priority=...)`` writes the flow line that
    follows an error (the logger's ``flow``)."""

    def __init__(self, mode: Any, ct: Any, loop: Any, log: Callable[[str, str], None], *,
                 settings: CommitSettings | None = None,
                 flow_log: Callable[..., Any] | None = None,
                 clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] = time.monotonic) -> None:
        self.mode = mode
        self.ct = ct
        self.loop = loop
        self.log = log
        self.settings = settings or CommitSettings()
        self.flow_log = flow_log
        self.clock = clock
        self.timer = timer
        self.conn: Any = None
        self.jobs: list[_Job] = []
        self._timer = None
        self.running = False

    # --- requests ----------------------------------------------------------------------------
    def request(self, code: int, conn: Any) -> bool:
        """Handle a commit request (18, 42, 46); False for any other code."""
        mode = self.mode
        exp = mode.settings.expectation_sync
        if code == H.CT_COMMIT:
            caches = [(mode.external, "entries")]
            line = "committing conntrack cache"
        elif code == H.EXP_COMMIT:
            if not exp:
                return True
            caches = [(mode.external_exp, "expectations")]
            line = "committing expectation cache"
        elif code == H.ALL_COMMIT:
            caches = [(mode.external, "entries")]
            if exp:
                caches.append((mode.external_exp, "expectations"))
            line = "committing all external caches"
        else:
            return False
        mode.cancel_purge()
        if self.running:
            self.log("notice", "commit already in progress, skipping")
            return True
        self.log("notice", line)
        if mode.settings.disable_external_cache:
            return True  # flows went to the kernel as they came: nothing to commit
        self.conn = conn
        conn.detach()
        self.jobs = [_Job(cache, what, self.timer()) for cache, what in caches]
        self._set_running(True)
        self._step()
        return True

    def _set_running(self, flag: bool) -> None:
        self.running = flag
        self.mode.commit_running = flag

    # --- the steps ---------------------------------------------------------------------------
    def _step(self) -> None:
        self._timer = None
        job = self.jobs[0]
        if job.start is None:
            job.start = self.timer()
        if isinstance(job.cache, ExpectCache):
            done = self._step_expect(job)
        else:
            done = self._step_ct(job)
        if done:
            self._report(job)
            self.jobs.pop(0)
            if self.jobs:
                self.jobs[0].start = None  # its clock starts with its first step
        if self.jobs:
            self._timer = self.loop.call_later(0, self._step)
        else:
            self._finish()

    def _step_ct(self, job: _Job) -> bool:
        """Commit the next :data:`STEP` entries of the current pass; True when done."""
        cache = job.cache
        d = cache._d
        s = self.settings
        configured = s.commit_timeout
        wt = s.window_tracking
        now = int(self.clock())
        source = job.related if job.second else job.keys
        end = min(job.pos + s.step, len(source))
        unpack = META.unpack_from
        message = cache.message
        todo: list[bytes] = []
        requests: list[tuple[int, bytes]] = []
        for key in source[job.pos:end]:
            value = d.get(key)
            if value is None:
                continue  # deleted meanwhile (a DEL from the peer)
            msg = message(key, value)
            flags, _, last = unpack(value)
            try:
                attrs, related = stored_commit_request(msg, 0, len(msg), elapsed=now - last,
                                                       configured=configured,
                                                       window_tracking=wt)
            except Exception as e:  # noqa: BLE001 - one bad entry never stops a commit
                self._failed(cache, key, "commit-create", errno.EINVAL, str(e))
                job.fail += 1
                continue
            if related and not job.second:
                job.related.append(key)
                continue
            todo.append(key)
            requests.append((10 if flags & F_INET6 else 2, attrs))
        job.pos = end
        if requests:
            self._send(job, todo, requests)
        if job.pos < len(source):
            return False
        if not job.second and job.related:
            job.second = True
            job.pos = 0
            return False
        return True

    def _send(self, job: _Job, keys: list[bytes], requests: list[tuple[int, bytes]]) -> None:
        ct = self.ct
        errors = ct.create_raw_many(requests)
        again: list[int] = []
        for i, err in errors.items():
            if err.errno == errno.EEXIST:
                again.append(i)
            else:
                self._failed(job.cache, keys[i], "commit-create", err.errno)
                job.fail += 1
        if again:  # the reference: delete, then create once more
            gone = ct.delete_raw_many([requests[i] for i in again])
            retry = []
            for k, i in enumerate(again):
                err = gone.get(k)
                if err is not None and err.errno != errno.ENOENT:
                    self._failed(job.cache, keys[i], "commit-destroy", err.errno)
                    job.fail += 1
                else:
                    retry.append(i)
            if retry:
                failed = ct.create_raw_many([requests[i] for i in retry])
                for k, err in failed.items():
                    self._failed(job.cache, keys[retry[k]], "commit-create", err.errno)
                    job.fail += 1
                job.ok += len(retry) - len(failed)
        job.ok += len(requests) - len(errors)

    def _step_expect(self, job: _Job) -> bool:
        """Expectations (few): one request each, EEXIST -> delete and create again."""
        from ctnetlink.errors import ConntrackError  # noqa: PLC0415

        from .wire import kernel as KR  # noqa: PLC0415

        cache = job.cache
        d = cache._d
        s = self.settings
        now = int(self.clock())
        end = min(job.pos + s.step, len(job.keys))
        for key in job.keys[job.pos:end]:
            value = d.get(key)
            if value is None:
                continue
            _, _, last = META.unpack_from(value)
            try:
                exp = cache.expect(key)
            except Exception as e:  # noqa: BLE001
                self._failed(cache, key, "commit-create", errno.EINVAL, str(e))
                job.fail += 1
                continue
            if s.commit_timeout:
                timeout = s.commit_timeout
            else:
                timeout = (exp.timeout or 0) - (now - last)
                if timeout <= 0:
                    timeout = FALLBACK_TIMEOUT
            req = KR.commit_expect(exp, timeout=timeout)
            try:
                self.ct.create_expect(req)
                job.ok += 1
                continue
            except ConntrackError as e:
                if e.errno != errno.EEXIST:
                    self._failed(cache, key, "commit-create", e.errno)
                    job.fail += 1
                    continue
            try:
                self.ct.delete_expect(req)
            except ConntrackError as e:
                if e.errno != errno.ENOENT:
                    self._failed(cache, key, "commit-destroy", e.errno)
                    job.fail += 1
                    continue
            try:
                self.ct.create_expect(req)
                job.ok += 1
            except ConntrackError as e:
                self._failed(cache, key, "commit-create", e.errno)
                job.fail += 1
        job.pos = end
        return job.pos >= len(job.keys)

    # --- results -----------------------------------------------------------------------------
    def _failed(self, cache: Cache, key: bytes, what: str, err: int | None,
                text: str | None = None) -> None:
        self.log("error", f"{what}: {text or os.strerror(err or 0)}")
        if self.flow_log is None:
            return
        try:
            from .output import flow_text  # noqa: PLC0415

            if isinstance(cache, ExpectCache):
                from .output import expect_text  # noqa: PLC0415

                line = expect_text(cache.message(key))
            else:
                line = flow_text(cache.message(key))
        except Exception:  # noqa: BLE001 - the error line is written already
            return
        from .log import ERROR  # noqa: PLC0415

        self.flow_log(line, priority=ERROR)

    def _report(self, job: _Job) -> None:
        took = self.timer() - (job.start or self.timer())
        stats = job.cache.stats
        stats.commit_ok += job.ok
        stats.commit_fail += job.fail
        self.log("notice", f"Committed {job.ok} new {job.what}")
        if job.fail:
            self.log("notice", f"{job.fail} {job.what} can't be committed")
        secs = int(took)
        self.log("notice", f"commit has taken {secs}.{int((took - secs) * 1e6):06d} seconds")

    def _finish(self) -> None:
        self._set_running(False)
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Shutdown: stop a running commit and let its client go."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.jobs = []
        self._finish()
