"""Running a parsed ``conntrack`` command against the kernel.

Each command is a function ``(inv, ctx) -> count``; fatal problems raise
:class:`~.errors.OtherProblem` with the reference's text. Output follows the
reference byte for byte (formats in :mod:`ctnetlink.formats`); where the reference is
slow or broken we do better without changing what is printed: kernel-side filtering
(``CTA_FILTER``), batched deletes and updates, a large event buffer, the 1.4.8 fixes
of ``-U``. See ``docs/compatibility.md``.
"""
from __future__ import annotations

import errno as E
import struct
import sys

from ctnetlink import constants as K
from ctnetlink.client import EVENT_RCVBUF, Conntrack
from ctnetlink.decode import Decoder
from ctnetlink.encode import encode_expect, encode_flow, encode_tuple
from ctnetlink.filters import Filter
from ctnetlink.model import Flow, Tuple
from nfnl.codec import nla_nest
from nfnl.constants import (
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
)
from nfnl.errors import NetlinkError
from nfnl.message import build_nfnl
from nfnl.socket import NetlinkSocket

from .errors import PREFIX, OtherProblem, Stop  # noqa: F401 - Stop: for tools/fixture/replaying
from .formatting import fixed_now as _now
from .formatting import fmt_options, output_clock
from .formatting import format_module as _format_module
from .invocation import Command, Invocation, OutputFlag, Table
from .messages import operation_failed, strerror
from .output import Stdout
from .requests import NAT_PORT_PROTOS, expect_key, expect_object, flow_object
from .userfilter import make_filter, make_update_selector

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TextIO

PROC_COUNT = "/proc/sys/net/netfilter/nf_conntrack_count"
PROC_STATS = "/proc/net/stat/nf_conntrack"


class Context:
    """What every command needs: the main socket, stdout, stderr, batch mode."""

    def __init__(self, main: NetlinkSocket, out: Stdout, err: "TextIO", batch: bool = False) -> None:
        self.main = main
        self.out = out
        self.err = err
        self.batch = batch
        self._modifier: NetlinkSocket | None = None
        self._expect: NetlinkSocket | None = None
        self.decoder = Decoder(False)
        self.exp_decoder = Decoder(True)

    @property
    def modifier(self) -> NetlinkSocket:
        """The second socket ``-D``/``-U`` send their per-entry requests on."""
        if self._modifier is None:
            try:
                self._modifier = NetlinkSocket(rcvbuf=4 << 20)
            except OSError as e:
                self.warn(f"{socket_step(e)}: {strerror(e.errno or 0)}\n")
                raise OtherProblem("Can't open handler") from None
        return self._modifier

    @property
    def expect_sock(self) -> NetlinkSocket:
        """The socket of the expectation commands (the reference opens one with the old
        query API, ``nfct_open``, which fails without a message of its own)."""
        if self._expect is None:
            try:
                self._expect = NetlinkSocket()
            except OSError:
                raise OtherProblem("Can't open handler") from None
        return self._expect

    def warn(self, text: str) -> None:
        self.err.write(text)
        self.err.flush()

    def close(self) -> None:
        """Close every socket of the command (the main one included)."""
        for sock in (self.main, self._modifier, self._expect):
            if sock is not None:
                sock.close()


def socket_step(e: OSError) -> str:
    """Which libmnl call a failure to open and bind a netlink socket belongs to, for the
    reference's perror() line: binding fails with EPERM (groups without CAP_NET_ADMIN)
    or EADDRINUSE/EINVAL, everything else is socket() (EMFILE, ENFILE, ENOBUFS...)."""
    return ("mnl_socket_bind" if e.errno in (E.EPERM, E.EADDRINUSE, E.EINVAL)
            else "mnl_socket_open")


def failed(code: int, command: Command | None) -> OtherProblem:
    return OtherProblem(f"Operation failed: {operation_failed(code, command)}")


