"""What the command line asks of the output formats: the format module (``-o xml``,
``save``, ``json`` or the default text), the :class:`ctnetlink.formats.Options` of the
``-o`` flags and the label map, and the clock outputs are computed against (the real
one, or a fixed time from ``CONNTRACK_NOW`` when a recorded run is replayed).
"""
from __future__ import annotations

import os

from .invocation import Invocation, OutputFlag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_FIXED_CLOCKS: dict[str, Callable[[], float]] = {}


def output_clock() -> Callable[[], float] | None:
    """The clock outputs are computed against (``delta-time``, ``<when>``, ``-o
    timestamp``): None for the real one, or a fixed time when the environment variable
    ``CONNTRACK_NOW`` holds seconds since the epoch (replaying a recorded run)."""
    now = os.environ.get("CONNTRACK_NOW")
    if not now:
        return None
    clock = _FIXED_CLOCKS.get(now)
    if clock is None:
        value = float(now)
        clock = _FIXED_CLOCKS[now] = lambda: value
    return clock


def fixed_now() -> float | None:
    """The fixed time of :func:`output_clock`, or None for the real clock."""
    clock = output_clock()
    return None if clock is None else clock()


def _labels(inv: Invocation):
    lm = inv.label_map
    return None if lm is None else dict(lm.names)


def fmt_options(inv: Invocation, *, event: int | None = None, ktimestamp: bool = True,
                labels: bool = True, save_prefix: str | None = None):
    """The :class:`ctnetlink.formats.Options` of the invocation's ``-o`` flags."""
    from ctnetlink.formats import Options

    o = inv.output
    return Options(extended=bool(o & OutputFlag.EXTENDED), id=bool(o & OutputFlag.ID),
                   ktimestamp=ktimestamp and bool(o & OutputFlag.KTIMESTAMP),
                   timestamp=bool(o & OutputFlag.TIMESTAMP),
                   labels=_labels(inv) if labels else None, event=event,
                   save_prefix=save_prefix, clock=output_clock())


def format_module(inv: Invocation):
    """The :mod:`ctnetlink.formats` module of the ``-o`` output type."""
    o = inv.output
    if o & OutputFlag.JSON:
        from ctnetlink.formats import json as mod
    elif o & OutputFlag.SAVE:
        from ctnetlink.formats import save as mod
    elif o & OutputFlag.XML:
        from ctnetlink.formats import xml as mod
    else:
        from ctnetlink.formats import text as mod
    return mod
