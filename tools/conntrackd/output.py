"""The text the daemon writes back on its control socket (spec §7, §8.2) and its flow
log lines (§8.3), byte for byte as conntrackd 1.4.7 writes them, plus our ``-o json``.

Cache dumps (``-i``, ``-e``, ``-i -x``, ``-i expect``) format each stored entry through
the library's per-shape formatters (the default ``conntrack -L`` line without timeout,
or the ``<flow>`` XML record) and add the daemon's suffixes; the statistics blocks are
the reference's printf formats, written as Python format strings next to each other.
"""
from __future__ import annotations

import json
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

from ctnetlink.decode import Decoder
from ctnetlink.formats import text as _text
from ctnetlink.formats import xml as _xml

from . import entry as E
from .cache import DEAD, STATUS_MASK, Cache, ExpectCache

LINE_BUFFER = 1024
"""The reference formats each dumped object into a 1024-byte buffer."""

_flow_decoder = Decoder(False)
_exp_decoder = Decoder(True)


def flow_text(msg: bytes, xml: bool = False) -> str:
    """The libnetfilter_conntrack default (or XML) rendering of a conntrack message."""
    sh, values = _flow_decoder.values(msg, 0, len(msg))
    fmt = (_xml if xml else _text).compile_for_shape(sh)
    return fmt(values, msg[16])


def without_timeout(msg: bytes, types: tuple[int, ...] = (E.CTA_TIMEOUT,)) -> bytes:
    """``msg`` without its CTA_TIMEOUT attribute (the daemon never prints timeouts), or
    without the attributes ``types``."""
    attrs = E.top_attrs(msg, 20, len(msg))
    if not any(t in attrs for t in types):
        return msg
    for t in types:
        attrs.pop(t, None)
    body = b"".join(attrs.values())
    return (len(body) + 20).to_bytes(4, "little") + msg[4:20] + body


# --- cache dumps (§7.1, §7.3, §8.2) ------------------------------------------------------

def dump_cache(cache: Cache, *, xml: bool = False, hide_dead: bool = False,
               now: float | None = None, expires: Callable[[bytes], int | None] | None = None,
               reply: bool = True) -> Iterable[bytes]:
    """The ``-i``/``-e`` reply of ``cache``, in chunks: one line per entry (``hide_dead``:
    FTFW hides dead entries), ``[active since Ns]`` (and ``[expires in Ns]``) after
    the plain rendering, nothing after XML. ``reply=False`` leaves the reply tuple out
    (1.4.7's external cache objects have none: a sync message carries no reply tuple)."""
    tnow = int(time.time() if now is None else now)
    is_exp = isinstance(cache, ExpectCache)
    strip = E.CTA_TIMEOUT not in cache.drop
    drop = (E.CTA_TIMEOUT, E.CTA_TUPLE_REPLY) if not reply else (E.CTA_TIMEOUT,)
    strip = strip or not reply
    chunk: list[str] = []
    size = 0
    for key, value in cache.items():
        if hide_dead and value[0] & STATUS_MASK == DEAD:
            continue
        msg = cache.message(key, value)
        if is_exp:
            line = expect_text(msg, xml)
        else:
            line = flow_text(without_timeout(msg, drop) if strip else msg, xml)
        if len(line) > LINE_BUFFER - 1:
            line = _text.clip(line, LINE_BUFFER)
        if not xml:
            if expires is not None:
                left = expires(key)
                if left is not None:
                    line += f" [expires in {left}s]"
            line += f" [active since {tnow - Cache.times(value)[0]}s]"
        chunk.append(line + "\n")
        size += len(line)
        if size > 1 << 16:
            yield "".join(chunk).encode()
            chunk = []
            size = 0
    if chunk:
        yield "".join(chunk).encode()


def expect_text(msg: bytes, xml: bool = False) -> str:
    """An expectation message as the daemon prints it (no timeout)."""
    from ctnetlink.formats.expect import format_expect, format_expect_xml

    exp = _exp_decoder.decode(msg, 0, len(msg))
    exp.timeout = None
    return format_expect_xml(exp) if xml else format_expect(exp)