class Printer:
    """Formats entries of one command: from raw shape values (fast) or from Flows."""

    def __init__(self, inv: Invocation, ctx: Context, *, bufsize: int, prologue: bool,
                 closing: bool, **opts) -> None:
        self.inv = inv
        self.ctx = ctx
        self.mod = _format_module(inv)
        self.opts = fmt_options(inv, **opts)
        self.xml = bool(inv.output & OutputFlag.XML) and not inv.output & OutputFlag.JSON
        self.save = bool(inv.output & OutputFlag.SAVE)
        self.prologue = prologue and self.xml
        self.closing = closing and self.xml
        self.started = False
        self.bufsize = bufsize
        self._by_shape: dict[int, Callable] = {}
        self._flow_fmt = None
        from ctnetlink.formats.text import clip

        self._clip = clip

    def _finish(self, line: str | None, family: int) -> str | None:
        if line is None:
            if self.save:
                from ctnetlink.formats.save import unsupported_warning
                self.ctx.warn(unsupported_warning(family))
            return None
        if len(line) >= self.bufsize:
            line = self._clip(line, self.bufsize)
        return line

    def shape_line(self, shape, values: tuple, family: int) -> str | None:
        f = self._by_shape.get(id(shape))
        if f is None:
            f = self._by_shape[id(shape)] = self.mod.compile_for_shape(shape, self.opts)
        return self._finish(f(values, family), family)

    def flow_line(self, flow: Flow) -> str | None:
        if self._flow_fmt is None:
            self._flow_fmt = self.mod.flow_formatter(self.opts)
        return self._finish(self._flow_fmt(flow), flow.family or 0)

    def emit(self, lines: list[str]) -> None:
        if not lines:
            return
        if self.prologue and not self.started:
            from ctnetlink.formats.xml import PROLOGUE
            self.ctx.out.write(PROLOGUE)
        self.started = True
        self.ctx.out.write("\n".join(lines) + "\n")

    def end(self) -> None:
        if self.closing and self.started:
            from ctnetlink.formats.xml import CLOSING
            self.ctx.out.write(CLOSING)
            self.ctx.out.flush()  # the reference fflush()es after the closing tag


# --- kernel-side filters -------------------------------------------------------------

def _exact(t: Tuple | None, inv: Invocation, orig: bool) -> Tuple | None:
    """The tuple fields user-space step 5 requires equal, for CTA_FILTER (or None)."""
    if t is None:
        return None
    out: dict = {}
    if t.src is not None and not (orig and "mask-src" in inv.options):
        out["src"] = t.src
    if t.dst is not None and not (orig and "mask-dst" in inv.options):
        out["dst"] = t.dst
    if t.proto is not None:
        out["proto"] = t.proto
        if t.proto in K.PORT_PROTOS:
            out.update(sport=t.sport, dport=t.dport)
        elif t.proto in K.ICMP_PROTOS:
            out.update(icmp_type=t.icmp_type, icmp_code=t.icmp_code, icmp_id=t.icmp_id)
    return Tuple(**out) if out else None


def kernel_filter(inv: Invocation, *, mark: bool, status: bool, tuples: bool) -> Filter:
    """What the dump request asks the kernel to select.

    ``mark``/``status`` are the reference's own filters; ``tuples`` adds ours: CTA_FILTER
    with the tuple fields and zone that the user-space filter compares for equality (a
    superset of what it keeps, so results do not change).
    """
    f = Filter(inv.family)
    if mark and inv.mark_kernel is not None:
        f.mark, f.mark_mask = inv.mark_kernel
    if status and inv.status_kernel is not None:
        f.status, f.status_mask = inv.status_kernel
    if tuples and inv.options & {"src", "dst", "reply-src", "reply-dst", "protonum", "zone",
                                 "status", "mark", "secmark", "id", "label", "orig-zone",
                                 "reply-zone"}:
        t = inv.template
        f.orig = _exact(t.orig, inv, True)
        f.reply = _exact(t.reply, inv, False)
        if t.zone:
            f.zone = t.zone
    return f


# options whose user-space check the kernel filter of kernel_filter() does exactly
_EXACT_OPTIONS = frozenset({"src", "dst", "reply-src", "reply-dst", "protonum", "family",
                            "output", "secmark", "buffer-size", "event-mask", "zero"})
_EXACT_PROTO_OPTIONS = frozenset({"sport", "dport", "reply-port-src", "reply-port-dst",
                                  "icmp-type", "icmp-code", "icmp-id", "icmpv6-type",
                                  "icmpv6-code", "icmpv6-id", "srckey", "dstkey",
                                  "reply-key-src", "reply-key-dst", "orig-vtag", "reply-vtag",
                                  "role"})
