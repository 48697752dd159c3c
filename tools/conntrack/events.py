"""``conntrack -E`` and ``-E expect``: print events as the reference does, fast.

A :class:`~ctnetlink.listen.Listener` hands over the events queued on the socket in one
batch, undecoded (:class:`~ctnetlink.events.RawEvent`). A flow event is formatted straight
from the raw values of the shape decoder by a formatter compiled per (layout, event type);
a :class:`~ctnetlink.model.Flow` is built only when a user-space filter needs one. The
``[USERSPACE] portid= progname=`` suffix comes from :class:`.progname.ProgName`, told
after each batch was received that the owners of the port ids must be checked again.
The batch's lines go out in one write and flush (the reference flushes after every line:
the bytes are the same). An overrun prints the reference's warning and the number of
lost events as soon as it is known.
"""
from __future__ import annotations

import signal

from ctnetlink.events import FLOWS
from ctnetlink.formats.text import EVENT_BUFFER, clip, timestamp_prefix_now, userspace_suffix
from ctnetlink.listen import Listener

from .errors import OtherProblem, Stop
from .formatting import fixed_now, fmt_options, format_module, output_clock
from .invocation import Command, Invocation, OutputFlag
from .messages import ENOBUFS_WARNING, strerror
from .progname import ProgName
from .userfilter import make_filter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nfnl.socket import NetlinkSocket

    from .commands import Context  # noqa: F401 - annotations only

BATCH = 4096
"""Events taken from the socket (at most) before they are printed."""


class FlowLines:
    """Formats flow events: ``lines(raws, progname) -> list of lines``."""

    def __init__(self, inv: Invocation) -> None:
        o = inv.output
        self.mod = format_module(inv)
        self.opts = {ev: fmt_options(inv, event=ev) for ev in (1, 2, 3)}
        # per event type: Shape -> formatter (keyed by the shape itself, which the dict
        # keeps alive: an id could be reused once the decoder dropped its shapes)
        self.fmts: dict[int, dict[object, object]] = {1: {}, 2: {}, 3: {}}
        self.filt = make_filter(inv)  # the family is selected by the listener
        ts = bool(o & OutputFlag.TIMESTAMP) and not o & (OutputFlag.XML | OutputFlag.JSON)
        self.stamp = _stamper(output_clock()) if ts else None
        self.js = bool(o & OutputFlag.JSON)

    def _compile(self, sh, etype: int):
        by_shape = self.fmts[etype]
        if len(by_shape) > 4096:
            by_shape.clear()
        f = by_shape[sh] = self.mod.compile_for_shape(sh, self.opts[etype])
        return f

    def lines(self, raws: list, progname: ProgName) -> list[str]:
        shapes = FLOWS.shapes
        values = FLOWS.values
        fmts = self.fmts
        filt = self.filt
        stamp = self.stamp
        suffixes: dict[int, str] = {}  # port id -> suffix, for this batch
        fb = int.from_bytes
        out = []
        for etype, buf, off, ln, fam, pid, _exp, _lost, _resync in raws:
            cands = shapes.get(ln)
            if cands is not None:
                sh = cands[0]
                if fb(buf[off + 20:off + ln], "little") & sh.mask == sh.expected:
                    v = sh.struct.unpack_from(buf, off + 20)
                else:
                    sh, v = values(buf, off, ln)
            else:
                sh, v = values(buf, off, ln)
            if filt is not None and not filt(sh.build(v, fam)):
                continue
            f = fmts[etype].get(sh)
            if f is None:
                f = self._compile(sh, etype)
            rec = f(v, fam)
            if rec is None:
                continue
            if len(rec) >= EVENT_BUFFER:
                rec = clip(rec, EVENT_BUFFER)
            if stamp is not None:
                rec = stamp() + rec
            if pid:
                sfx = suffixes.get(pid)
                if sfx is None:
                    sfx = suffixes[pid] = self._suffix(pid, progname.lookup(pid))
                rec = rec[:-1] + sfx if self.js else rec + sfx
            out.append(rec)
        return out

    def _suffix(self, pid: int, name: str | None) -> str:
        """What follows the line of an event a process caused (JSON: replaces the ``}``)."""
        if self.js:
            return f',"portid":{pid}' + (f',"progname":{_jstr(name)}' if name else "") + "}"
        return userspace_suffix(pid, name)