def dump_cache_json(cache: Cache, *, hide_dead: bool = False, now: float | None = None
                    ) -> Iterable[bytes]:
    """``-o json`` of a dump: one JSON object per line (``conntrack -o json`` records with
    a ``daemon`` member: status, active_since and the last update)."""
    from ctnetlink.formats import json as _json

    tnow = int(time.time() if now is None else now)
    is_exp = isinstance(cache, ExpectCache)
    out: list[str] = []
    for key, value in cache.items():
        status = value[0] & STATUS_MASK
        if hide_dead and status == DEAD:
            continue
        msg = cache.message(key, value)
        if is_exp:
            rec = {"expect": _exp_decoder.decode(msg, 0, len(msg)).to_dict()}
            body = json.dumps(rec, separators=(",", ":"), default=str)[:-1]
        else:
            sh, values = _flow_decoder.values(msg, 0, len(msg))
            body = _json.compile_for_shape(sh)(values, msg[16])[:-1]
        lifetime, last = Cache.times(value)
        meta = {"status": ("new", "alive", "dead")[status], "active_since": tnow - lifetime,
                "last_update": tnow - last}
        out.append(body + ',"daemon":' + json.dumps(meta, separators=(",", ":")) + "}\n")
        if len(out) >= 1024:
            yield "".join(out).encode()
            out = []
    if out:
        yield "".join(out).encode()


# --- statistics blocks (§7.4-§7.6, §8.2) ---------------------------------------------------

def cache_stats(cache: Cache, name: str | None = None) -> str:
    """The ``cache NAME:`` block of ``-s``."""
    s = cache.stats
    return (f"cache {name or cache.name}:\n"
            f"current active connections:\t{cache.active:12d}\n"
            f"connections created:\t\t{s.add_ok:12d}\tfailed:\t{s.add_fail:12d}\n"
            f"connections updated:\t\t{s.upd_ok:12d}\tfailed:\t{s.upd_fail:12d}\n"
            f"connections destroyed:\t\t{s.del_ok:12d}\tfailed:\t{s.del_fail:12d}\n\n")


def cache_stats_extended(cache: Cache, name: str | None = None) -> str:
    """The ``cache:NAME`` block of ``-s cache``."""
    s = cache.stats
    return (f"cache:{name or cache.name}\tactive objects:\t\t{cache.objects:12d}\n"
            f"\tactive/total entries:\t\t{cache.active:12d}/{len(cache):12d}\n"
            f"\tcreation OK/failed:\t\t{s.add_ok:12d}/{s.add_fail:12d}\n"
            f"\t\tno memory available:\t{s.add_fail_enomem:12d}\n"
            f"\t\tno space left in cache:\t{s.add_fail_enospc:12d}\n"
            f"\tupdate OK/failed:\t\t{s.upd_ok:12d}/{s.upd_fail:12d}\n"
            f"\t\tentry not found:\t{s.upd_fail_enoent:12d}\n"
            f"\tdeletion created/failed:\t{s.del_ok:12d}/{s.del_fail:12d}\n"
            f"\t\tentry not found:\t{s.del_fail_enoent:12d}\n\n")


def bypass_stats(new: int, upd: int, dele: int) -> str:
    """``DisableInternalCache``: the ``internal bypass:`` block."""
    return (f"internal bypass:\n"
            f"connections new:\t\t{new:12d}\n"
            f"connections updated:\t\t{upd:12d}\n"
            f"connections destroyed:\t\t{dele:12d}\n\n")


def inject_stats(add_ok: int, add_fail: int, upd_ok: int, upd_fail: int, del_ok: int,
                 del_fail: int) -> str:
    """``DisableExternalCache``: the ``external inject:`` block."""
    return (f"external inject:\n"
            f"connections created:\t\t{add_ok:12d}\tfailed:\t{add_fail:12d}\n"
            f"connections updated:\t\t{upd_ok:12d}\tfailed:\t{upd_fail:12d}\n"
            f"connections destroyed:\t\t{del_ok:12d}\tfailed:\t{del_fail:12d}\n\n")


