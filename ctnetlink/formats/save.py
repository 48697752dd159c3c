"""``conntrack -o save``: a line of options that recreates the entry (spec §7.3, §11).

:data:`LAYOUT` declares the line once: prefix (``-A``/``-D``/``-U``), timeout, the
``-u`` status list (``UNSET`` when none of EXPECTED, SEEN_REPLY, ASSURED,
FIXED_TIMEOUT is set), zones, addresses with ``-g``/``-n`` for DNAT'ed/SNAT'ed entries,
then ``-p`` and the protocol's fields, each only if the kernel sent it (GRE keys in
decimal, the tool's own state tables: SCTP 8/9 print ``(null)``, SCTP vtags byte-swapped). For a family other
than IPv4/IPv6 the formatters return None: the reference then warns
``WARNING: unsupported l3proto N, skipping.`` (see :func:`unsupported_warning`).
"""
from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: the CLI must start fast
if TYPE_CHECKING:
    from typing import Any, Callable

from ..constants import TCP_STATE_NAMES
from ..model import Flow
from . import _engine as E
from ._engine import Ctx, Expr, Memo, Options, converter

SAVE_PREFIX = {None: "-A", 1: "-A", 2: "-U", 3: "-D"}
"""Event type (None outside events) -> prefix; ``-D`` prints with ``save_prefix="-D"``."""
SAVE_STATUS_BITS = ((0x1, "EXPECTED"), (0x2, "SEEN_REPLY"), (0x4, "ASSURED"),
                    (0x400, "FIXED_TIMEOUT"))
_STATUS = Memo(lambda s: ",".join(n for b, n in SAVE_STATUS_BITS if s & b) or "UNSET")
_TCP = E._names(TCP_STATE_NAMES, "(null)")
_SCTP = E._names(("NONE", "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTABLISHED",
                  "SHUTDOWN_SENT", "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT"), "(null)")
_DCCP = E._names(("NONE", "REQUEST", "RESPOND", "PARTOPEN", "OPEN", "CLOSEREQ", "CLOSING",
                  "TIMEWAIT", "IGNORE", "INVALID"), "(null)")
_ROLE = E._names(("client", "server"), "(null)")
SAVE_PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 33: "dccp", 47: "gre", 58: "icmpv6",
                    132: "sctp", 136: "udplite"}


def unsupported_warning(family: int) -> str:
    """The stderr line the reference prints instead of a save line it cannot build."""
    return f"WARNING: unsupported l3proto {family}, skipping.\n"


@converter("save_prefix")
def _prefix(ctx: Ctx, _f: Any) -> str:
    p = ctx.opts.save_prefix
    return p if p is not None else SAVE_PREFIX.get(ctx.opts.event, "-A")


@converter("save_status")
def _status(ctx: Ctx, f: str):
    return Expr(f"{ctx.const(_STATUS, 'st')}[{ctx.raw(f)} & 1031]")


@converter("save_proto")
def _proto(ctx: Ctx, f: str) -> str:
    v = ctx.env[f[1:]]
    return SAVE_PROTO_NAMES.get(v, str(v))


converter("save_tcp_state")(lambda ctx, f: E.memo_expr(ctx, f, _TCP))
converter("save_sctp_state")(lambda ctx, f: E.memo_expr(ctx, f, _SCTP))
converter("save_dccp_state")(lambda ctx, f: E.memo_expr(ctx, f, _DCCP))
converter("dccp_role")(lambda ctx, f: E.memo_expr(ctx, f, _ROLE))
_BSWAP32 = Memo(lambda v: int.from_bytes((v & 0xFFFFFFFF).to_bytes(4, "little"), "big"))
converter("bswap32")(lambda ctx, f: E.memo_expr(ctx, f, _BSWAP32))
"""SCTP vtags: the tool prints ``ntohl()`` of the library's (already host-order) value, so
the kernel's number appears byte-swapped (``-I --orig-vtag`` swaps the same way)."""


def _addr_key(ctx: Ctx, name: str) -> str:
    """A comparable form of an address: the Flow's integer, the shape's bytes."""
    if not ctx.has(name):
        if isinstance(ctx.backend, E.FlowBackend):
            return "0"
        return ctx.const(bytes(16 if ctx.family == 10 else 4), "z")
    raw = ctx.raw(name)
    return f"{raw}._ip" if ctx.kind(name) == "flow" else raw


