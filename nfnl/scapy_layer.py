"""Scapy layers for netlink captures: cooked header, Netlink, NfGenMsg and subsystem attributes.

Load with ``import nfnl.scapy_layer`` (the only module of the project that imports scapy); it
registers :class:`NetlinkCooked` for LINKTYPE_NETLINK (253), so ``rdpcap("x.pcap")`` shows
``NetlinkCooked / Netlink / NfGenMsg / CTA / Netlink / ...`` — one ``Netlink`` (nlmsghdr) per
message, followed by its body: ``NfGenMsg`` and an attribute-list layer named after the schema's
message set (``CTA``, ``CTA_EXPECT``, ``CTA_STATS_CPU``, ...), or ``NlMsgErr`` / ``NlMsgDone``.
Attributes are packets named after their kernel constants (``CTA_TUPLE_ORIG``, ``CTA_MARK``,
...), nested ones holding ``attrs``, leaves a ``value``; every class is generated from the same
tables the runtime decoder uses: those of the netfilter subsystems registered with
:mod:`nfnl.registry` (discovered when this module loads: ctnetlink through its entry point)
and ``nfnl._compiled.ATTRS``, never listed by hand.  Crafting works the same way::

    Netlink(nlmsg_type="IPCTNL_MSG_CT_GET", nlmsg_flags="REQUEST|ACK") / NfGenMsg(nfgen_family=2)
        / CTA(attrs=[CTA_TUPLE_ORIG(attrs=[CTA_TUPLE_IP(attrs=[CTA_IP_V4_SRC(value="192.0.2.1")])]),
                     CTA_MARK(value=7)])

Lengths, the NLA_F_NESTED flag and padding are filled in when building; :func:`to_python`
turns an attribute list into the ``[(name, value)]`` form of ``AttrList.to_python()``.
(Scapy's own extension loader needs a ``scapy_ext`` hook in every top-level package of the
distribution, so this module is loaded by importing it.)
"""
from __future__ import annotations

import ipaddress
import struct
import sys
from typing import Any, Callable

from scapy.config import conf
from scapy.fields import (
    ByteEnumField, ByteField, EnumField, Field, IP6Field, IPField, PacketListField, ShortEnumField,
    ShortField, StrFixedLenField, StrLenField, StrNullField, XShortField, XStrLenField,
)
from scapy.packet import NoPayload, Packet, Padding, Raw, bind_layers

from . import _compiled as _nl
from . import registry
from .conversation import flag_names

LINKTYPE_NETLINK = 253
NLA_F_NESTED = 0x8000
NLA_F_NET_BYTEORDER = 0x4000
_NLA_TYPE_MASK = 0x3FFF
_BIT_ORDER = -16 if sys.byteorder == "little" else 16

NETLINK_PROTOCOLS = {0: "NETLINK_ROUTE", 4: "NETLINK_SOCK_DIAG", 12: "NETLINK_NETFILTER",
                     16: "NETLINK_GENERIC"}
PACKET_TYPES = {0: "to-us", 1: "broadcast", 2: "multicast", 3: "to-other-host", 4: "sent-by-us",
                6: "to-user", 7: "to-kernel"}
_SUBSYSTEMS = [sub for sub in registry.discover() if sub.protocol == 12]
"""The NETLINK_NETFILTER subsystems whose messages get layers (registered at import)."""
MESSAGE_NAMES = {1: "NLMSG_NOOP", 2: "NLMSG_ERROR", 3: "NLMSG_DONE", 4: "NLMSG_OVERRUN",
                 **{mtype: name for sub in _SUBSYSTEMS for mtype, (name, _) in sub.messages.items()}}