def traffic_stats(nbytes: int, npkts: int) -> str:
    """The ``traffic processed:`` block (sums of destroyed flows' counters)."""
    return f"traffic processed:\n{nbytes & (2**64 - 1):20d} Bytes      {npkts & (2**64 - 1):20d} Pckts\n\n"


def uptime(seconds: int) -> str:
    """``-s runtime`` uptime text (§7.5): ``[N day(s) ][H h ]M min``."""
    days, rem = divmod(int(seconds), 86400)
    hours, rem = divmod(rem, 3600)
    mins = rem // 60
    out = ""
    if days:
        out = f"{days} day " if days == 1 else f"{days} days "
    if hours:
        out += f"{hours} h {mins} min"
    else:
        out += f"{mins} min"
    return out


RUNTIME_COUNTERS = ("child_process_failed", "child_process_segfault", "child_process_termsig",
                    "select_failed", "wait_failed", "local_read_failed", "local_unknown_request")


def runtime_stats(uptime_seconds: int, nl: Any, rt: Any = None) -> str:
    """``-s runtime`` (§7.5): ``nl`` is the kernel side's :class:`~.kernel.KernelStats`
    (or anything with the same attributes, zeros when None), ``rt`` the process's
    runtime counters (attributes named as :data:`RUNTIME_COUNTERS`)."""
    def g(obj: Any, name: str) -> int:
        return int(getattr(obj, name, 0) or 0) if obj is not None else 0

    return (f"daemon uptime: {uptime(uptime_seconds)}\n\n"
            f"netlink stats:\n"
            f"\tevents received:\t{g(nl, 'events_received'):20d}\n"
            f"\tevents filtered:\t{g(nl, 'events_filtered'):20d}\n"
            f"\tevents unknown type:\t\t{g(nl, 'events_unknown_type'):12d}\n"
            f"\tcatch event failed:\t\t{g(nl, 'catch_event_failed'):12d}\n"
            f"\tdump unknown type:\t\t{g(nl, 'dump_unknown_type'):12d}\n"
            f"\tnetlink overrun:\t\t{g(nl, 'netlink_overrun'):12d}\n"
            f"\tflush kernel table:\t\t{g(nl, 'flush_kernel_table'):12d}\n"
            f"\tresync with kernel table:\t{g(nl, 'resync_kernel_table'):12d}\n"
            f"\tcurrent buffer size (in bytes):\t{g(nl, 'buffer_size'):12d}\n\n"
            f"runtime stats:\n"
            f"\tchild process failed:\t\t{g(rt, 'child_process_failed'):12d}\n"
            f"\t\tchild process segfault:\t{g(rt, 'child_process_segfault'):12d}\n"
            f"\t\tchild process termsig:\t{g(rt, 'child_process_termsig'):12d}\n"
            f"\tselect failed:\t\t\t{g(rt, 'select_failed'):12d}\n"
            f"\twait failed:\t\t\t{g(rt, 'wait_failed'):12d}\n"
            f"\tlocal read failed:\t\t{g(rt, 'local_read_failed'):12d}\n"
            f"\tlocal unknown request:\t\t{g(rt, 'local_unknown_request'):12d}\n\n")


# --- the flow log of statistics mode (§8.3) ------------------------------------------------

def flow_log_line(msg: bytes, now: float | None = None) -> str:
    """``«ctime»TAB«flow text»`` of a destroyed flow (no newline), as the reference's
    ``dlog_ct`` formats it into its 1024-byte buffer."""
    stamp = time.ctime(time.time() if now is None else now)
    line = flow_text(without_timeout(msg))
    room = LINE_BUFFER - len(stamp) - 2
    if len(line) > room:
        line = line.encode()[:room].decode("utf8", "ignore")
    return f"{stamp}\t{line}"


# --- JSON ------------------------------------------------------------------------------------

def to_json(obj: Any) -> bytes:
    """One JSON document (``-o json`` replies), newline-terminated."""
    return (json.dumps(obj, indent=None, separators=(",", ":"), sort_keys=False) + "\n").encode()


def cache_json(cache: Cache) -> dict[str, Any]:
    d = cache.stats.as_dict()
    d.update({"name": cache.name, "active": cache.active, "objects": cache.objects,
              "entries": len(cache), "limit": cache.limit})
    return d