def _stamper(clock):
    """``-o timestamp``: the §8.2 prefix for now (one clock reading per event)."""
    if clock is not None:
        return lambda: timestamp_prefix_now(clock)
    from time import time

    last = [-1, ""]  # the second and its text

    def stamp() -> str:
        t = time()
        sec = int(t)
        if sec != last[0]:
            last[0], last[1] = sec, f"[{sec:08d}."
        return last[1] + "%06d]\t" % int((t - sec) * 1_000_000)

    return stamp


class ExpectLines:
    """Formats expectation events (rare: decoded to objects)."""

    def __init__(self, inv: Invocation) -> None:
        from ctnetlink.formats import expect as xfmt

        self.xfmt = xfmt
        self.xml = bool(inv.output & OutputFlag.XML)
        self.ts = bool(inv.output & OutputFlag.TIMESTAMP)

    def lines(self, raws: list, progname: ProgName) -> list[str]:
        xfmt = self.xfmt
        out = []
        for r in raws:
            exp = r.decode().expect
            if self.xml:
                out.append(xfmt.format_expect_xml(exp, int(r.type), timestamp=self.ts, now=fixed_now()))
            else:
                rec = xfmt.format_expect(exp, int(r.type))
                out.append(xfmt.timestamp_prefix_now(output_clock()) + rec if self.ts else rec)
        return out


def _jstr(s: str) -> str:
    import json
    return json.dumps(s)


def listen_and_print(inv: Invocation, ctx: Context, sock: NetlinkSocket) -> int:
    """``-E``/``-E expect`` on the opened event socket ``sock``: until SIGINT/SIGTERM;
    returns the number of events printed."""
    from .parse import runtime_checks

    expect = inv.command == Command.EXP_EVENT
    if not ctx.batch:
        runtime_checks(inv)
    out = ctx.out
    xml = bool(inv.output & OutputFlag.XML)
    fmt = ExpectLines(inv) if expect else FlowLines(inv)
    progname = ProgName()

    def overrun(lost: int) -> None:
        ctx.warn(ENOBUFS_WARNING + f"WARNING: {lost} events have been lost.\n")

    # expectation events are never filtered by family (-f is illegal with -E expect; the
    # default family 2 must not hide IPv6 expectations)
    listener = Listener(sock=sock, family=None if expect else inv.family or None,
                        on_overrun=overrun)
    prologue = ('<?xml version="1.0" encoding="utf-8"?>\n<expect>\n' if expect
                else '<?xml version="1.0" encoding="utf-8"?>\n<conntrack>\n')
    closing = "</expect>\n" if expect else "</conntrack>\n"
    n = 0
    started = False
    waiting = True
    stopped = False

    def on_signal(signum, frame) -> None:
        # while waiting for events: leave the receive call; while printing a batch: stop
        # after it (the reference stops between two lines)
        nonlocal stopped
        stopped = True
        if waiting:
            raise Stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopped:
            waiting = True
            try:
                raws = listener.read_raw(BATCH, block=True)
            except OSError as e:
                raise OtherProblem(f"failed to received netlink event: {strerror(e.errno or 0)}") from None
            finally:
                waiting = False
            progname.refresh()  # every event of the batch is older than what it looks up now
            lines = fmt.lines(raws, progname)
            if not lines:
                continue
            if xml and not started:
                out.write(prologue)
            started = True
            out.write("\n".join(lines) + "\n")
            out.flush()
            n += len(lines)
    except Stop:
        pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        listener.close()
        sock.close()
    if xml and started:
        out.write(closing)
        out.flush()
    return n