FAMILIES = {0: "AF_UNSPEC", 2: "AF_INET", 7: "AF_BRIDGE", 10: "AF_INET6"}
_FLAG_BITS = {"REQUEST": 0x1, "MULTI": 0x2, "ACK": 0x4, "ECHO": 0x8, "DUMP_INTR": 0x10,
              "DUMP_FILTERED": 0x20, "ROOT": 0x100, "MATCH": 0x200, "ATOMIC": 0x400,
              "DUMP": 0x300, "REPLACE": 0x100, "EXCL": 0x200, "CREATE": 0x400, "APPEND": 0x800,
              "CAPPED": 0x100, "ACK_TLVS": 0x200}


def _align(n: int) -> int:
    return (n + 3) & ~3


class NlmFlagsField(Field):
    """``nlmsg_flags`` in host order; shown and accepted as ``REQUEST|DUMP`` (or ``+``)."""

    def __init__(self, name: str, default: int) -> None:
        super().__init__(name, default, fmt="=H")

    def any2i(self, pkt: Any, x: Any) -> Any:
        if isinstance(x, str):
            value = 0
            for part in x.replace("+", "|").split("|"):
                part = part.strip().upper().removeprefix("NLM_F_")
                value |= _FLAG_BITS[part] if part in _FLAG_BITS else int(part, 0)
            return value
        return x

    def i2repr(self, pkt: Any, x: Any) -> str:
        mtype = getattr(pkt, "nlmsg_type", 0) if pkt is not None else 0
        return flag_names(mtype or 0, x or 0)


class NlaTypeField(Field):
    """``nla_type`` in host order; shown with its NESTED / NET_BYTEORDER bits spelled out."""

    def __init__(self, name: str, default: int) -> None:
        super().__init__(name, default, fmt="=H")

    def i2repr(self, pkt: Any, x: Any) -> str:
        x = x or 0
        flags = [n for bit, n in ((NLA_F_NESTED, "NESTED"), (NLA_F_NET_BYTEORDER, "NET_BYTEORDER"))
                 if x & bit]
        return "|".join([str(x & _NLA_TYPE_MASK), *flags])


def _owner_len(pkt: Packet) -> int:
    """``nlmsg_len`` of the Netlink message a body layer belongs to."""
    p = pkt.underlayer
    while p is not None and not isinstance(p, Netlink):
        p = p.underlayer
    return p.nlmsg_len if p is not None and p.nlmsg_len is not None else 0


class _NextMessage:
    """Body layers end their message: whatever follows is the next Netlink message."""

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        return Netlink if len(payload) >= 16 else Padding


# --- attributes --------------------------------------------------------------------------------

class NLA(Packet):
    """A netlink attribute the schema does not know (or whose payload does not fit it)."""

    name = "NLA"
    attr_name: str | None = None
    kind = "bytes"
    fmt: str | None = None
    child: str | None = None
    fields_desc = [
        Field("nla_len", None, fmt="=H"),
        NlaTypeField("nla_type", 0),
        XStrLenField("value", b"", length_from=lambda p: max((p.nla_len or 4) - 4, 0)),
        StrLenField("pad", None, length_from=lambda p: (-(p.nla_len or 0)) % 4),
    ]

    def post_build(self, pkt: bytes, pay: bytes) -> bytes:
        pad = self.pad
        core = pkt[:len(pkt) - len(pad)] if pad is not None else pkt
        if self.nla_len is None:
            core = struct.pack("=H", len(core)) + core[2:]
        return core + (pad if pad is not None else b"\0" * (-len(core) % 4)) + pay

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s

    def python_value(self) -> Any:
        """The value as ``nfnl.codec`` decodes it (int, tuple, address, str, bytes, list)."""
        if self.kind == "nested":
            return to_python(self.attrs)
        if self.kind in ("ipv4", "ipv6"):
            return ipaddress.ip_address(self.value)
        if self.kind == "string":
            return self.value.decode()
        if self.kind == "flag":
            return True
        if self.kind == "struct":
            return tuple(getattr(self, f.name) for f in self.fields_desc[2:-1])
        return bytes(self.value) if isinstance(self.value, (bytes, bytearray)) else self.value


