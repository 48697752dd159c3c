"""The default one-line text of a conntrack entry (``conntrack -L``, spec §7.1, §8).

:data:`LAYOUT` declares the 28 fields of §7.1 once, in order; :func:`format_flow` /
:func:`flow_formatter` apply it to :class:`~ctnetlink.model.Flow` objects and
:func:`compile_for_shape` to the raw value tuples of the shape decoder, both through the
compiler in :mod:`._engine`. Options (``-o extended``, ``id``, ``ktimestamp``, the label
map, the event type and an injectable clock for ``delta-time``) come as an
:class:`Options`. The helpers at the end build the event time prefix of §8.2, the
``[USERSPACE]`` suffix of §8.3 and cut a line to the reference's buffer size.
"""
from __future__ import annotations

import time

TYPE_CHECKING = False  # typing is not imported at run time: the CLI must start fast
if TYPE_CHECKING:
    from typing import Any, Callable

from ..model import Flow
from . import _engine as E
from ._engine import (
    M64, NS, Ctx, Expr, LabelMap, Layout, Memo, Options, converter, now_expr,
)

EVENT_NAMES = {1: "[NEW]", 2: "[UPDATE]", 3: "[DESTROY]"}
EVENT_PREFIX = {k: f"{v:>9} " for k, v in EVENT_NAMES.items()}
"""Event type -> ``"    [NEW] "``, ``" [UPDATE] "``, ``"[DESTROY] "``."""

_ASSURED = Memo(lambda s: "[HW_OFFLOAD] " if s & 0x8000 else "[OFFLOAD] " if s & 0x4000
                else "[ASSURED] " if s & 0x4 else "")
_CTIME = Memo(lambda sec: time.ctime(sec))


@converter("event9")
def _event9(ctx: Ctx, _f: Any) -> str:
    return EVENT_PREFIX.get(ctx.opts.event or 0, "")


@converter("name8")
def _name8(ctx: Ctx, f: str) -> str:
    """``%-8s %u `` of a deciding value: protocol name padded to 8, then its number."""
    v = ctx.env[f[1:]]
    name = E.l3_name(v) if f == "$family" else E.l4_name(v)
    return f"{name:<8} {v}"


@converter("unreplied")
def _unreplied(ctx: Ctx, f: str):
    if not ctx.has(f):
        return "[UNREPLIED] "
    return Expr(f"({ctx.const('', 'e')} if {ctx.raw(f)} & 2 else {ctx.const('[UNREPLIED] ', 'u')})")


@converter("assured")
def _assured(ctx: Ctx, f: str):
    if not ctx.has(f):
        return ""
    return Expr(f"{ctx.const(_ASSURED, 'as')}[{ctx.raw(f)} & 49156]")


@converter("delta_time", deps=("timestamp.stop",))
def _delta(ctx: Ctx, f: str):
    """stop (if non-zero, else now) minus start, each in whole seconds, as ``%llu``."""
    start = ctx.raw(f)
    now = now_expr(ctx)
    if ctx.has("timestamp.stop"):
        stop = ctx.raw("timestamp.stop")
        return Expr(f"((({stop} // {NS}) if {stop} else {now}) - {start} // {NS}) & {M64}")
    return Expr(f"({now} - {start} // {NS}) & {M64}")


@converter("ctime")
def _ctime(ctx: Ctx, f: str):
    if not ctx.has(f):
        return _CTIME[0]
    return Expr(f"{ctx.const(_CTIME, 'ct')}[{ctx.raw(f)} // {NS}]")


def labels_text(lm: LabelMap, raw: int | bytes) -> str:
    """``labels=a,b `` (named set bits), or ``labels `` when no set bit has a name."""
    names = lm.named(raw)
    return "labels=" + ",".join(names) + " " if names else "labels "


@converter("labels_text")
def _labels(ctx: Ctx, f: str):
    return E.labels_expr(ctx, f, "text", labels_text)


def _tuple_rules(d: str, p: str) -> list[tuple[str, str]]:
    return [
        (f"{d} and family in IP", f"src={{{d}.src:addr}} dst={{{d}.dst:addr}} "),
        (f"{d} and {p} in PORTS", f"sport={{{d}.sport}} dport={{{d}.dport}} "),
        (f"{d} and {p} == GRE", f"srckey=0x{{{d}.sport:x}} dstkey=0x{{{d}.dport:x}} "),
        (f"{d} and {p} in ICMPS",
         f"type={{{d}.icmp_type}} code={{{d}.icmp_code}} id={{{d}.icmp_id}} "),
    ]


