"""Conntrack and expectations over ctnetlink: schema, model, codecs, client, formats.

The public names are available from the package itself and loaded on first use, so
``import ctnetlink`` costs next to nothing and a program pays only for what it uses::

    import ctnetlink

    with ctnetlink.Conntrack() as ct:
        orig = ctnetlink.Tuple(src="10.0.0.1", dst="10.0.0.2", proto=6, sport=1, dport=2)
        ct.create(ctnetlink.Flow(orig=orig, timeout=300, tcp_state="ESTABLISHED"))

Generic netlink tooling (pretty printing, replay, pcap decoding, the scapy layer) names
ctnetlink's messages through :mod:`ctnetlink.registry`, which ``nfnl.registry`` finds
through the ``nfnl.subsystems`` entry point: importing the package registers nothing.
"""

# --- the public names, imported on first use ------------------------------------------

_EXPORTS = {
    "Conntrack": "client",
    "AsyncConntrack": "aio",
    "Filter": "filters",
    "EventReader": "events",
    "RawEvent": "events",
    "Listener": "listen",
    "decode_flow": "decode",
    "decode_expect": "decode",
    **dict.fromkeys((
        "Flow", "FlowKey", "Tuple", "Expect", "ExpectKey", "Event", "Counters",
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
    from .events import EventReader, RawEvent  # noqa: F401
    from .listen import Listener  # noqa: F401
    from .errors import (  # noqa: F401
        Busy, ConntrackError, Expired, FlowExists, FlowNotFound, InvalidArgument, NoSpace,
        NotSupported, OutOfMemory, PermissionDenied,
    )
    from .filters import Filter  # noqa: F401
    from .model import (  # noqa: F401
        Counters, CpuStats, DccpInfo, Event, Expect, ExpectKey, Flow, FlowKey, NatRange,
        SctpInfo, SeqAdj, Synproxy, TcpInfo, Timestamp, Tuple,
    )


from nfnl.lazy import lazy_exports  # noqa: E402

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