_PORT_OPTIONS = frozenset({"sport", "dport", "reply-port-src", "reply-port-dst"})


def kernel_exact(inv: Invocation, *, status_sent: bool) -> bool:
    """Whether the kernel-side selection of :func:`kernel_filter` keeps exactly what the
    user-space filter (§6.2) would keep, so that entries need not be decoded to be
    checked. (Valid while the kernel honours CTA_FILTER: check
    ``Conntrack.kernel_filters_tuples is not False``.)"""
    opts = set(inv.options)
    if "mark" in opts:
        if inv.mark is None or inv.mark != inv.mark_kernel:
            return False
        opts.discard("mark")
    if "status" in opts:
        if not status_sent or inv.status_kernel is None:
            return False
        opts.discard("status")
    if not opts <= _EXACT_OPTIONS or not inv.proto_options <= _EXACT_PROTO_OPTIONS:
        return False
    if inv.proto_options & _PORT_OPTIONS and inv.protonum not in (6, 17):
        return False  # the kernel compares ports of TCP and UDP only (not UDPlite/SCTP/DCCP)
    t = inv.template
    for tup in (t.orig, t.reply):
        if tup is not None and any(a is not None and a.version == 6 for a in (tup.src, tup.dst)):
            return False  # IPv6 addresses are not sent in CTA_FILTER (ctnetlink.filters)
    return True


def _dump_filter_attrs(f: Filter, use_cta_filter: bool) -> bytes:
    return f.attributes(cta_filter=use_cta_filter)


# --- -L ----------------------------------------------------------------------------------

def cmd_list(inv: Invocation, ctx: Context) -> int:
    table = {Table.CONNTRACK: "conntrack", Table.DYING: "dying",
             Table.UNCONFIRMED: "unconfirmed"}[inv.table]
    conntrack_table = table == "conntrack"
    zero = conntrack_table and "zero" in inv.options
    filt = make_filter(inv)
    if not conntrack_table and inv.options & {"mask-src", "mask-dst"}:
        filt = lambda f: False  # noqa: E731 - the reference skips the mask preparation
    printer = Printer(inv, ctx, bufsize=4096, prologue=True, closing=conntrack_table)
    ct = Conntrack(ctx.main)
    kf = (kernel_filter(inv, mark=True, status=True, tuples=not zero)
          if conntrack_table else None)
    if kf is not None and not kf.selects:
        kf = None
    exact = conntrack_table and kernel_exact(inv, status_sent=True)
    n = 0
    try:
        for batch in ct.dump_batches(inv.family, filter=kf, table=table, zero=zero):
            if exact and ct.kernel_filters_tuples is not False:
                lines = _list_lines(batch, ctx.decoder, printer, None, None)
            else:
                lines = _list_lines(batch, ctx.decoder, printer, kf, filt)
            if lines:
                n += len(lines)
                printer.emit(lines)
    except NetlinkError as e:
        raise failed(e.errno, Command.LIST) from None
    printer.end()
    return n


def _list_lines(batch, decoder: Decoder, printer: Printer, kf: Filter | None,
                filt) -> list[str]:
    """The printed lines of one datagram of a dump (the hot loop of ``-L``)."""
    shapes = decoder.shapes
    values = decoder.values
    fmts = printer._by_shape
    finish = printer._finish
    bufsize = printer.bufsize
    fb = int.from_bytes
    lines = []
    append = lines.append
    for buf, off, ln in batch:
        cands = shapes.get(ln)
        if cands is not None:
            sh = cands[0]
            if fb(buf[off + 20:off + ln], "little") & sh.mask == sh.expected:
                v = sh.struct.unpack_from(buf, off + 20)
            else:
                sh, v = values(buf, off, ln)
        else:
            sh, v = values(buf, off, ln)
        fam = buf[off + 16]
        if filt is not None or kf is not None:
            flow = sh.build(v, fam)
            if kf is not None and not kf.matches(flow):
                continue
            if filt is not None and not filt(flow):
                continue
        f = fmts.get(id(sh))
        if f is None:
            printer.shape_line(sh, v, fam)
            f = fmts[id(sh)]
        line = f(v, fam)
        if line is None or len(line) >= bufsize:
            line = finish(line, fam)
            if line is None:
                continue
        append(line)
    return lines


