"""Statistics output: ``-S``, ``-S expect`` (spec §9.3), the /proc fall-back and ``-C`` (§9.4).

``cpu=%-4u`` + TAB, then ``name=value `` for every attribute (trailing space kept), one
line per CPU reply. :func:`parse_cpu_stats` reads a raw ``IPCTNL_MSG_CT_GET_STATS_CPU`` /
``IPCTNL_MSG_EXP_GET_STATS_CPU`` message the way the reference does: attributes beyond
the known range are ignored, a payload that is not 4 bytes stops with
:class:`StatsAttrError` (the reference prints ``mnl_attr_validate: <strerror>``).
"""
from __future__ import annotations

import errno
import os
import struct

TYPE_CHECKING = False  # typing is not imported at run time: the CLI must start fast
if TYPE_CHECKING:
    from typing import Iterable, Mapping

from ..constants import STATS_CPU_NAMES, STATS_EXP_NAMES

CPU_NAMES: dict[int, str] = {**STATS_CPU_NAMES, 16: "unknown1", 17: "unknown2", 18: "unknown3",
                             19: "unknown4"}
"""Conntrack per-CPU attribute number -> name (1..19; higher numbers are ignored)."""
EXP_NAMES: dict[int, str] = dict(STATS_EXP_NAMES)
_ATTR = struct.Struct("=HH")
_BE32 = struct.Struct(">I")
PROC_STATS = "/proc/net/stat/nf_conntrack"


class StatsAttrError(ValueError):
    """A statistics attribute with a payload other than 4 bytes (``errno`` ERANGE)."""

    def __init__(self, atype: int) -> None:
        self.errno = errno.ERANGE
        self.atype = atype
        super().__init__(f"mnl_attr_validate: {os.strerror(errno.ERANGE)}")


def cpu_line(cpu: int, items: Iterable[tuple[str, int]]) -> str:
    """``cpu=N   <TAB>name=value name=value \\n`` (the trailing space is kept)."""
    return f"cpu={cpu:<4d}\t" + "".join(f"{n}={v} " for n, v in items) + "\n"


def parse_cpu_stats(msg: bytes | memoryview, off: int = 0,
                    expect: bool = False) -> tuple[int, list[tuple[str, int]]]:
    """(cpu, [(name, value), ...]) of one statistics reply (nlmsghdr included)."""
    ln = struct.unpack_from("=I", msg, off)[0]
    cpu = struct.unpack_from(">H", msg, off + 18)[0]
    names = EXP_NAMES if expect else CPU_NAMES
    vals: dict[int, int] = {}
    pos, end = off + 20, off + ln
    while pos + 4 <= end:
        alen, atype = _ATTR.unpack_from(msg, pos)
        if alen < 4:
            break
        atype &= 0x3FFF
        if atype in names:
            if alen != 8:
                raise StatsAttrError(atype)
            vals[atype] = _BE32.unpack_from(msg, pos + 4)[0]
        pos += (alen + 3) & ~3
    return cpu, [(names[t], vals[t]) for t in sorted(vals)]


def format_cpu_stats(msg: bytes | memoryview, off: int = 0, expect: bool = False) -> str:
    """The ``-S`` / ``-S expect`` line of one reply message."""
    cpu, items = parse_cpu_stats(msg, off, expect)
    return cpu_line(cpu, items)


def format_stats_values(cpu: int, values: Mapping[int, int], expect: bool = False) -> str:
    """The line for already decoded attributes ``{attribute number: value}``."""
    names = EXP_NAMES if expect else CPU_NAMES
    return cpu_line(cpu, [(names[t], values[t]) for t in sorted(values) if t in names])


def proc_stats_lines(text: str) -> list[str]:
    """The fall-back output for the content of ``/proc/net/stat/nf_conntrack``.

    The first line names the columns (at most 64); every further line is one CPU, its
    tokens parsed as hexadecimal, numbered by a running counter from 0.
    """
    lines = text.split("\n")
    names = lines[0].split()[:64] if lines else []
    out = []
    for i, line in enumerate(ln for ln in lines[1:] if ln.strip()):
        vals = [int(tok, 16) for tok in line.split()]
        out.append(cpu_line(i, zip(names, vals)))
    return out


def parse_global_entries(msg: bytes | memoryview, off: int = 0) -> int | None:
    """``CTA_STATS_GLOBAL_ENTRIES`` of an ``IPCTNL_MSG_CT_GET_STATS`` reply, or None."""
    ln = struct.unpack_from("=I", msg, off)[0]
    pos, end = off + 20, off + ln
    while pos + 4 <= end:
        alen, atype = _ATTR.unpack_from(msg, pos)
        if alen < 4:
            break
        if atype & 0x3FFF == 1 and alen == 8:
            return _BE32.unpack_from(msg, pos + 4)[0]
        pos += (alen + 3) & ~3
    return None


def count_line(n: int) -> str:
    """``-C``: the number as a signed 32-bit decimal and a newline."""
    n &= 0xFFFFFFFF
    return f"{n - (1 << 32) if n >= 1 << 31 else n}\n"


__all__ = ["cpu_line", "parse_cpu_stats", "format_cpu_stats", "format_stats_values",
           "proc_stats_lines", "parse_global_entries", "count_line", "StatsAttrError",
           "CPU_NAMES", "EXP_NAMES", "PROC_STATS"]
