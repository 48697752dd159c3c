"""``conntrack -E`` and ``-E expect``: print events as the reference does, fast.

A :class:`~ctnetlink.listen.Listener` hands over the datagrams queued on the socket in one
batch, undecoded. A flow event (a datagram holding one flow message, else each message the
listener's reader finds) is formatted straight from the raw values of the shape decoder by
a formatter compiled per (layout, event type); a :class:`~ctnetlink.model.Flow` is built
only when a user-space filter needs one. The
``[USERSPACE] portid= progname=`` suffix comes from :class:`.progname.ProgName`, told
after each batch was received that the owners of the port ids must be checked again.
The batch's lines go out in one write and flush (the reference flushes after every line:
the bytes are the same). An overrun prints the reference's warning and the number of
lost events as soon as it is known.
"""
from __future__ import annotations

import signal

from ctnetlink import constants as K
from ctnetlink.events import FLOWS, EventReader
from ctnetlink.formats.text import EVENT_BUFFER, clip, timestamp_prefix_now, userspace_suffix
from ctnetlink.listen import Listener

from nfnl.errors import NetlinkDecodeError
from nfnl.message import NLMSGHDR

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

_HDR = NLMSGHDR
_FLOW_EVENTS = {K.IPCTNL_MSG_CT_NEW | 0x400 << 6: 1, K.IPCTNL_MSG_CT_NEW: 2,
                K.IPCTNL_MSG_CT_DELETE: 3, K.IPCTNL_MSG_CT_DELETE | 0x400 << 6: 3}
"""``nlmsg_type | (flags & NLM_F_CREATE) << 6`` -> event type (1 NEW, 2 UPDATE, 3 DESTROY)
of the flow event messages (as ``ctnetlink.events``)."""


class FlowLines:
    """Formats flow events: ``text(datagrams, progname, reader) -> (text, lines)``."""

    def __init__(self, inv: Invocation) -> None:
        o = inv.output
        self.mod = format_module(inv)
        self.opts = {ev: fmt_options(inv, event=ev) for ev in (1, 2, 3)}
        # Shape -> [None, formatter of NEW, UPDATE, DESTROY] (keyed by the shape itself,
        # which the dict keeps alive: an id could be reused once the decoder dropped its
        # shapes)
        self.fmts: dict[object, list] = {}
        self.family = inv.family or None
        self.filt = make_filter(inv)
        ts = bool(o & OutputFlag.TIMESTAMP) and not o & (OutputFlag.XML | OutputFlag.JSON)
        self.stamp = _stamper(output_clock()) if ts else None
        self.js = bool(o & OutputFlag.JSON)

    def _compile(self, sh) -> list:
        """[None, NEW, UPDATE, DESTROY formatter] of a shape."""
        if len(self.fmts) > 4096:
            self.fmts.clear()
        compiled = self.mod.compile_for_shape
        f = self.fmts[sh] = [None] + [compiled(sh, self.opts[ev]) for ev in (1, 2, 3)]
        return f

    def text(self, datagrams: list, progname: ProgName, reader: EventReader) -> tuple[str, int]:
        """(the lines of the flow events in ``datagrams``, each ending with a newline;
        how many). The usual datagram, one flow message, is formatted here straight from
        its bytes; the others go through ``reader`` (several messages in a datagram)."""
        shapes = FLOWS.shapes
        values = FLOWS.values
        fmts = self.fmts
        filt = self.filt
        stamp = self.stamp
        js = self.js
        want = self.family
        suffixes = {0: "\n"}  # port id -> suffix (with the newline), for this batch
        unpack = _HDR.unpack_from
        kinds = _FLOW_EVENTS
        fb = int.from_bytes
        out: list[str] = []
        append = out.append
        n = 0
        for data in datagrams:
            size = len(data)
            if size >= 20:
                ln, mtype, flags, _seq, pid = unpack(data)
                etype = kinds.get(mtype | (flags & 0x400) << 6)
                if etype is None or not 20 <= ln <= size <= (ln + 3) & ~3:
                    etype = None
            else:
                etype = None
            if etype is None:  # not one flow message: each message on its own
                more, k = self.text([r.message for r in reader.feed_raw(data) if not r.expect],
                                    progname, reader)
                if k:
                    append(more)
                    n += k
                continue
            fam = data[16]
            if want is not None and fam != want:
                continue
            cands = shapes.get(ln)
            if cands is not None and fb(data[20:ln], "little") & cands[0].mask == cands[0].expected:
                sh = cands[0]
                v = sh.struct.unpack_from(data, 20)
            else:
                try:
                    sh, v = values(data, 0, ln)
                except NetlinkDecodeError:
                    reader.malformed += 1
                    continue
            if filt is not None and not filt(sh.build(v, fam)):
                continue
            f = fmts.get(sh)
            if f is None:
                f = self._compile(sh)
            rec = f[etype](v, fam)
            if rec is None:
                continue
            if len(rec) >= EVENT_BUFFER:
                rec = clip(rec, EVENT_BUFFER)
            if stamp is not None:
                append(stamp())
            sfx = suffixes.get(pid)
            if sfx is None:
                sfx = suffixes[pid] = self._suffix(pid, progname.lookup(pid))
            if js and pid:
                rec = rec[:-1]
            append(rec)
            append(sfx)
            n += 1
        return "".join(out), n

    def _suffix(self, pid: int, name: str | None) -> str:
        """What follows the line of an event a process caused, newline included (JSON:
        replaces the ``}``)."""
        if self.js:
            return f',"portid":{pid}' + (f',"progname":{_jstr(name)}' if name else "") + "}\n"
        return userspace_suffix(pid, name) + "\n"


def _stamper(clock):
    """``-o timestamp``: the §8.2 prefix for now (one clock reading per event)."""
    if clock is not None:
        return lambda: timestamp_prefix_now(clock)
    from time import time_ns

    digits = [f"{i:03d}" for i in range(1000)]
    last = [-1, ""]  # the current second in microseconds, and its text

    def stamp() -> str:
        us = time_ns() // 1000  # gettimeofday's microseconds
        u = us - last[0]
        if not 0 <= u < 1_000_000:
            sec = us // 1_000_000
            last[0], last[1] = sec * 1_000_000, f"[{sec:08d}."
            u = us - last[0]
        return last[1] + digits[u // 1000] + digits[u % 1000] + "]\t"

    return stamp


class ExpectLines:
    """Formats expectation events (rare: decoded to objects)."""

    def __init__(self, inv: Invocation) -> None:
        from ctnetlink.formats import expect as xfmt

        self.xfmt = xfmt
        self.xml = bool(inv.output & OutputFlag.XML)
        self.ts = bool(inv.output & OutputFlag.TIMESTAMP)

    def text(self, datagrams: list, progname: ProgName, reader: EventReader) -> tuple[str, int]:
        lines = self.lines([r for d in datagrams for r in reader.feed_raw(d) if r.expect])
        return "".join(line + "\n" for line in lines), len(lines)

    def lines(self, raws: list) -> list[str]:
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
                datagrams = listener.read_datagrams(BATCH, block=True)
            except OSError as e:
                raise OtherProblem(f"failed to received netlink event: {strerror(e.errno or 0)}") from None
            finally:
                waiting = False
            progname.refresh()  # every event of the batch is older than what it looks up now
            text, k = fmt.text(datagrams, progname, listener.reader)
            if not k:
                continue
            if xml and not started:
                out.write(prologue)
            started = True
            out.write(text)
            out.flush()
            n += k
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