# --- -G ----------------------------------------------------------------------------------

def cmd_get(inv: Invocation, ctx: Context) -> int:
    obj = flow_object(inv, create=False)
    if obj.orig is None:
        raise failed(E.EINVAL, Command.GET)
    msg = build_nfnl(K.IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_ACK, inv.family,
                     encode_flow(obj, nat_port_protos=NAT_PORT_PROTOS), ctx.main.next_seq())
    filt = make_filter(inv)
    printer = Printer(inv, ctx, bufsize=4096, prologue=True, closing=False)
    flows: list[Flow] = []
    try:
        ctx.main.request(msg, on_data=lambda b, o, n: flows.append(ctx.decoder.decode(b, o, n)))
    except NetlinkError as e:
        raise failed(e.errno, Command.GET) from None
    n = 0
    for flow in flows:
        if filt is not None and not filt(flow):
            continue
        line = printer.flow_line(flow)
        if line is not None:
            printer.emit([line])
            n += 1
    return n


# --- -I / -A -----------------------------------------------------------------------------

def cmd_create(inv: Invocation, ctx: Context) -> int:
    obj = flow_object(inv, create=True)
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    msg = build_nfnl(K.IPCTNL_MSG_CT_NEW, flags, inv.family,
                     encode_flow(obj, nat_port_protos=NAT_PORT_PROTOS), ctx.main.next_seq())
    try:
        ctx.main.request(msg)
    except NetlinkError as e:
        if inv.command == Command.ADD and e.errno == E.EEXIST:
            return 0  # 1.4.7: -A leaves an existing entry alone
        raise failed(e.errno, inv.command) from None
    return 1


# --- -D ----------------------------------------------------------------------------------

def _delete_body(flow: Flow) -> Flow:
    """The entry as the reference re-sends it for deletion (§12.5)."""
    return flow.copy(status=flow.status_bits | 0x8 if flow.status_bits is not None else None,
                     counters_orig=None, counters_reply=None, use=None, id=None,
                     timestamp=None, secctx=None, event_timestamp=None, unknown=None)


def cmd_delete(inv: Invocation, ctx: Context) -> int:
    """``-D``: dump (kernel-filtered), select, delete in batches, print what was deleted.

    The deletes of one dump datagram run in a helper thread while the next datagram is
    received and prepared, so the kernel works on both at once; a batch is sent only
    after the previous one has been answered, so after a fatal error nothing more is
    deleted (as in the reference, which stops at its first error). A small first batch
    (a dump that fits one datagram, typically) is deleted without the thread."""
    from ctnetlink.encode import resend_plan

    filt = make_filter(inv)
    printer = Printer(inv, ctx, bufsize=1024, prologue=False, closing=False,
                      ktimestamp=False, labels=False, save_prefix="-D")
    ct = Conntrack(ctx.main)
    kf = kernel_filter(inv, mark=True, status=False, tuples=True)
    check = kf.matches if kf.selects else None
    exact = kernel_exact(inv, status_sent=False)
    mod = ctx.modifier
    values = ctx.decoder.values
    n = 0
    header = _DELETE_HEADER.pack
    pool = _Deleter(mod)

    def finish(job: list, results: list | BaseException) -> None:
        """Print the entries of an answered batch; raise at the first fatal error."""
        nonlocal n
        if isinstance(results, BaseException):
            raise results
        lines = []
        fatal = None
        fmts = printer._by_shape
        for (_, shape, v, fam), err in zip(job, results):
            if err is not None:
                if err.errno == E.ENOENT:
                    continue  # vanished meanwhile: skipped (1.4.8+git)
                fatal = err
                break
            f = fmts.get(id(shape))
            line = f(v, fam) if f is not None else None
            if line is None or len(line) >= 1024:
                line = printer.shape_line(shape, v, fam)
            if line is not None:
                lines.append(line)
            n += 1
        printer.emit(lines)
        if fatal is not None:
            raise failed(fatal.errno, Command.DELETE)

    inflight: list | None = None
    try:
        for batch in ct.dump_batches(inv.family, filter=kf if kf.selects else None,
                                     pipeline=False):
            trust = exact and ct.kernel_filters_tuples is not False
            job = []
            for buf, off, ln in batch:
                shape, v = values(buf, off, ln)
                fam = buf[off + 16]
                flow = None
                if not trust and (check is not None or filt is not None):
                    flow = shape.build(v, fam)
                    if check is not None and not check(flow):
                        continue
                    if filt is not None and not filt(flow):
                        continue
                # the entry as the reference re-sends it (§12.5): copied byte ranges of
                # the dumped message when the layout allows, else decoded and encoded
                plan = resend_plan(shape)
                status = shape.leaves.get(("CTA_STATUS",))
                if plan is not None and status is not None and v[status[0]] & 0x8:
                    body = plan(buf, off)
                else:
                    if flow is None:
                        flow = shape.build(v, fam)
                    body = encode_flow(_delete_body(flow))
                job.append((header(20 + len(body), K.IPCTNL_MSG_CT_DELETE,
                                   NLM_F_REQUEST | NLM_F_ACK, 0, 0, fam) + body, shape, v, fam))
            if inflight is not None:
                answered, inflight = inflight, None
                finish(answered, pool.result())
            if job:
                if pool.started or len(job) >= 32:
                    pool.submit(job)
                    inflight = job
                else:
                    finish(job, pool.run(job))
        if inflight is not None:
            answered, inflight = inflight, None
            finish(answered, pool.result())
    except NetlinkError as e:
        raise failed(e.errno, Command.DELETE) from None
    finally:
        pool.close(inflight is not None)
    return n


