"""Conntrack and expectations over ctnetlink: schema, model, codecs, client, formats.

The public names are available from the package itself and loaded on first use, so
``import ctnetlink`` costs next to nothing and a program pays only for what it uses::

    import ctnetlink

    with ctnetlink.Conntrack() as ct:
        orig = ctnetlink.Tuple(src="10.0.0.1", dst="10.0.0.2", proto=6, sport=1, dport=2)
        ct.create(ctnetlink.Flow(orig=orig, timeout=300, tcp_state="ESTABLISHED"))

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


# --- the public names, imported on first use ------------------------------------------

_EXPORTS = {
    "Conntrack": "client",
    "AsyncConntrack": "aio",
    "Filter": "filters",
    "decode_flow": "decode",
    "decode_expect": "decode",
    "FlowKey": "tracking",
    "ExpectKey": "tracking",
    **dict.fromkeys((
        "Flow", "Tuple", "Expect", "Event", "Counters",
        "Timestamp", "NatRange", "SeqAdj", "Synproxy", "TcpInfo", "SctpInfo", "DccpInfo",
        "CpuStats"), "model"),
    **dict.fromkeys(("EventType", "Status", "TcpState", "SctpState", "DccpState", "Group",
                     "CtMsg", "ExpMsg"), "enums"),
    **dict.fromkeys((
        "ConntrackError", "FlowExists", "FlowNotFound", "PermissionDenied", "InvalidArgument",
        "NotSupported", "Expired", "OutOfMemory", "Busy", "NoSpace"), "errors"),
}
__all__ = sorted(_EXPORTS)

TYPE_CHECKING = False
if TYPE_CHECKING:  # for type checkers and editors: the same names, eagerly
    from .aio import AsyncConntrack  # noqa: F401
    from .client import Conntrack  # noqa: F401
    from .decode import decode_expect, decode_flow  # noqa: F401
    from .enums import (  # noqa: F401
        CtMsg, DccpState, EventType, ExpMsg, Group, SctpState, Status, TcpState,
    )
    from .errors import (  # noqa: F401
        Busy, ConntrackError, Expired, FlowExists, FlowNotFound, InvalidArgument, NoSpace,
        NotSupported, OutOfMemory, PermissionDenied,
    )
    from .filters import Filter  # noqa: F401
    from .model import (  # noqa: F401
        Counters, CpuStats, DccpInfo, Event, Expect, Flow, NatRange, SctpInfo, SeqAdj,
        Synproxy, TcpInfo, Timestamp, Tuple,
    )
    from .tracking import ExpectKey, FlowKey  # noqa: F401


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
