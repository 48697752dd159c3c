"""Conntrack and expectations over ctnetlink: schema, model, codecs, client, formats.

Importing the package registers the ctnetlink message schemas with :mod:`nfnl.message`
so that generic tooling (pretty printing, replay, pcap decoding) names every attribute.
"""
from nfnl.message import register_message as _register

from . import _compiled


def _ctrzero_or_exp_stats(buf, off: int, ln: int) -> tuple[str, str]:
    """0x0103 is both a GET_CTRZERO dump entry and, because the kernel builds expectation
    statistics replies with the conntrack subsystem, an EXP_GET_STATS_CPU reply. Entries
    start with a nested tuple; statistics with plain 32-bit counters."""
    if ln >= 24 and buf[off + 23] & 0x80:
        return "IPCTNL_MSG_CT_GET_CTRZERO", "ctattr_type"
    if ln == 20:
        return "IPCTNL_MSG_CT_GET_CTRZERO", "ctattr_type"
    return "IPCTNL_MSG_EXP_GET_STATS_CPU", "ctattr_expect_stats"


for _mtype, (_name, _set) in _compiled.MESSAGES.items():
    _register(_mtype, _name, _compiled.ATTRS, _set,
              _ctrzero_or_exp_stats if _mtype == 0x103 else None)
del _mtype, _name, _set
