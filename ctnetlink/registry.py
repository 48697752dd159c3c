"""ctnetlink's registration with :mod:`nfnl.registry`: how generic tooling names its messages.

Imported by :func:`nfnl.registry.discover` through the ``nfnl.subsystems`` entry point
(``pyproject.toml``), never by nfnl by name. Registers the conntrack (subsystem 1) and
expectation (subsystem 2) message types with the tables of ``_compiled`` and the one
message type whose body is told by its content (0x0103, see :func:`ctrzero_or_exp_stats`).
"""
from __future__ import annotations

from nfnl.registry import Subsystem, register

from . import _compiled as C
from .constants import IPCTNL_MSG_CT_GET_CTRZERO


def ctrzero_or_exp_stats(buf: bytes | memoryview, off: int, ln: int) -> tuple[str, str]:
    """0x0103 is both a GET_CTRZERO dump entry and, because the kernel builds expectation
    statistics replies with the conntrack subsystem, an EXP_GET_STATS_CPU reply. Entries
    start with a nested tuple; statistics with plain 32-bit counters."""
    if ln >= 24 and buf[off + 23] & 0x80:
        return "IPCTNL_MSG_CT_GET_CTRZERO", "ctattr_type"
    if ln == 20:
        return "IPCTNL_MSG_CT_GET_CTRZERO", "ctattr_type"
    return "IPCTNL_MSG_EXP_GET_STATS_CPU", "ctattr_expect_stats"


SUBSYSTEM = register(Subsystem(
    "ctnetlink", attrs=C.ATTRS, messages=C.MESSAGES,
    resolvers={IPCTNL_MSG_CT_GET_CTRZERO: ctrzero_or_exp_stats},
    structs=C.STRUCTS, body_names=C.BODY_NAMES))