class _Deleter:
    """Runs delete batches (``batch(..., ack_last=True)``) in one helper thread, started
    on first use, at most one batch at a time."""

    def __init__(self, sock: NetlinkSocket) -> None:
        self.sock = sock
        self.started = False

    def run(self, job: list) -> list | BaseException:
        try:
            return self.sock.batch([m for m, _, _, _ in job], ack_last=True)
        except BaseException as e:  # handed to the caller
            return e

    def submit(self, job: list) -> None:
        if not self.started:
            import queue
            import threading

            self.jobs: queue.SimpleQueue = queue.SimpleQueue()
            self.answers: queue.SimpleQueue = queue.SimpleQueue()
            self.interval = sys.getswitchinterval()
            sys.setswitchinterval(0.0005)  # hand the GIL over quickly: both threads mostly wait
            self.thread = threading.Thread(target=self._work, name="conntrack-delete", daemon=True)
            self.thread.start()
            self.started = True
        self.jobs.put(job)

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            self.answers.put(self.run(job))

    def result(self) -> list | BaseException:
        return self.answers.get()

    def close(self, pending: bool) -> None:
        if not self.started:
            return
        self.jobs.put(None)
        if pending:
            self.answers.get()  # let the batch in flight finish before the socket goes away
        self.thread.join()
        sys.setswitchinterval(self.interval)


_DELETE_HEADER = struct.Struct("=IHHIIBxxx")
"""nlmsghdr + nfgenmsg (version 0, res_id 0) of a delete request."""


# --- -U ----------------------------------------------------------------------------------

def _label_update(inv: Invocation, entry: Flow, obj: Flow) -> bool:
    """Apply --label-add/--label-del (§12.6); False when there is nothing to change."""
    if inv.labels_add is not None:
        if entry.labels is not None:
            obj.labels = inv.labels_add
            obj.labels_size = entry.labels_size
            obj.labels_mask = inv.labels_add
        else:
            obj.labels = inv.labels_add
            obj.labels_size = None
        return True
    if inv.labels_del is not None or inv.labels_del_all:
        if entry.labels is None:
            return False
        if inv.labels_del_all:
            obj.labels, obj.labels_size = 0, 4
        else:
            obj.labels = entry.labels & ~inv.labels_del
            obj.labels_size = entry.labels_size
        return True
    return True


def _unchanged(obj: Flow, entry: Flow) -> bool:
    """The update would not change the entry (§3.6: it is then skipped)."""
    for name in ("timeout", "mark", "status_bits", "labels"):
        v = getattr(obj, name)
        if v is not None and getattr(entry, name) != v:
            return False
    for which in ("tcp", "sctp", "dccp"):
        info = getattr(obj, which)
        if info is not None and info.state is not None:
            have = getattr(entry, which)
            if have is None or have.state != info.state:
                return False
    if obj.nat_src is not None or obj.nat_dst is not None:
        return False
    return True