def to_python(attrs: list[Packet]) -> list[tuple[Any, Any]]:
    """``[(name or type, value)]`` like :meth:`nfnl.codec.AttrList.to_python`."""
    return [(a.name if type(a) is not NLA else (a.nla_type or 0) & _NLA_TYPE_MASK, a.python_value())
            for a in attrs if isinstance(a, NLA)]


def _fits(cls: type[NLA], payload: bytes) -> bool:
    """Whether ``payload`` decodes with the declaration (else it is kept raw, like the codec)."""
    if cls.kind == "nested" or cls.kind == "bytes" and not cls.fmt:
        return True
    if cls.kind == "flag":
        return not payload
    if cls.kind == "string":
        if not payload or payload[-1] != 0 or 0 in payload[:-1]:
            return False
        try:
            payload.decode()
        except UnicodeDecodeError:
            return False
        return True
    return struct.calcsize(cls.fmt) == len(payload)


ATTR_SETS: dict[str, dict[int, type[NLA]]] = {}
"""Attribute classes by set name and attribute type, generated from the compiled tables."""


def dispatcher(set_name: str | None) -> Callable[..., Packet]:
    """The class chooser for a list of attributes of ``set_name``."""

    def dispatch(data: bytes, _parent: Packet | None = None, **kw: Any) -> Packet:
        if len(data) >= 4:
            ln, rtype = struct.unpack_from("=HH", data)
            cls = ATTR_SETS.get(set_name or "", {}).get(rtype & _NLA_TYPE_MASK)
            if cls is not None and ln >= 4:
                if not _fits(cls, data[4:ln]):
                    cls = _raw_variant(cls)
                return cls(data, _parent=_parent)
        return NLA(data, _parent=_parent)

    return dispatch


_RAW_VARIANTS: dict[type[NLA], type[NLA]] = {}


def _raw_variant(cls: type[NLA]) -> type[NLA]:
    """A known attribute whose payload does not fit its declaration: named, value kept raw."""
    raw = _RAW_VARIANTS.get(cls)
    if raw is None:
        raw = _RAW_VARIANTS[cls] = type(f"{cls.__name__}_RAW", (NLA,), {
            "name": cls.attr_name, "attr_name": cls.attr_name, "__module__": __name__})
    return raw


def _value_fields(kind: str, fmt: str | None, child: str | None,
                  struct_names: tuple[str, ...] | None = None) -> list[Field]:
    length = lambda p: max((p.nla_len or 4) - 4, 0)  # noqa: E731
    if kind == "nested":
        return [PacketListField("attrs", [], dispatcher(child), length_from=length)]
    if kind == "ipv4":
        return [IPField("value", "0.0.0.0")]
    if kind == "ipv6":
        return [IP6Field("value", "::")]
    if kind == "string":
        return [StrNullField("value", b"")]
    if kind == "flag":
        return []
    if kind == "struct":
        assert fmt is not None
        names = struct_names or [f"v{i}" for i in range(len(fmt) - 1)]
        return [Field(n, 0, fmt=fmt[0] + c) for n, c in zip(names, fmt[1:])]
    if kind == "bytes":
        if fmt:
            return [StrFixedLenField("value", b"", struct.calcsize(fmt))]
        return [XStrLenField("value", b"", length_from=length)]
    assert fmt is not None
    return [Field("value", 0, fmt=fmt)]


