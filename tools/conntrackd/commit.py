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

Unlike 1.4.7 the requests go to the kernel in batches (a few hundred per datagram,
:meth:`ctnetlink.client.Conntrack.create_raw_many`) instead of one request-and-ACK
round trip per entry. A cache of :data:`FORK_MIN` entries or more is split between
worker processes (one per CPU): each commits its share through a socket of its own
(registered as the commit origin, so its events are the daemon's own) and reports
through a pipe the loop reads, while the daemon stays out of the kernel's event groups
(``pause_events``). Smaller caches, and the related flows, are committed in steps of
:data:`STEP` entries, one per loop iteration, so events, datagrams and other requests
are served in between. ``running`` is set for exactly the duration of a commit (the
flush requests check it), a second commit while one runs is refused with the
reference's ``commit already in progress, skipping``, and a timeout estimate of 0 gets
the 60 s of a negative one instead of a request the kernel refuses.
"""
from __future__ import annotations

import errno
import gc
import os
import signal
import struct
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

from . import entry as E
from . import handlers as H
from .cache import F_INET6, F_MIRRORED, META, META_SIZE, Cache, ExpectCache
from .wire.ctsync import stored_commit_request

STEP = 2048
"""Entries handled per loop iteration (about 10-20 ms of work)."""
FORK_MIN = 8192
"""Caches at least this large are committed by worker processes."""
WORKERS = 4
"""At most this many workers (one per CPU)."""
FALLBACK_TIMEOUT = 60
ORIGIN_GRACE = 30.0
"""Seconds a finished worker's port id still marks events as the daemon's own."""
_MSGHDR = struct.Struct("=IHHIIBBH")


class CommitSettings:
    """The options that shape commit requests: ``CommitTimeout`` (0: estimate) and
    ``TCPWindowTracking``."""

    __slots__ = ("commit_timeout", "window_tracking", "step", "batch", "fork_min")

    def __init__(self, commit_timeout: int = 0, window_tracking: bool = False,
                 step: int = STEP, batch: int = 512, fork_min: int = FORK_MIN) -> None:
        self.commit_timeout = commit_timeout or 0
        self.window_tracking = bool(window_tracking)
        self.step = step
        self.batch = batch
        self.fork_min = fork_min

    @classmethod
    def from_config(cls, sync: Any) -> "CommitSettings":
        return cls(commit_timeout=getattr(sync, "commit_timeout", 0) or 0,
                   window_tracking=getattr(sync, "tcp_window_tracking", False))


class Result:
    """What committing a slice of keys gave: entries created, failures (index in the
    slice's key list, ``commit-create``/``commit-destroy``, errno, text) and the indexes
    of related flows left for the second pass. Workers send it through a pipe."""

    __slots__ = ("ok", "failures", "related")

    def __init__(self) -> None:
        self.ok = 0
        self.failures: list[tuple[int, str, int, str | None]] = []
        self.related: list[int] = []

    def encode(self) -> bytes:
        lines = [f"O {self.ok}"]
        lines += [f"F {i} {what} {err} {' '.join((text or '').split())}".rstrip()
                  for i, what, err, text in self.failures]
        lines += [f"R {i}" for i in self.related]
        lines.append("E")
        return ("\n".join(lines) + "\n").encode("utf-8", "replace")

    @classmethod
    def decode(cls, data: bytes) -> "Result | None":
        """None unless ``data`` is a complete report."""
        lines = data.decode("utf-8", "replace").split("\n")
        if len(lines) < 2 or lines[-2] != "E":
            return None
        res = cls()
        for line in lines[:-2]:
            kind, _, rest = line.partition(" ")
            if kind == "O":
                res.ok = int(rest)
            elif kind == "F":
                i, what, err, *text = rest.split(" ", 3)
                res.failures.append((int(i), what, int(err), text[0] if text else None))
            elif kind == "R":
                res.related.append(int(rest))
        return res


def commit_keys(cache: Cache, ct: Any, keys: list[bytes], lo: int, hi: int,
                settings: "CommitSettings", now: int, *, second: bool) -> Result:
    """Commit the entries ``keys[lo:hi]`` of a conntrack cache through ``ct``: related
    flows are left for the second pass unless ``second``; batches of requests, EEXIST
    -> delete and create once more (spec §6.7)."""
    res = Result()
    get = cache.get
    configured = settings.commit_timeout
    wt = settings.window_tracking
    unpack = META.unpack_from
    batch = settings.batch
    hdr = _MSGHDR.pack
    request = stored_commit_request
    # (template id, flags) -> (tuples of the key, family): cache.message(key, value) inlined
    kinds: dict[tuple[int, int], tuple[Any, int]] = {}
    for base in range(lo, hi, batch):
        todo: list[int] = []
        requests: list[tuple[int, bytes]] = []
        for i in range(base, min(base + batch, hi)):
            key = keys[i]
            value = get(key)
            if value is None:
                continue  # deleted meanwhile (a DEL from the peer)
            flags, _, last = unpack(value)
            kind = kinds.get((key[0], flags & 12))
            if kind is None:
                kind = kinds[(key[0], flags & 12)] = (
                    E.tuples_fn(key[0], bool(flags & F_MIRRORED)),
                    10 if flags & F_INET6 else 2)
            fn, family = kind
            payload = fn(key) + value[META_SIZE:]
            msg = hdr(20 + len(payload), 0x100, 0, 0, 0, family, 0, 0) + payload
            try:
                attrs, related = request(msg, 0, len(msg), now - last, configured, wt)
            except Exception as e:  # noqa: BLE001 - one bad entry never stops a commit
                res.failures.append((i, "commit-create", errno.EINVAL, str(e)))
                continue
            if related and not second:
                res.related.append(i)
                continue
            todo.append(i)
            requests.append((family, attrs))
        if requests:
            _send(ct, todo, requests, res)
    return res


def _send(ct: Any, todo: list[int], requests: list[tuple[int, bytes]], res: Result) -> None:
    errors = ct.create_raw_many(requests)
    again: list[int] = []
    for k, err in errors.items():
        if err.errno == errno.EEXIST:
            again.append(k)
        else:
            res.failures.append((todo[k], "commit-create", err.errno or 0, None))
    res.ok += len(requests) - len(errors)
    if not again:
        return
    gone = ct.delete_raw_many([requests[k] for k in again])
    retry = []
    for j, k in enumerate(again):
        err = gone.get(j)
        if err is not None and err.errno != errno.ENOENT:
            res.failures.append((todo[k], "commit-destroy", err.errno or 0, None))
        else:
            retry.append(k)
    if retry:
        failed = ct.create_raw_many([requests[k] for k in retry])
        for j, err in failed.items():
            res.failures.append((todo[retry[j]], "commit-create", err.errno or 0, None))
        res.ok += len(retry) - len(failed)


def _worker_signals() -> None:
    """A worker dies of the signals that end it, and never runs the daemon's handlers."""
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:
        pass
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _reap(pid: int) -> None:
    """Collect a worker unless the daemon's SIGCHLD handler did already."""
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


class _Job:
    """One cache being committed: the keys still to do, the pass, the counters."""

    __slots__ = ("cache", "keys", "pos", "related", "second", "ok", "fail", "start", "what",
                 "workers")

    def __init__(self, cache: Cache, what: str, start: float) -> None:
        self.cache = cache
        self.keys = list(cache)  # the hash table walk of the reference, in one go
        self.pos = 0
        self.related: list[bytes] = []
        self.second = False
        self.ok = 0
        self.fail = 0
        self.start = start
        self.what = what
        #: read end of each worker's pipe -> (pid, what it wrote so far); None: no workers
        self.workers: dict[int, tuple[int, bytearray]] | None = None


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
                 timer: Callable[[], float] = time.monotonic,
                 open_socket: Callable[[], Any] | None = None,
                 forget_socket: Callable[[int], Any] | None = None,
                 children: Any = None,
                 pause_events: Callable[[bool], Any] | None = None) -> None:
        self.mode = mode
        #: ``pause_events(True)`` stops reading kernel events while workers commit,
        #: ``pause_events(False)`` resumes
        self.pause_events = pause_events
        #: a new commit client whose events count as the daemon's own (for a worker), and
        #: the way to stop counting them (port id) once the worker's events are read
        self.open_socket = open_socket
        self.forget_socket = forget_socket
        #: the daemon's child registry (``add(pid, kind)``), for ``-s process``
        self.children = children
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
        self.log("notice", line)  # the reference's order: the line, then the check
        mode.cancel_purge()
        if self.running:
            self.log("notice", "commit already in progress, skipping")
            return True
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
        if not self.jobs:
            return
        job = self.jobs[0]
        if job.start is None:
            job.start = self.timer()
        try:
            if isinstance(job.cache, ExpectCache):
                done = self._step_expect(job)
            else:
                done = self._step_ct(job)
        except Exception as e:  # noqa: BLE001 - e.g. the socket failed: end, not hang
            self.log("error", f"commit failed: {e}")
            self.close()
            return
        if done:
            self._job_done()
        elif job.workers is None:
            self._timer = self.loop.call_later(0, self._step)

    def _job_done(self) -> None:
        """Report the current job; start the next one, or end the commit."""
        self._report(self.jobs.pop(0))
        if self.jobs:
            self.jobs[0].start = None  # its clock starts with its first step
            self._timer = self.loop.call_later(0, self._step)
        else:
            self._finish()

    def _step_ct(self, job: _Job) -> bool:
        """The conntrack cache: pass 1 in worker processes (large caches) or in steps of
        :data:`STEP` entries, then pass 2 (related flows) in steps; True when done."""
        if job.workers is not None:
            return False  # the workers' pipes drive the job now
        if not job.second and job.pos == 0 and len(job.keys) >= self.settings.fork_min \
                and self._fork(job):
            return False
        source = job.related if job.second else job.keys
        end = min(job.pos + self.settings.step, len(source))
        res = commit_keys(job.cache, self.ct, source, job.pos, end, self.settings,
                          int(self.clock()), second=job.second)
        job.pos = end
        self._account(job, source, res)
        if job.pos < len(source):
            return False
        if not job.second and job.related:
            job.second = True
            job.pos = 0
            return False
        return True

    def _account(self, job: _Job, source: list[bytes], res: "Result") -> None:
        job.ok += res.ok
        job.fail += len(res.failures)
        for i, what, err, text in res.failures:
            self._failed(job.cache, source[i], what, err, text)
        job.related.extend(source[i] for i in res.related)

    # --- worker processes ----------------------------------------------------------------------
    def _fork(self, job: _Job) -> bool:
        """Split pass 1 between worker processes (one per CPU, at most :data:`WORKERS`),
        each with its own commit socket (registered as the commit origin before the
        fork, so that their events are the daemon's own); False if forking fails."""
        n = min(max(os.cpu_count() or 1, 1), WORKERS)
        keys = job.keys
        bounds = [len(keys) * k // n for k in range(n + 1)]
        job.workers = {}
        now = int(self.clock())
        if self.pause_events is not None:
            self.pause_events(True)
        for k in range(n):
            lo, hi = bounds[k], bounds[k + 1]
            ct = None
            fds: tuple[int, ...] = ()
            try:
                if self.open_socket is None:
                    raise OSError(errno.ENOTSUP, "no commit sockets")
                ct = self.open_socket()
                r, w = fds = os.pipe2(os.O_CLOEXEC)
                gc.freeze()  # the worker never touches the parent's objects' GC state
                try:
                    pid = os.fork()
                finally:
                    gc.unfreeze()
            except OSError:
                for fd in fds:
                    os.close(fd)
                if ct is not None:
                    ct.close()
                if not job.workers:
                    job.workers = None
                    return False
                # the rest in this process (blocks the loop: only when fork fails)
                res = commit_keys(job.cache, self.ct, keys, lo, len(keys), self.settings, now,
                                  second=False)
                self._account(job, keys, res)
                break
            if pid == 0:  # the worker: commit keys[lo:hi], report, exit
                code = 0
                try:
                    os.close(r)
                    gc.disable()  # short-lived: no collection walks the inherited heap
                    _worker_signals()
                    res = commit_keys(job.cache, ct, keys, lo, hi, self.settings, now,
                                      second=False)
                    _write_all(w, res.encode())
                except BaseException:  # noqa: BLE001 - reported as a dead worker
                    code = 1
                finally:
                    os._exit(code)
            os.close(w)
            ct.close()
            if self.forget_socket is not None:  # its events may still be queued: later
                self.loop.call_later(ORIGIN_GRACE,
                                     lambda p=ct.sock.portid: self.forget_socket(p))
            os.set_blocking(r, False)
            job.workers[r] = (pid, bytearray())
            if self.children is not None:
                self.children.add(pid, "commit")
            self.loop.add_reader(r, lambda fd=r: self._worker_readable(job, fd))
        return True

    def _worker_readable(self, job: _Job, fd: int) -> None:
        pid, buf = job.workers[fd]
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            buf += data
            return
        self.loop.remove_reader(fd)
        os.close(fd)
        del job.workers[fd]
        if self.children is None:  # else the daemon's SIGCHLD handler collects it
            _reap(pid)
        res = Result.decode(bytes(buf))
        if res is None:  # the worker died: its share is not known to be committed
            self.log("error", f"commit worker (pid={pid}) failed")
            res = Result()
        self._account(job, job.keys, res)
        if job.workers:
            return
        job.workers = None
        job.pos = len(job.keys)
        if self.pause_events is not None:
            self.pause_events(False)
        if job.related:
            job.second = True
            job.pos = 0
            self._timer = self.loop.call_later(0, self._step)
        else:
            self._job_done()

    def _step_expect(self, job: _Job) -> bool:
        """Expectations (few): one request each, EEXIST -> delete and create again."""
        from ctnetlink.errors import ConntrackError  # noqa: PLC0415

        from .wire import kernel as KR  # noqa: PLC0415

        cache = job.cache
        s = self.settings
        now = int(self.clock())
        end = min(job.pos + s.step, len(job.keys))
        for key in job.keys[job.pos:end]:
            value = cache.get(key)
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
            what = "commit-create"
            err = _errno_of(self.ct.create_expect, req, ConntrackError)
            if err == errno.EEXIST:
                what = "commit-destroy"
                err = _errno_of(self.ct.delete_expect, req, ConntrackError)
                if err in (None, errno.ENOENT):
                    what = "commit-create"
                    err = _errno_of(self.ct.create_expect, req, ConntrackError)
            if err is None:
                job.ok += 1
            else:
                self._failed(cache, key, what, err)
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
            from .output import expect_text, flow_text, without_timeout  # noqa: PLC0415

            if isinstance(cache, ExpectCache):
                line = expect_text(cache.message(key))
            else:  # 1.4.7's object is built from a sync message: it has no reply tuple
                line = flow_text(without_timeout(cache.message(key), (E.CTA_TUPLE_REPLY,)))
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
        """Shutdown (or a failure): stop a running commit, its workers, let the client go."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for job in self.jobs:
            for fd, (pid, _) in (job.workers or {}).items():
                self.loop.remove_reader(fd)
                os.close(fd)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _reap(pid)
            if job.workers and self.pause_events is not None:
                self.pause_events(False)
            job.workers = None
        self.jobs = []
        self._finish()


def _errno_of(call: Callable[[Any], Any], req: Any, error: type) -> int | None:
    """None when ``call(req)`` succeeds, else the errno of the ``error`` it raised."""
    try:
        call(req)
    except error as e:
        return e.errno
    return None