def update_object(inv: Invocation, entry: Flow) -> Flow | None:
    t = inv.template
    orig = entry.orig.replace(zone=None) if entry.orig is not None else None
    obj = Flow(family=entry.family, orig=orig, timeout=t.timeout, tcp=t.tcp, sctp=t.sctp,
               dccp=t.dccp, nat_src=t.nat_src, nat_dst=t.nat_dst)
    if t.status_bits is not None and "status" in inv.options:
        obj.status = (entry.status_bits or 0) | t.status_bits | 0x8
    if inv.mark is not None and "mark" in inv.options:
        value, mask = inv.mark
        obj.mark = ((entry.mark or 0) & ~mask & 0xFFFFFFFF) ^ value
    if not _label_update(inv, entry, obj):
        return None
    if _unchanged(obj, entry):
        return None
    return obj


def cmd_update(inv: Invocation, ctx: Context) -> int:
    select = make_update_selector(inv)
    printer = Printer(inv, ctx, bufsize=1024, prologue=False, closing=False, ktimestamp=False,
                      save_prefix="-A")
    ct = Conntrack(ctx.main)
    kf = Filter(inv.family)
    mod = ctx.modifier
    n = 0
    pending: list[Flow] = []
    labels_changed = inv.labels_add is not None or inv.labels_del is not None or inv.labels_del_all

    def flush() -> None:
        nonlocal n
        if not pending:
            return
        bodies = [encode_flow(o, nat_port_protos=NAT_PORT_PROTOS) for o in pending]
        news = [build_nfnl(K.IPCTNL_MSG_CT_NEW, NLM_F_REQUEST | NLM_F_ACK, o.family or 0, b)
                for o, b in zip(pending, bodies)]
        results = mod.batch(news)
        ok = []
        for o, b, err in zip(pending, bodies, results):
            if err is None:
                ok.append((o, b))
                continue
            if err.errno == E.ENOENT:
                continue
            if err.errno == E.ENOSPC and labels_changed:
                continue
            pending.clear()
            raise failed(err.errno, Command.UPDATE)
        pending.clear()
        replies: list[Flow] = []
        gets = [build_nfnl(K.IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_ACK, o.family or 0, b)
                for o, b in ok]
        results = mod.batch(gets, on_data=lambda bb, oo, ll: replies.append(
            ctx.decoder.decode(bb, oo, ll)))
        lines = []
        for r in replies:
            line = printer.flow_line(r)
            if line is not None:
                lines.append(line)
        n += sum(1 for err in results if err is None)
        printer.emit(lines)

    try:
        last_buf = None
        for buf, off, ln in ct.dump_raw(inv.family, filter=kf):
            if buf is not last_buf:
                flush()
                last_buf = buf
            entry = ctx.decoder.decode(buf, off, ln)
            if not select(entry):
                continue
            obj = update_object(inv, entry)
            if obj is not None:
                pending.append(obj)
        flush()
    except NetlinkError as e:
        raise failed(e.errno, Command.UPDATE) from None
    return n


# --- -F ----------------------------------------------------------------------------------

def cmd_flush(inv: Invocation, ctx: Context) -> int:
    msg = build_nfnl(K.IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, inv.family, b"",
                     ctx.main.next_seq())
    err = _try(ctx.main, msg)
    ctx.warn(PREFIX + "connection tracking table has been emptied.\n")
    if err is not None:
        raise failed(err, Command.FLUSH)
    return 0


def _try(sock: NetlinkSocket, msg: bytes, on_data=None) -> int | None:
    try:
        sock.request(msg, on_data=on_data)
    except NetlinkError as e:
        return e.errno
    return None


# --- -C / -S -------------------------------------------------------------------------------