def _make_attr_classes(tables: dict[str, dict[int, tuple]], names: dict[str, type],
                       structs: dict[str, dict[int, tuple[str, ...]]]) -> None:
    for set_name, rows in tables.items():
        classes = ATTR_SETS.setdefault(set_name, {})
        for atype, (attr_name, kind, fmt, child) in rows.items():
            cls_name = attr_name if attr_name not in names else f"{attr_name}__{set_name}"
            default_type = atype | (NLA_F_NESTED if kind == "nested" else 0)
            cls = type(cls_name, (NLA,), {
                "name": attr_name, "attr_name": attr_name, "kind": kind, "fmt": fmt, "child": child,
                "__module__": __name__,
                "fields_desc": [Field("nla_len", None, fmt="=H"),
                                NlaTypeField("nla_type", default_type),
                                *_value_fields(kind, fmt, child,
                                               structs.get(set_name, {}).get(atype)),
                                StrLenField("pad", None,
                                            length_from=lambda p: (-(p.nla_len or 0)) % 4)],
            })
            classes[atype] = names[cls_name] = cls


# --- messages ----------------------------------------------------------------------------------

class NetlinkCooked(Packet):
    """The 16-byte header of LINKTYPE_NETLINK captures (as ``tcpdump -i nlmon0`` writes it)."""

    name = "Netlink cooked header"
    fields_desc = [ShortEnumField("pkttype", 4, PACKET_TYPES),
                   XShortField("hatype", 824),
                   ShortField("halen", 0),
                   StrFixedLenField("addr", b"", 8),
                   ShortEnumField("protocol", 12, NETLINK_PROTOCOLS)]

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        return Netlink if len(payload) >= 16 else Padding


class Netlink(Packet):
    """``struct nlmsghdr`` (host byte order); its body layers follow, then the next message."""

    name = "Netlink"
    fields_desc = [Field("nlmsg_len", None, fmt="=I"),
                   EnumField("nlmsg_type", 0, MESSAGE_NAMES, fmt="=H"),
                   NlmFlagsField("nlmsg_flags", 0),
                   Field("nlmsg_seq", 0, fmt="=I"),
                   Field("nlmsg_pid", 0, fmt="=I")]

    def post_build(self, pkt: bytes, pay: bytes) -> bytes:
        if self.nlmsg_len is None:
            layer, tail = self.payload, 0
            while not isinstance(layer, NoPayload):
                if isinstance(layer, Netlink):
                    tail = len(bytes(layer))
                    break
                layer = layer.payload
            pkt = struct.pack("=I", len(pkt) + len(pay) - tail) + pkt[4:]
        return pkt + pay

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        if self.nlmsg_type == 2:
            return NlMsgErr
        if self.nlmsg_type == 3:
            return NlMsgDone
        cooked = self.firstlayer()
        if isinstance(cooked, NetlinkCooked) and cooked.protocol != 12:
            return Raw
        if self.nlmsg_type >= 0x10 and (self.nlmsg_len or 0) >= 20:
            return NfGenMsg
        return _Body if (self.nlmsg_len or 0) > 16 else Netlink


class NfGenMsg(Packet):
    """``struct nfgenmsg``: address family, version, resource id (big endian)."""

    name = "NfGenMsg"
    fields_desc = [ByteEnumField("nfgen_family", 0, FAMILIES),
                   ByteField("version", 0),
                   ShortField("res_id", 0)]

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        owner = self.underlayer
        mtype = getattr(owner, "nlmsg_type", None)
        spec = registry.message(mtype) if mtype is not None else None
        resolver = spec.resolver if spec is not None else None
        if resolver is not None and owner is not None:
            # the kernel reuses some types for two bodies (0x0103: GET_CTRZERO entries and
            # expectation statistics): pick the body by content, as nfnl.message does
            ln = owner.nlmsg_len or 20 + len(payload)
            head = struct.pack("=IHHII", ln, mtype, owner.nlmsg_flags or 0, owner.nlmsg_seq or 0,
                               owner.nlmsg_pid or 0)
            head += struct.pack("!BBH", self.nfgen_family or 0, self.version or 0,
                                self.res_id or 0)
            set_name = resolver(head + payload[:max(ln - 20, 0)], 0, ln)[1]
            cls = _BODY_BY_SET.get(set_name)
            if cls is not None:
                return cls
        return BODIES.get(mtype, NfAttrs)


