"""``conntrack -o xml``: one ``<flow>`` element per line (spec §7.2, §8.4).

:data:`LAYOUT` declares the element once, in output order, including the reference's
quirks: ``<layer3>``/``<layer4>`` of both directions always printed, reply
``<counters>`` shown when the *original* counters exist, SCTP/DCCP ``<state>`` looked up
in the TCP name table, ``<id>`` independent of ``-o id``, no escaping. Events get
``<flow type="...">`` and, with ``Options.timestamp``, a ``<when>`` element of the
current local time. :data:`PROLOGUE` / :data:`CLOSING` frame a document.
"""
from __future__ import annotations

import time
TYPE_CHECKING = False  # typing is not imported at run time: the CLI must start fast
if TYPE_CHECKING:
    from typing import Any, Callable

from ..model import Flow
from . import _engine as E
from ._engine import M64, NS, TCP_STATES, Ctx, Expr, LabelMap, Layout, Memo, Options, converter

PROLOGUE = '<?xml version="1.0" encoding="utf-8"?>\n<conntrack>\n'
"""Printed before the first flow of ``-L``/``-G``/``-E`` output."""
CLOSING = "</conntrack>\n"
EXPECT_PROLOGUE = '<?xml version="1.0" encoding="utf-8"?>\n<expect>\n'
EXPECT_CLOSING = "</expect>\n"

FLOW_OPEN = {None: "<flow>", 1: '<flow type="new">', 2: '<flow type="update">',
             3: '<flow type="destroy">'}


def when(t: float | None = None) -> str:
    """The ``<when>`` content for time ``t`` (default now) in local time (§7.2)."""
    tm = time.localtime(t)
    return (f"<hour>{tm.tm_hour}</hour><min>{tm.tm_min:02d}</min><sec>{tm.tm_sec:02d}</sec>"
            f"<wday>{(tm.tm_wday + 1) % 7 + 1}</wday><day>{tm.tm_mday}</day>"
            f"<month>{tm.tm_mon}</month><year>{tm.tm_year}</year>")


_WHEN = Memo(lambda sec: when(sec))


@converter("flow_open")
def _flow_open(ctx: Ctx, _f: Any) -> str:
    return FLOW_OPEN.get(ctx.opts.event, "<flow>")


@converter("when")
def _when(ctx: Ctx, _f: Any):
    return Expr(f"{ctx.const(_WHEN, 'w')}[{E.now_expr(ctx)}]")


@converter("xml_state", deps=("tcp.state", "sctp.state", "dccp.state"))
def _state(ctx: Ctx, _f: Any):
    """The protocol state number, whatever the protocol, named from the TCP table."""
    for name in ("tcp.state", "sctp.state", "dccp.state"):
        if ctx.has(name):
            return E.memo_expr(ctx, name, TCP_STATES)
    return "NONE"


@converter("assured_tag")
def _assured(ctx: Ctx, f: str):
    return Expr(f"({ctx.const('<assured/>', 'as')} if {ctx.raw(f)} & 4 else {ctx.const('', 'e')})")


@converter("unreplied_tag")
def _unreplied(ctx: Ctx, f: str):
    return Expr(f"({ctx.const('', 'e')} if {ctx.raw(f)} & 2 else {ctx.const('<unreplied/>', 'un')})")


@converter("deltatime", deps=("timestamp.stop",))
def _deltatime(ctx: Ctx, f: str):
    """start+stop: (stop - start) / 1e9 (u64 arithmetic); start only: now - start."""
    start = ctx.raw(f)
    if ctx.has("timestamp.stop"):
        return Expr(f"(({ctx.raw('timestamp.stop')} - {start}) & {M64}) // {NS}")
    return Expr(f"({E.now_expr(ctx)} - {start} // {NS}) & {M64}")


def labels_xml(lm: LabelMap, raw: int | bytes) -> str:
    return "".join(f"<label>{n}</label>" for n in lm.named(raw))


@converter("labels_xml")
def _labels(ctx: Ctx, f: str):
    return E.labels_expr(ctx, f, "xml", labels_xml)