def cmd_count(inv: Invocation, ctx: Context) -> int:
    from ctnetlink.formats.stats import count_line, parse_global_entries

    msg = build_nfnl(K.IPCTNL_MSG_CT_GET_STATS, NLM_F_REQUEST, 0, b"", ctx.main.next_seq())
    got: list[int] = []

    def on_data(b: bytes, o: int, n: int) -> None:
        v = parse_global_entries(b, o)
        if v is not None:
            got.append(v)

    err = _try(ctx.main, msg, on_data)
    if err is None and got:
        ctx.out.write(count_line(got[0]))
        return 0
    try:
        f = open(PROC_COUNT)
    except OSError:
        raise OtherProblem(f"Can't open {PROC_COUNT}") from None
    with f:
        try:
            text = f.read()
            value = int(text.split()[0])
        except (OSError, ValueError, IndexError):
            raise OtherProblem(f"Can't read {PROC_COUNT}") from None
    ctx.out.write(count_line(value))
    raise failed(err if err is not None else E.EINVAL, Command.COUNT)


def _stats(ctx: Context, mtype: int, expect: bool, command: Command) -> int:
    from ctnetlink.formats.stats import StatsAttrError, format_cpu_stats, proc_stats_lines

    msg = build_nfnl(mtype, NLM_F_REQUEST | NLM_F_DUMP, 0, b"", ctx.main.next_seq())
    lines: list[str] = []
    try:
        for buf, off, ln in ctx.main.dump(msg):
            lines.append(format_cpu_stats(buf, off, expect))
    except StatsAttrError as e:
        ctx.out.write("".join(lines))
        raise OtherProblem(str(e)) from None
    except NetlinkError as e:
        try:
            with open(PROC_STATS) as f:
                text = f.read()
        except OSError:
            raise OtherProblem("Can't open /proc interface") from None
        ctx.out.write("".join(proc_stats_lines(text)))
        raise failed(e.errno, command) from None
    ctx.out.write("".join(lines))
    return 0


def cmd_stats(inv: Invocation, ctx: Context) -> int:
    return _stats(ctx, K.IPCTNL_MSG_CT_GET_STATS_CPU, False, Command.STATS)


def cmd_exp_stats(inv: Invocation, ctx: Context) -> int:
    return _stats(ctx, K.IPCTNL_MSG_EXP_GET_STATS_CPU, True, Command.EXP_STATS)


# --- -E --------------------------------------------------------------------------------------

def open_event_socket(inv: Invocation, ctx: Context) -> NetlinkSocket:
    try:
        sock = NetlinkSocket(groups=inv.event_groups)
    except OSError as e:
        if inv.command == Command.EXP_EVENT:  # nfct_open() of the old API: no perror
            raise OtherProblem("Can't open handler") from None
        ctx.warn(f"{socket_step(e)}: {strerror(e.errno or 0)}\n")
        raise OtherProblem("Can't open netlink socket") from None
    size = inv.buffer_size
    try:
        if size is not None:
            # the reference applies -b to its command socket (a bug); we apply it to the
            # event socket, where it matters, and report what the kernel granted
            actual = sock.set_rcvbuf(min(size, 0x7FFFFFFF))
            ctx.warn(f"NOTICE: Netlink socket buffer size has been set to {actual} bytes.\n")
        else:
            sock.set_rcvbuf(EVENT_RCVBUF)
    except OSError:
        pass
    return sock


def cmd_event(inv: Invocation, ctx: Context) -> int:
    sock = open_event_socket(inv, ctx)  # first: its failure is the reference's message
    from .events import listen_and_print

    return listen_and_print(inv, ctx, sock)


# --- expectations ------------------------------------------------------------------------------

def _exp_printer(inv: Invocation):
    from ctnetlink.formats import expect as xfmt

    xml = bool(inv.output & OutputFlag.XML)
    ts = bool(inv.output & OutputFlag.TIMESTAMP)

    def line(exp) -> str:
        if xml:
            return xfmt.format_expect_xml(exp, None, timestamp=ts, now=_now())
        text = xfmt.format_expect(exp)
        return (xfmt.timestamp_prefix_now(output_clock()) + text) if ts else text

    return line, xml