# --- channels, network and queues (§7.4, §7.5, §7.7, §7.9) ---------------------------------

_TRANSPORT_NAME = {"multicast": "multicast", "udp": "UDP", "tcp": "TCP"}


def _traffic_lines(c: tuple[int, int, int, int, int, int]) -> str:
    """``c`` = (bytes sent, bytes recv, packets sent, packets recv, errors send, errors recv)."""
    return (f"{c[0]:20d} Bytes sent {c[1]:20d} Bytes recv\n"
            f"{c[2]:20d} Pckts sent {c[3]:20d} Pckts recv\n"
            f"{c[4]:20d} Error send {c[5]:20d} Error recv\n\n")


def channel_block(transport: str, device: str, counters: tuple, tcp_state: tuple[str, str] = ("", "")) -> str:
    """The active channel's block of ``-s`` and ``-s network``."""
    name = _TRANSPORT_NAME.get(transport, transport)
    if transport == "tcp":
        head = f"TCP traffic (active device={device}) server={tcp_state[0]} client={tcp_state[1]}:\n"
    else:
        head = f"{name} traffic (active device={device}):\n"
    return head + _traffic_lines(counters)


def link_block(transport: str, device: str, status: str, role: str, counters: tuple) -> str:
    """One channel's block of ``-s link``."""
    name = _TRANSPORT_NAME.get(transport, transport)
    return f"{name} traffic device={device} status={status} role={role}:\n" + _traffic_lines(counters)


IFF_UP = 0x1


def link_status(ifname: str) -> str:
    """``RUNNING`` (up with carrier), ``NO-CARRIER`` (up) or ``DOWN``, from sysfs."""
    try:
        with open(f"/sys/class/net/{ifname}/flags") as f:
            flags = int(f.read(), 16)
    except (OSError, ValueError):
        return "DOWN"
    if not flags & IFF_UP:
        return "DOWN"
    try:
        with open(f"/sys/class/net/{ifname}/carrier") as f:
            carrier = f.read().strip() == "1"
    except OSError:
        carrier = False
    return "RUNNING" if carrier else "NO-CARRIER"


def network_stats(malformed: int = 0, version: int = 0, header: int = 0, payload: int = 0,
                  msgtype: int = 0, truncated: int = 0, size: int = 0, send_malformed: int = 0,
                  lost: int = 0, before: int = 0) -> str:
    """``-s network`` without its channel block."""
    return ("network statistics:\n"
            "\trecv:\n"
            f"\t\tMalformed messages:\t{malformed:20d}\n"
            f"\t\tWrong protocol version:\t{version:20d}\n"
            f"\t\tMalformed header:\t{header:20d}\n"
            f"\t\tMalformed payload:\t{payload:20d}\n"
            f"\t\tBad message type:\t{msgtype:20d}\n"
            f"\t\tTruncated message:\t{truncated:20d}\n"
            f"\t\tBad message size:\t{size:20d}\n"
            "\tsend:\n"
            f"\t\tMalformed messages:\t{send_malformed:20d}\n\n"
            "sequence tracking statistics:\n"
            "\trecv:\n"
            f"\t\tPackets lost:\t\t{lost:20d}\n"
            f"\t\tPackets before:\t\t{before:20d}\n\n")


def message_tracking(malformed: int, lost: int) -> str:
    return f"message tracking:\n{malformed:20d} Malformed msgs {lost:20d} Lost msgs\n\n"


def queue_stats(allocated: int, queues: list[tuple[str, int, int, int]]) -> str:
    """``-s queue``: ``queues`` = (name, current, maximum, no-space errors), most recently
    created last (printed first, as the reference walks its list)."""
    out = [f"allocated queue nodes:\t\t{allocated:12d}\n\n"]
    for name, cur, mx, err in queues:
        out.append(f"queue {name}:\n"
                   f"current elements:\t\t{cur:12d}\n"
                   f"maximum elements:\t\t{mx:12d}\n"
                   f"not enough space errors:\t{err:12d}\n\n")
    return "".join(out)