def _nat_choice(ctx: Ctx, bit: int, mine: str, other: str, yes: str, no: str):
    """``yes`` if NAT'ed: (no status or status has ``bit``) and ``mine`` != ``other``."""
    differs = f"{_addr_key(ctx, mine)} != {_addr_key(ctx, other)}"
    cond = f"({ctx.raw('status')} & {bit}) and {differs}" if ctx.has("status") else differs
    return Expr(f"({ctx.const(yes, 'y')} if {cond} else {ctx.const(no, 'n')})")


@converter("dnat_opt", deps=("status", "reply.src", "orig.dst"))
def _dnat(ctx: Ctx, _f: Any):
    return _nat_choice(ctx, 0x100, "reply.src", "orig.dst", "-g ", "-r ")


@converter("snat_opt", deps=("status", "reply.dst", "orig.src"))
def _snat(ctx: Ctx, _f: Any):
    return _nat_choice(ctx, 0x80, "reply.dst", "orig.src", "-n ", "-q ")


_PORTS = "oproto in PORTS"
LAYOUT = E.Layout("save", [
    ("True", "{:save_prefix} "),
    ("timeout", "-t {timeout} "),
    ("status", "-u {status:save_status} "),
    ("secmark", "-c {secmark} "),
    ("zone", "-w {zone} "),
    ("orig_zone", "--orig-zone {orig.zone} "),
    ("reply_zone", "--reply-zone {reply.zone} "),
    ("True", "-s {orig.src:addr} -d {orig.dst:addr} "),
    ("True", "{:dnat_opt}{reply.src:addr} {:snat_opt}{reply.dst:addr} "),
    ("True", "-p {$oproto:save_proto} "),
    (f"{_PORTS} and orig_sport", "--sport {orig.sport} "),
    (f"{_PORTS} and orig_dport", "--dport {orig.dport} "),
    (f"{_PORTS} and reply_sport", "--reply-port-src {reply.sport} "),
    (f"{_PORTS} and reply_dport", "--reply-port-dst {reply.dport} "),
    ("oproto == 6 and tcp_state", "--state {tcp.state:save_tcp_state} "),
    ("oproto == 132 and sctp_state", "--state {sctp.state:save_sctp_state} "),
    ("oproto == 132 and sctp_vtag_orig", "--orig-vtag {sctp.vtag_orig:bswap32} "),
    ("oproto == 132 and sctp_vtag_reply", "--reply-vtag {sctp.vtag_reply:bswap32} "),
    ("oproto == 33 and dccp_state", "--state {dccp.state:save_dccp_state} "),
    ("oproto == 33 and dccp_role", "--role {dccp.role:dccp_role} "),
    ("oproto == GRE and orig_sport", "--srckey {orig.sport} "),
    ("oproto == GRE and orig_dport", "--dstkey {orig.dport} "),
    ("oproto == GRE and reply_sport", "--reply-key-src {reply.sport} "),
    ("oproto == GRE and reply_dport", "--reply-key-dst {reply.dport} "),
    ("oproto == 1 and orig_icmp_type", "--icmp-type {orig.icmp_type} "),
    ("oproto == 1 and orig_icmp_code", "--icmp-code {orig.icmp_code} "),
    ("oproto == 1 and orig_icmp_id", "--icmp-id {orig.icmp_id} "),
    ("oproto == 58 and orig_icmp_type", "--icmpv6-type {orig.icmp_type} "),
    ("oproto == 58 and orig_icmp_code", "--icmpv6-code {orig.icmp_code} "),
    ("oproto == 58 and orig_icmp_id", "--icmpv6-id {orig.icmp_id} "),
], finish="strip", valid="sfam in IP")
"""§7.3 as rules: (condition, template), in output order."""


def flow_formatter(opts: Options = E.DEFAULT) -> Callable[[Flow], str | None]:
    """``fmt(flow) -> line or None`` (None: family not IPv4/IPv6); cached."""
    return E.flow_formatter(LAYOUT, opts)


def format_flow(flow: Flow, opts: Options = E.DEFAULT) -> str | None:
    """The ``-o save`` line of ``flow`` (no newline), None for an unsupported family."""
    return E.flow_formatter(LAYOUT, opts)(flow)


def compile_for_shape(shape: Any, opts: Options = E.DEFAULT) -> Callable[[tuple, int], str | None]:
    """``fmt(values, family) -> line or None`` for messages of ``shape`` (see text.py)."""
    return E.shape_formatter(LAYOUT, shape, opts)


__all__ = ["LAYOUT", "SAVE_PREFIX", "format_flow", "flow_formatter", "compile_for_shape",
           "unsupported_warning"]