def cmd_exp_list(inv: Invocation, ctx: Context) -> int:
    line, xml = _exp_printer(inv)
    msg = build_nfnl(K.IPCTNL_MSG_EXP_GET, NLM_F_REQUEST | NLM_F_DUMP, inv.family or 2, b"", 0)
    n = 0
    out = []
    try:
        for buf, off, ln in ctx.expect_sock.dump(msg):
            out.append(line(ctx.exp_decoder.decode(buf, off, ln)) + "\n")
            n += 1
    except NetlinkError as e:
        raise failed(e.errno, Command.EXP_LIST) from None
    if out:
        if xml:
            ctx.out.write('<?xml version="1.0" encoding="utf-8"?>\n<expect>\n')
        ctx.out.write("".join(out))
        if xml:
            ctx.out.write("</expect>\n")
            ctx.out.flush()  # as the reference: before the summary line
    return n


def cmd_exp_get(inv: Invocation, ctx: Context) -> int:
    line, xml = _exp_printer(inv)
    attrs = nla_nest(1, encode_tuple(expect_key(inv), inv.family))
    msg = build_nfnl(K.IPCTNL_MSG_EXP_GET, NLM_F_REQUEST | NLM_F_ACK, inv.family, attrs, 0)
    got = []
    try:
        ctx.expect_sock.request(
            msg, on_data=lambda b, o, n: got.append(ctx.exp_decoder.decode(b, o, n)))
    except NetlinkError as e:
        raise failed(e.errno, Command.EXP_GET) from None
    for exp in got:
        ctx.out.write(line(exp) + "\n")
    return len(got)


def cmd_exp_delete(inv: Invocation, ctx: Context) -> int:
    attrs = nla_nest(2, encode_tuple(expect_key(inv), inv.family))
    msg = build_nfnl(K.IPCTNL_MSG_EXP_DELETE, NLM_F_REQUEST | NLM_F_ACK, inv.family, attrs, 0)
    try:
        ctx.expect_sock.request(msg)
    except NetlinkError as e:
        raise failed(e.errno, Command.EXP_DELETE) from None
    return 0


def cmd_exp_create(inv: Invocation, ctx: Context) -> int:
    exp = expect_object(inv)
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    msg = build_nfnl(K.IPCTNL_MSG_EXP_NEW, flags, inv.family, encode_expect(exp), 0)
    try:
        ctx.expect_sock.request(msg)
    except NetlinkError as e:
        raise failed(e.errno, Command.EXP_CREATE) from None
    return 1


def cmd_exp_flush(inv: Invocation, ctx: Context) -> int:
    msg = build_nfnl(K.IPCTNL_MSG_EXP_DELETE, NLM_F_REQUEST | NLM_F_ACK, 2, b"", 0)
    err = _try(ctx.expect_sock, msg)
    ctx.warn(PREFIX + "expectation table has been emptied.\n")
    if err is not None:
        raise failed(err, Command.EXP_FLUSH)
    return 0


def cmd_exp_count(inv: Invocation, ctx: Context) -> int:
    msg = build_nfnl(K.IPCTNL_MSG_EXP_GET, NLM_F_REQUEST | NLM_F_DUMP, 2, b"", 0)
    n = 0
    try:
        for _ in ctx.expect_sock.dump(msg):
            n += 1
    except NetlinkError as e:
        ctx.out.write(f"{n}\n")
        raise failed(e.errno, Command.EXP_COUNT) from None
    ctx.out.write(f"{n}\n")
    return n


COMMANDS: dict[Command, Callable[[Invocation, Context], int]] = {
    Command.LIST: cmd_list,
    Command.GET: cmd_get,
    Command.CREATE: cmd_create,
    Command.ADD: cmd_create,
    Command.DELETE: cmd_delete,
    Command.UPDATE: cmd_update,
    Command.FLUSH: cmd_flush,
    Command.COUNT: cmd_count,
    Command.STATS: cmd_stats,
    Command.EVENT: cmd_event,
    Command.EXP_EVENT: cmd_event,
    Command.EXP_LIST: cmd_exp_list,
    Command.EXP_GET: cmd_exp_get,
    Command.EXP_DELETE: cmd_exp_delete,
    Command.EXP_CREATE: cmd_exp_create,
    Command.EXP_FLUSH: cmd_exp_flush,
    Command.EXP_COUNT: cmd_exp_count,
    Command.EXP_STATS: cmd_exp_stats,
}

# exit status 1 when these finish with a count of 0 (§10.5)
ZERO_IS_FAILURE = frozenset({Command.GET, Command.CREATE, Command.UPDATE, Command.DELETE,
                             Command.EXP_DELETE})
