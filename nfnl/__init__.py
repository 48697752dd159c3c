"""Generic netlink and nfnetlink: messages, attributes, the socket, pcap capture/replay.

Nothing here knows about conntrack; subsystems (:mod:`ctnetlink`) register their message
schemas with :mod:`nfnl.registry`. The public names are available from the package and loaded on first use
(``nfnl.NetlinkSocket``, ``nfnl.build_nfnl``, ``nfnl.nla_u32`` ...), so importing
``nfnl`` costs nothing until a name is used.
"""

_EXPORTS = {
    "NetlinkSocket": "socket",
    **dict.fromkeys(("NetlinkError", "NetlinkDecodeError", "DumpInterrupted"), "errors"),
    **dict.fromkeys(("Message", "DumpReader", "build_message", "build_nfnl", "decode_message",
                     "decode_datagram", "encode_message", "iter_messages"), "message"),
    **dict.fromkeys(("Subsystem", "register", "discover"), "registry"),
    **dict.fromkeys(("Attribute", "AttrList", "decode_attrs", "encode_attrs", "iter_raw_attrs",
                     "nla", "nla_nest", "nla_u8", "nla_u16", "nla_u32", "nla_u64",
                     "nla_string"), "codec"),
    **dict.fromkeys(("NlmFlag", "Subsys"), "enums"),
    **dict.fromkeys(("PcapWriter", "Packet", "PcapError", "read_pcap"), "pcap"),
    **dict.fromkeys(("Attr", "AttrSet"), "attrs"),
}
__all__ = sorted(_EXPORTS)

TYPE_CHECKING = False
if TYPE_CHECKING:  # for type checkers and editors: the same names, eagerly
    from .attrs import Attr, AttrSet  # noqa: F401
    from .codec import (  # noqa: F401
        AttrList, Attribute, decode_attrs, encode_attrs, iter_raw_attrs, nla, nla_nest,
        nla_string, nla_u8, nla_u16, nla_u32, nla_u64,
    )
    from .enums import NlmFlag, Subsys  # noqa: F401
    from .errors import DumpInterrupted, NetlinkDecodeError, NetlinkError  # noqa: F401
    from .message import (  # noqa: F401
        DumpReader, Message, build_message, build_nfnl, decode_datagram, decode_message,
        encode_message, iter_messages,
    )
    from .registry import Subsystem, discover, register  # noqa: F401
    from .pcap import Packet, PcapError, PcapWriter, read_pcap  # noqa: F401
    from .socket import NetlinkSocket  # noqa: F401


from .lazy import lazy_exports  # noqa: E402

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