LAYOUT = Layout("text", [
    ("opt_event", "{:event9}"),
    ("opt_extended and orig", "{$family:name8} "),
    ("orig and orig_proto", "{$oproto:name8} "),
    ("timeout", "{timeout} "),
    ("tcp_state", "{tcp.state:tcp_state} "),
    ("sctp_state", "{sctp.state:sctp_state} "),
    ("dccp_state", "{dccp.state:dccp_state} "),
    *_tuple_rules("orig", "oproto"),
    ("orig_zone", "zone-orig={orig.zone} "),
    ("counters_orig_packets and counters_orig_bytes",
     "packets={counters_orig.packets} bytes={counters_orig.bytes} "),
    ("status", "{status:unreplied}"),
    *_tuple_rules("reply", "rproto"),
    ("reply_zone", "zone-reply={reply.zone} "),
    ("counters_reply_packets and counters_reply_bytes",
     "packets={counters_reply.packets} bytes={counters_reply.bytes} "),
    ("status", "{status:assured}"),
    ("mark", "mark={mark} "),
    ("secmark", "secmark={secmark} "),
    ("secctx", "secctx={secctx:str} "),
    ("zone", "zone={zone} "),
    ("timestamp_start", "delta-time={timestamp.start:delta_time} "),
    ("opt_ktimestamp and timestamp_start", "[start={timestamp.start:ctime}] "),
    ("opt_ktimestamp and timestamp_stop", "[stop={timestamp.stop:ctime}] "),
    ("helper", "helper={helper:str} "),
    ("use", "use={use} "),
    ("opt_id and id", "id={id} "),
    ("opt_labels and labels", "{labels:labels_text}"),
], finish="strip")
"""§7.1 as rules: (condition, template), in output order."""


def flow_formatter(opts: Options = E.DEFAULT) -> Callable[[Flow], str]:
    """``fmt(flow) -> line`` (no newline) for ``opts``; cached, the fastest Flow path."""
    return E.flow_formatter(LAYOUT, opts)


def format_flow(flow: Flow, opts: Options = E.DEFAULT) -> str:
    """The §7.1 line of ``flow`` (no newline)."""
    return E.flow_formatter(LAYOUT, opts)(flow)


def compile_for_shape(shape: Any, opts: Options = E.DEFAULT) -> Callable[[tuple, int], str]:
    """``fmt(values, family) -> line`` for messages of a :class:`~ctnetlink.decode.Shape`.

    ``values = shape.struct.unpack_from(buf, msg_off + 20)``, ``family`` = the message's
    ``nfgen_family`` (``buf[msg_off + 16]``). Cached per (shape, opts).
    """
    return E.shape_formatter(LAYOUT, shape, opts)


# --- prefixes and suffixes ------------------------------------------------------------

def event_type(nlmsg_type: int, nlmsg_flags: int) -> int:
    """§8.1: 1 NEW (``*_NEW`` with ``NLM_F_CREATE``), 2 UPDATE (``*_NEW`` without), 3 DESTROY.

    Works for conntrack (0x100/0x102) and expectation (0x200/0x202) messages.
    """
    if nlmsg_type & 0xFF == 2:
        return 3
    return 1 if nlmsg_flags & 0x400 else 2


def event_prefix(event: int) -> str:
    """``"    [NEW] "`` etc. (§7.1 field 1)."""
    return EVENT_PREFIX[int(event)]


def timestamp_prefix(sec: int, usec: int) -> str:
    """§8.2 ``[SEC.USEC]`` + TAB, zero-padded to at least 8 and exactly 6 digits."""
    return f"[{sec:08d}.{usec:06d}]\t"


def timestamp_prefix_now(clock: Callable[[], float] | None = None) -> str:
    """The §8.2 prefix for the current time (``gettimeofday``)."""
    return timestamp_prefix(*E.sec_usec(clock))


def timestamp_prefix_ns(ns: int) -> str:
    """The §8.2 prefix for a kernel event timestamp in nanoseconds ([1.4.8+git])."""
    return timestamp_prefix(ns // NS, ns % NS // 1000)


def userspace_suffix(portid: int, progname: str | None = None) -> str:
    """§8.3 ``" [USERSPACE] portid=N[ progname=NAME]"`` (empty for portid 0)."""
    if not portid:
        return ""
    return f" [USERSPACE] portid={portid}" + (f" progname={progname}" if progname else "")


LIST_BUFFER = 4096
"""Line buffer of ``-L``/``-G`` in the reference; ``-E``/``-D``/``-U`` use :data:`EVENT_BUFFER`."""
EVENT_BUFFER = 1024


def clip(line: str, bufsize: int = LIST_BUFFER) -> str:
    """The line as the reference's fixed buffer leaves it (at most ``bufsize - 1`` bytes)."""
    if len(line) < bufsize:
        return line
    b = line.encode("utf8", "surrogateescape")
    if len(b) < bufsize:
        return line
    return b[:bufsize - 1].decode("utf8", "surrogateescape")


__all__ = ["Options", "LabelMap", "LAYOUT", "format_flow", "flow_formatter", "compile_for_shape",
           "event_type", "event_prefix", "timestamp_prefix", "timestamp_prefix_now", "timestamp_prefix_ns",
           "userspace_suffix", "clip", "EVENT_PREFIX", "LIST_BUFFER", "EVENT_BUFFER"]