def _tuple(d: str, fam: str, p: str, counters: str) -> list[tuple[str, str]]:
    c = "counters_orig_packets and counters_orig_bytes"
    return [
        ("True", f'<meta direction="{"original" if d == "orig" else "reply"}">'
                 f'<layer3 protonum="{{${fam}}}" protoname="{{${fam}:l3name}}">'),
        (f"{fam} in IP", f"<src>{{{d}.src:addr}}</src><dst>{{{d}.dst:addr}}</dst>"),
        (f"{fam} not in IP", "<src></src><dst></dst>"),
        ("True", f'</layer3><layer4 protonum="{{${p}}}" protoname="{{${p}:l4name}}">'),
        (f"{p} in PORTS", f"<sport>{{{d}.sport}}</sport><dport>{{{d}.dport}}</dport>"),
        (f"{p} == GRE", f"<srckey>0x{{{d}.sport:x}}</srckey><dstkey>0x{{{d}.dport:x}}</dstkey>"),
        ("True", "</layer4>"),
        (f"{d}_zone", f"<zone>{{{d}.zone}}</zone>"),
        (c, f"<counters><packets>{{{counters}.packets}}</packets>"
            f"<bytes>{{{counters}.bytes}}</bytes></counters>"),
        ("True", "</meta>"),
    ]


LAYOUT = Layout("xml", [
    ("True", "{:flow_open}"),
    *_tuple("orig", "ofam", "oproto", "counters_orig"),
    *_tuple("reply", "rfam", "rproto", "counters_reply"),
    ("independent", '<meta direction="independent">'),
    ("tcp_state or sctp_state or dccp_state", "<state>{:xml_state}</state>"),
    ("timeout", "<timeout>{timeout}</timeout>"),
    ("mark", "<mark>{mark}</mark>"),
    ("opt_labels and labels", "<labels>{labels:labels_xml}</labels>"),
    ("secmark", "<secmark>{secmark}</secmark>"),
    ("secctx", "<secctx>{secctx:str}</secctx>"),
    ("zone", "<zone>{zone}</zone>"),
    ("use", "<use>{use}</use>"),
    ("id", "<id>{id}</id>"),
    ("status", "{status:assured_tag}{status:unreplied_tag}"),
    ("opt_ktimestamp and (timestamp_start or timestamp_stop)", "<timestamp>"),
    ("opt_ktimestamp and timestamp_start", "<start>{timestamp.start}</start>"),
    ("opt_ktimestamp and timestamp_stop", "<stop>{timestamp.stop}</stop>"),
    ("opt_ktimestamp and (timestamp_start or timestamp_stop)", "</timestamp>"),
    ("timestamp_start", "<deltatime>{timestamp.start:deltatime}</deltatime>"),
    ("independent", "</meta>"),
    ("opt_timestamp and opt_event", "<when>{:when}</when>"),
    ("helper", "<helper>{helper:str}</helper>"),
    ("True", "</flow>"),
], derived={"independent": "tcp_state or sctp_state or dccp_state or timeout or mark or secmark"
                           " or zone or use or status or id or labels or timestamp_start"
                           " or timestamp_stop"})
"""§7.2 as rules: (condition, template), in output order."""


def flow_formatter(opts: Options = E.DEFAULT) -> Callable[[Flow], str]:
    """``fmt(flow) -> '<flow>…</flow>'`` (no newline) for ``opts``; cached."""
    return E.flow_formatter(LAYOUT, opts)


def format_flow(flow: Flow, opts: Options = E.DEFAULT) -> str:
    """The ``<flow>`` element of ``flow`` (one line, no newline)."""
    return E.flow_formatter(LAYOUT, opts)(flow)


def compile_for_shape(shape: Any, opts: Options = E.DEFAULT) -> Callable[[tuple, int], str]:
    """``fmt(values, family) -> '<flow>…</flow>'`` for messages of ``shape`` (see text.py)."""
    return E.shape_formatter(LAYOUT, shape, opts)


__all__ = ["PROLOGUE", "CLOSING", "EXPECT_PROLOGUE", "EXPECT_CLOSING", "LAYOUT", "format_flow",
           "flow_formatter", "compile_for_shape", "when"]