class NfAttrs(_NextMessage, Packet):
    """The attributes of an nfnetlink message whose type has no registered schema."""

    name = "nfnetlink attributes"
    set_name: str | None = None
    fields_desc = [PacketListField("attrs", [], dispatcher(None),
                                   length_from=lambda p: max(_owner_len(p) - 20, 0))]


class _Body(_NextMessage, Packet):
    name = "Netlink payload"
    fields_desc = [XStrLenField("data", b"", length_from=lambda p: max(_align(_owner_len(p)) - 16, 0))]


def _req_payload_len(p: Packet) -> int:
    owner = p.underlayer
    if owner is not None and owner.nlmsg_flags & 0x100:  # NLM_F_CAPPED
        return 0
    room = _owner_len(p) - 20 - 16
    return max(0, min((p.req_len or 16) - 16, room))


class NlMsgErr(_NextMessage, Packet):
    """``struct nlmsgerr``: errno (0 = ACK), the echoed request, extended-ack attributes."""

    name = "NlMsgErr"
    fields_desc = [Field("error", 0, fmt="=i"),
                   Field("req_len", 16, fmt="=I"),
                   EnumField("req_type", 0, MESSAGE_NAMES, fmt="=H"),
                   NlmFlagsField("req_flags", 0),
                   Field("req_seq", 0, fmt="=I"),
                   Field("req_pid", 0, fmt="=I"),
                   XStrLenField("req_payload", b"", length_from=_req_payload_len),
                   StrLenField("req_pad", b"", length_from=lambda p: -len(p.req_payload) % 4),
                   PacketListField("ext_ack", [], dispatcher("nlmsgerr_attrs"), length_from=lambda p: max(
                       _owner_len(p) - 36 - _align(len(p.req_payload)), 0))]


class NlMsgDone(_NextMessage, Packet):
    """The NLMSG_DONE body: the dump's status (and anything after it, raw)."""

    name = "NlMsgDone"
    fields_desc = [Field("status", 0, fmt="=i"),
                   XStrLenField("rest", b"", length_from=lambda p: max(_owner_len(p) - 20, 0))]


def _body_class(set_name: str, cls_name: str) -> type[Packet]:
    return type(cls_name, (NfAttrs,), {
        "name": cls_name, "set_name": set_name, "__module__": __name__,
        "fields_desc": [PacketListField("attrs", [], dispatcher(set_name),
                                        length_from=lambda p: max(_owner_len(p) - 20, 0))],
    })


_generated: dict[str, type] = {}
_make_attr_classes(_nl.ATTRS, _generated, {})
for _sub in _SUBSYSTEMS:
    _make_attr_classes(_sub.attrs, _generated, _sub.structs)
BODIES: dict[int, type[Packet]] = {}
for _sub in _SUBSYSTEMS:
    for _mtype, (_, _set) in _sub.messages.items():
        _cls_name = _sub.body_names.get(_set, _set)
        if _cls_name in _generated and getattr(_generated[_cls_name], "set_name", None) != _set:
            _cls_name = f"{_cls_name}_BODY"
        if _cls_name not in _generated:
            _generated[_cls_name] = _body_class(_set, _cls_name)
        BODIES[_mtype] = _generated[_cls_name]
_BODY_BY_SET: dict[str, type[Packet]] = {}
for _cls in BODIES.values():
    _BODY_BY_SET.setdefault(getattr(_cls, "set_name", None), _cls)
globals().update(_generated)
__all__ = ["NetlinkCooked", "Netlink", "NfGenMsg", "NfAttrs", "NlMsgErr", "NlMsgDone", "NLA",
           "to_python", "dispatcher", "ATTR_SETS", "BODIES", *sorted(_generated)]

conf.l2types.register(LINKTYPE_NETLINK, NetlinkCooked)
bind_layers(NetlinkCooked, Netlink, protocol=12)
