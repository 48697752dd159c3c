"""Expectation records (``conntrack -L expect``, ``-G expect``, ``-E expect``; spec §9.1, §9.2).

Plain lines (optionally with the event prefix), the ``-o timestamp`` prefix that, unlike
conntrack events, is left-aligned and space-padded, and the ``<flow>`` XML record.
Expectations are few, so these are plain functions over :class:`~ctnetlink.model.Expect`.
Each tuple (expected, mask, master) prints its addresses in the message family when it
is present and its layer-4 part by its own protocol number.
"""
from __future__ import annotations


TYPE_CHECKING = False  # typing is not imported at run time: the CLI must start fast
if TYPE_CHECKING:
    from typing import Callable

from ..constants import NF_CT_EXPECT_INACTIVE, NF_CT_EXPECT_PERMANENT, NF_CT_EXPECT_USERSPACE
from ..model import Expect, Tuple
from ._engine import (
    ADDR4_INT, ADDR6_INT, GRE, ICMP_PROTOS, PORT_PROTOS, l3_name, l4_name, sec_usec,
)
from .text import EVENT_PREFIX
from .xml import when

EVENT_TYPES = {1: ' type="new"', 2: ' type="update"', 3: ' type="destroy"'}
FLAGS = ((NF_CT_EXPECT_PERMANENT, "PERMANENT"), (NF_CT_EXPECT_INACTIVE, "INACTIVE"),
         (NF_CT_EXPECT_USERSPACE, "USERSPACE"))


def _family(exp: Expect) -> int:
    if exp.family is not None:
        return exp.family
    for t in (exp.tuple, exp.master, exp.mask):
        if t is not None and t.family is not None:
            return t.family
    return 0


def _addr(a, fam: int) -> str:
    i = a._ip if a is not None else 0
    return ADDR6_INT[i] if fam == 10 else ADDR4_INT[i]


def _addrs(t: Tuple | None, fam: int, src: str, dst: str) -> str:
    if t is None or fam not in (2, 10):
        return ""
    return f"{src}={_addr(t.src, fam)} {dst}={_addr(t.dst, fam)} "


def _l4(t: Tuple | None) -> str:
    if t is None:
        return ""
    p = t.proto
    if p in PORT_PROTOS:
        return f"sport={t.sport or 0} dport={t.dport or 0} "
    if p == GRE:
        return f"srckey=0x{t.sport or 0:x} dstkey=0x{t.dport or 0:x} "
    if p in ICMP_PROTOS:
        return f"type={t.icmp_type or 0} code={t.icmp_code or 0} id={t.icmp_id or 0} "
    return ""


def format_expect(exp: Expect, event: int | None = None) -> str:
    """The §9.1 line of ``exp`` (no newline); ``event`` 1/2/3 adds the event prefix."""
    fam = _family(exp)
    out = [EVENT_PREFIX.get(event, "") if event else ""]
    if exp.timeout is not None:
        out.append(f"{exp.timeout} ")
    proto = exp.tuple.proto if exp.tuple is not None and exp.tuple.proto is not None else 0
    out.append(f"proto={proto} ")
    out.append(_addrs(exp.tuple, fam, "src", "dst") + _l4(exp.tuple))
    out.append(_addrs(exp.mask, fam, "mask-src", "mask-dst") + _l4(exp.mask))
    out.append(_addrs(exp.master, fam, "master-src", "master-dst") + _l4(exp.master))
    if exp.zone is not None:
        out.append(f"zone={exp.zone} ")
    flags = exp.flags or 0
    names = [n for b, n in FLAGS if flags & b]
    if names:
        out.append(",".join(names) + " ")
    if exp.klass is not None:
        out.append(f"class={exp.klass} ")
    if exp.helper is not None:
        out.append(f"helper={exp.helper}")
    line = "".join(out)
    return line[:-1] if line.endswith(" ") else line


def timestamp_prefix(sec: int, usec: int) -> str:
    """§9.1 ``[SEC.USEC]`` + TAB, left-aligned and space-padded to 8 and 6 columns."""
    return f"[{sec:<8d}.{usec:<6d}]\t"


def timestamp_prefix_now(clock: Callable[[], float] | None = None) -> str:
    """The §9.1 prefix for the current time."""
    return timestamp_prefix(*sec_usec(clock))


def _xml_addrs(t: Tuple | None, fam: int) -> str:
    if t is None or fam not in (2, 10):
        return "<src></src><dst></dst>" if t is not None else ""
    return f"<src>{_addr(t.src, fam)}</src><dst>{_addr(t.dst, fam)}</dst>"


def _xml_ports(t: Tuple | None) -> str:
    if t is None:
        return ""
    if t.proto in PORT_PROTOS:
        return f"<sport>{t.sport or 0}</sport><dport>{t.dport or 0}</dport>"
    if t.proto == GRE:
        return f"<srckey>0x{t.sport or 0:x}</srckey><dstkey>0x{t.dport or 0:x}</dstkey>"
    return ""


def format_expect_xml(exp: Expect, event: int | None = None, timestamp: bool = False,
                      now: float | None = None) -> str:
    """The §9.1 ``<flow>`` record (one line, no newline); ``timestamp`` adds ``<when>``."""
    fam = _family(exp)
    exp_t = exp.tuple
    l4 = exp_t.proto if exp_t is not None and exp_t.proto is not None else 0
    l3 = fam if exp_t is not None else 0
    out = [f"<flow{EVENT_TYPES.get(event, '') if event else ''}>",
           f'<layer3 protonum="{l3}" protoname="{l3_name(l3)}">',
           f"<expected>{_xml_addrs(exp_t, fam)}</expected>",
           f"<mask>{_xml_addrs(exp.mask, fam)}</mask>",
           f"<master>{_xml_addrs(exp.master, fam)}</master>",
           f'</layer3><layer4 protonum="{l4}" protoname="{l4_name(l4)}">',
           f"<expected>{_xml_ports(exp_t)}</expected>",
           f"<mask>{_xml_ports(exp.mask)}</mask>",
           f"<master>{_xml_ports(exp.master)}</master>",
           "</layer4><meta>"]
    if exp.helper is not None:
        out.append(f"<helper-name>{exp.helper}</helper-name>")
    if exp.timeout is not None:
        out.append(f"<timeout>{exp.timeout}</timeout>")
    if exp.klass is not None:
        out.append(f"<class>{exp.klass}</class>")
    if exp.zone is not None:
        out.append(f"<zone>{exp.zone}</zone>")
    if timestamp:
        out.append(f"<when>{when(now)}</when>")
    flags = exp.flags or 0
    for bit, tag in ((NF_CT_EXPECT_PERMANENT, "<permanent/>"), (NF_CT_EXPECT_INACTIVE, "<inactive/>"),
                     (NF_CT_EXPECT_USERSPACE, "<userspace/>")):
        if flags & bit:
            out.append(tag)
    out.append("</meta></flow>")
    return "".join(out)


__all__ = ["format_expect", "format_expect_xml", "timestamp_prefix", "timestamp_prefix_now"]
