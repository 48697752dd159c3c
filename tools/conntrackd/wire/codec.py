"""Sync messages <-> bytes, and Flow / Expect <-> message payloads, as conntrackd 1.4.7 does.

:class:`SyncMessage` is one message (type, flags, seq, the ACK/NACK range, the payload).
:func:`walk` frames a datagram the way the C receiver does (framing errors end the
datagram, a wrong version skips one message) and leaves payloads undecoded, so a sync
state machine can look at the header first; :func:`decode_payload` then turns a state
message's attributes into a :class:`~ctnetlink.model.Flow` or
:class:`~ctnetlink.model.Expect`. :func:`decode_datagram` does both and is strict.
:func:`encode_flow` / :func:`encode_expect` build payloads from library objects as
the C sender's ``ct2msg``/``exp2msg`` do (same attributes, order and byte-order
quirks), and :func:`encode_message` / :func:`encode_datagram` / :func:`flow_message`
add the headers. Every problem with received bytes raises :class:`SyncDecodeError`,
whose ``reason`` names the C daemon's error counter.

The hot paths are compiled from the schema tables (``_compiled``, derived from
:mod:`.schema`; construct is not imported here): payloads decode through per-layout
shapes (:mod:`.shapes`), flows encode through generated encoders per flow kind
(:mod:`.flowenc`). The attribute-by-attribute versions they must equal stay here as
the reference: :func:`parse_attrs` + :func:`flow_from_attrs` and
:func:`encode_flow_reference`.
"""
from __future__ import annotations

import struct
from ipaddress import IPv4Address

from ctnetlink.decode import _ip, maker
from ctnetlink.model import DccpInfo, Expect, Flow, SctpInfo, SeqAdj, Synproxy, TcpInfo, Tuple

from . import _compiled as C
from . import constants as K
from . import flowenc
from .errors import SyncDecodeError
from .flowenc import labels_payload
from .shapes import ICMP_REPLY, ICMPV6_REPLY, Decoder, flow_builder, slots_builder

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "SyncDecodeError", "SyncMessage", "walk", "decode_datagram", "decode_payload",
    "encode_message", "encode_datagram", "encode_flow", "encode_expect", "flow_from_attrs",
    "expect_from_attrs", "reply_tuple", "nat_attributes", "l4_values", "sender_reply_l4",
]


# --- the message model -------------------------------------------------------------------

class SyncMessage:
    """One sync message.

    ``type`` is a ``NET_T_*`` number, ``flags`` the ``NET_F_*`` bits, ``seq`` the sender's
    sequence number; ``from_seq``/``to_seq`` the inclusive range of an ACK or NACK (0/0 in
    a RESYNC; None for the 8-byte header). ``payload`` is a :class:`Flow` (types 0-2), an
    :class:`Expect` (3-5), raw attribute ``bytes`` (as :func:`walk` leaves it) or None
    for control messages. ``version`` is the protocol version the message carried.
    """

    __slots__ = ("type", "flags", "seq", "from_seq", "to_seq", "payload", "version")

    def __init__(self, type: int, flags: int = 0, seq: int = 0, payload=None,
                 from_seq: int | None = None, to_seq: int | None = None, *,
                 version: int = K.PROTOCOL_VERSION) -> None:
        self.type = type
        self.flags = flags
        self.seq = seq
        self.payload = payload
        self.from_seq = from_seq
        self.to_seq = to_seq
        self.version = version

    # constructors of the control messages -----------------------------------------
    @classmethod
    def ack(cls, seq: int, from_seq: int, to_seq: int, flags: int = 0) -> "SyncMessage":
        return cls(K.NET_T_CTL, K.NET_F_ACK | flags, seq, None, from_seq, to_seq)

    @classmethod
    def nack(cls, seq: int, from_seq: int, to_seq: int, flags: int = 0) -> "SyncMessage":
        return cls(K.NET_T_CTL, K.NET_F_NACK | flags, seq, None, from_seq, to_seq)

    @classmethod
    def resync(cls, seq: int, flags: int = 0) -> "SyncMessage":
        return cls(K.NET_T_CTL, K.NET_F_RESYNC | flags, seq, None, 0, 0)

    @classmethod
    def alive(cls, seq: int, flags: int = 0) -> "SyncMessage":
        return cls(K.NET_T_CTL, K.NET_F_ALIVE | flags, seq)

    # classification (the C daemon's IS_* macros) ---------------------------------------
    @property
    def is_data(self) -> bool:
        return K.is_data(self.type, self.flags)

    @property
    def is_ack(self) -> bool:
        return self.type == K.NET_T_CTL and bool(self.flags & K.NET_F_ACK)

    @property
    def is_nack(self) -> bool:
        return self.type == K.NET_T_CTL and bool(self.flags & K.NET_F_NACK)

    @property
    def is_resync(self) -> bool:
        return self.type == K.NET_T_CTL and bool(self.flags & K.NET_F_RESYNC)

    @property
    def is_alive(self) -> bool:
        return self.type == K.NET_T_CTL and bool(self.flags & K.NET_F_ALIVE)

    @property
    def is_ctl(self) -> bool:
        return self.is_ack or self.is_nack or self.is_resync or self.is_alive

    @property
    def has_range(self) -> bool:
        """Whether the message has the 16-byte header (ACK, NACK, RESYNC)."""
        return K.is_ack_nack_resync(self.type, self.flags)

    @property
    def hello(self) -> bool:
        return bool(self.flags & K.NET_F_HELLO)

    @property
    def hello_back(self) -> bool:
        return bool(self.flags & K.NET_F_HELLO_BACK)

    # value semantics -------------------------------------------------------------------
    def _key(self) -> tuple:
        return (self.type, self.flags, self.seq, self.from_seq, self.to_seq, self.payload,
                self.version)

    def __eq__(self, other: object) -> bool:
        if type(other) is not SyncMessage:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        parts = [K.TYPE_NAMES.get(self.type, str(self.type))]
        if self.flags:
            parts.append("|".join(K.flag_names(self.flags)))
        parts.append(f"seq={self.seq}")
        if self.from_seq is not None:
            parts.append(f"from={self.from_seq} to={self.to_seq}")
        if self.payload is not None:
            parts.append(repr(self.payload))
        if self.version != K.PROTOCOL_VERSION:
            parts.append(f"version={self.version}")
        return f"SyncMessage({', '.join(parts)})"

    def copy(self, **changes) -> "SyncMessage":
        new = SyncMessage(self.type, self.flags, self.seq, self.payload, self.from_seq,
                          self.to_seq, version=self.version)
        for k, v in changes.items():
            setattr(new, k, v)
        return new


# --- framing -------------------------------------------------------------------------------

_HDR = struct.Struct(C.NETHDR_FMT)
_mk_message = maker(SyncMessage)
_HDR_ACK = struct.Struct(C.NETHDR_ACK_FMT)
_NTA = struct.Struct(C.NETATTR_FMT)
_ACK_BITS = K.NET_F_ACK | K.NET_F_NACK | K.NET_F_RESYNC


def walk(data: bytes | bytearray | memoryview) -> Iterator[SyncMessage | SyncDecodeError]:
    """The messages of a datagram (or of a complete TCP chunk) in order, payloads left
    as ``bytes``, exactly as the C receiver frames them: a framing error (truncated
    header, bad length) is yielded and ends the walk; a message of another protocol
    version is yielded as a ``bad-version`` error and the walk goes on after it."""
    end = len(data)
    if end > K.MAX_DATAGRAM:
        yield SyncDecodeError(K.OVERSIZED, f"datagram of {end} bytes", 0)
        return
    off = 0
    unpack = _HDR.unpack_from
    mk = _mk_message
    while off < end:
        left = end - off
        if left < K.NETHDR_SIZ:
            yield SyncDecodeError(K.TRUNCATED, f"{left} bytes left for a header", off)
            return
        vt, flags, ln, seq = unpack(data, off)
        mtype = vt & 0x0F
        if ln == 0 or ln > left:
            yield SyncDecodeError(K.BAD_SIZE, f"message length {ln} with {left} bytes left", off)
            return
        frm = to = None
        if mtype == K.NET_T_CTL and flags & _ACK_BITS:
            if left < K.NETHDR_ACK_SIZ:
                yield SyncDecodeError(K.TRUNCATED, f"{left} bytes left for a control header", off)
                return
            if ln < K.NETHDR_ACK_SIZ:
                yield SyncDecodeError(K.BAD_SIZE, f"control message length {ln}", off)
                return
            _, _, _, _, frm, to = _HDR_ACK.unpack_from(data, off)
            body = bytes(data[off + K.NETHDR_ACK_SIZ:off + ln])
        else:
            if ln < K.NETHDR_SIZ:
                yield SyncDecodeError(K.BAD_SIZE, f"message length {ln}", off)
                return
            body = bytes(data[off + K.NETHDR_SIZ:off + ln])
        if vt >> 4 != K.PROTOCOL_VERSION:
            yield SyncDecodeError(K.BAD_VERSION, f"protocol version {vt >> 4}", off)
        else:
            yield mk(mtype, flags, seq, frm, to, body, 1)
        off += ln


def decode_payload(msg: SyncMessage, offset: int = 0) -> Flow | Expect | None:
    """The Flow (CT types) or Expect (EXP types) a message's raw attributes describe;
    None for a control message without attributes."""
    body = msg.payload
    if not isinstance(body, (bytes, bytearray, memoryview)):
        return body
    if msg.type <= K.NET_T_STATE_CT_DEL:
        return CT_DECODER.decode(body, 0, len(body), offset)
    if msg.type <= K.NET_T_STATE_MAX:
        return EXP_DECODER.decode(body, 0, len(body), offset)
    if msg.type == K.NET_T_CTL:
        return None
    raise SyncDecodeError(K.BAD_TYPE, f"message type {msg.type}", offset)


def decode_datagram(data: bytes | bytearray | memoryview) -> list[SyncMessage]:
    """Every message of a datagram with decoded payloads; the first problem raises
    (the checks and their order are those of :func:`walk` and :func:`decode_payload`)."""
    end = len(data)
    if end > K.MAX_DATAGRAM:
        raise SyncDecodeError(K.OVERSIZED, f"datagram of {end} bytes", 0)
    out = []
    ap = out.append
    off = 0
    unpack = _HDR.unpack_from
    ct = CT_DECODER.decode
    ct_shapes = CT_DECODER._shapes.get
    from_bytes = int.from_bytes
    mk = _mk_message
    while off < end:
        left = end - off
        if left < 8:
            raise SyncDecodeError(K.TRUNCATED, f"{left} bytes left for a header", off)
        vt, flags, ln, seq = unpack(data, off)
        if ln == 0 or ln > left:
            raise SyncDecodeError(K.BAD_SIZE, f"message length {ln} with {left} bytes left", off)
        mtype = vt & 0x0F
        if mtype == 10 and flags & _ACK_BITS:
            if left < 16:
                raise SyncDecodeError(K.TRUNCATED, f"{left} bytes left for a control header", off)
            if ln < 16:
                raise SyncDecodeError(K.BAD_SIZE, f"control message length {ln}", off)
            _, _, _, _, frm, to = _HDR_ACK.unpack_from(data, off)
            start = off + 16
        else:
            if ln < 8:
                raise SyncDecodeError(K.BAD_SIZE, f"message length {ln}", off)
            frm = to = None
            start = off + 8
        if vt >> 4 != K.PROTOCOL_VERSION:
            raise SyncDecodeError(K.BAD_VERSION, f"protocol version {vt >> 4}", off)
        if mtype <= 2:
            cands = ct_shapes(ln - 8)
            payload = None
            if cands is not None:  # CT_DECODER.decode, inline
                key = from_bytes(data[start:off + ln], "little")
                for sh in cands:
                    if key & sh.mask == sh.expected:
                        payload = sh.build(sh.unpack_from(data, start))
                        break
            if payload is None:
                payload = ct(data, start, off + ln, start)
        elif mtype <= 5:
            payload = EXP_DECODER.decode(data, start, off + ln, start)
        elif mtype == 10:
            payload = None
        else:
            raise SyncDecodeError(K.BAD_TYPE, f"message type {mtype}", start)
        ap(mk(mtype, flags, seq, frm, to, payload, 1))
        off += ln
    return out


# --- attributes -> values --------------------------------------------------------------------

def _table(rows: dict) -> list:
    """Per attribute number: (name, kind, unpack_from, exact nta_len, max nta_len)."""
    out = [None] * (max(rows) + 1)
    for n, (name, kind, fmt, exact, maximum) in rows.items():
        out[n] = (name, kind, struct.Struct(fmt).unpack_from if fmt else None, exact, maximum)
    return out


_CT_TABLE = _table(C.CT_ATTRS)
_EXP_TABLE = _table(C.EXP_ATTRS)


def parse_attrs(body: bytes, table: list, base: int = 0) -> list:
    """Validate and unpack an attribute list as the C receiver does: one slot per
    attribute number holding the unpacked values (a tuple; a ``str`` for names, a word
    tuple for labels), None where absent; a repeated attribute overwrites the earlier."""
    vals: list = [None] * len(table)
    n = len(table)
    off = 0
    end = len(body)
    unpack = _NTA.unpack_from
    while end - off > K.NTA_HDR_SIZ:
        ln, atype = unpack(body, off)
        if ln < K.NTA_HDR_SIZ or ln > end - off:
            raise SyncDecodeError(K.BAD_PAYLOAD, f"attribute length {ln}", base + off)
        if atype >= n:
            raise SyncDecodeError(K.BAD_PAYLOAD, f"attribute number {atype}", base + off)
        name, kind, unpack_value, exact, maximum = table[atype]
        if exact is not None:
            if ln != exact:
                raise SyncDecodeError(K.BAD_PAYLOAD, f"{name} of length {ln}, not {exact}",
                                      base + off)
            vals[atype] = unpack_value(body, off + 4)
        else:
            if ln > maximum:
                raise SyncDecodeError(K.BAD_PAYLOAD, f"{name} of length {ln} > {maximum}",
                                      base + off)
            raw = body[off + 4:off + ln]
            if kind == "string":
                vals[atype] = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
            else:
                if not raw or len(raw) % 4:
                    raise SyncDecodeError(K.BAD_PAYLOAD, f"{name} of length {ln}", base + off)
                vals[atype] = struct.unpack(f">{len(raw) // 4}I", raw)
        off += (ln + 3) & ~3
    return vals


def attr_list(body: bytes, expect: bool = False) -> list[tuple[str, object]]:
    """The attributes of a payload in wire order as ``(name, values)`` (for tests,
    tooling and the fixture JSON); validated like :func:`parse_attrs`."""
    table = _EXP_TABLE if expect else _CT_TABLE
    out = []
    off = 0
    while len(body) - off > K.NTA_HDR_SIZ:
        ln, atype = _NTA.unpack_from(body, off)
        one = parse_attrs(body[off:off + ((ln + 3) & ~3)], table, off)
        if atype < len(table) and one[atype] is not None:
            out.append((table[atype][0], one[atype]))
        off += (ln + 3) & ~3
    return out


# --- values -> Flow / Expect --------------------------------------------------------------------

def _constructor(cls: type):
    """A keyword constructor setting every field without conversion or validation
    (fields default None)."""
    mk = maker(cls)
    fields = cls._fields
    params = ", ".join(f"{s}=None" for s in fields)
    src = f"def make(*, {params}):\n    return _mk({', '.join(fields)})\n"
    ns = {"_mk": mk}
    exec(src, ns)  # noqa: S102 - generated from the model's field names only
    return ns["make"]


_mk_tuple = _constructor(Tuple)
_mk_flow = _constructor(Flow)
_mk_expect = _constructor(Expect)
_mk_tcp = _constructor(TcpInfo)
_mk_sctp = _constructor(SctpInfo)
_mk_dccp = _constructor(DccpInfo)
_mk_seqadj = _constructor(SeqAdj)
_mk_synproxy = _constructor(Synproxy)

PORT_PROTOS = frozenset((6, 17, 132, 33))
"""Protocols whose ports the C daemon puts in messages (its l4proto builders)."""


def reply_tuple(orig: Tuple) -> Tuple:
    """The reply tuple the kernel gives ``orig`` without NAT (libnetfilter_conntrack's
    ``NFCT_SOPT_SETUP_REPLY``): addresses and ports swapped, ICMP(v6) type inverted."""
    itype = orig.icmp_type
    if itype is not None:
        itype = (ICMPV6_REPLY if orig.proto == 58 else ICMP_REPLY).get(itype)
    return _mk_tuple(src=orig.dst, dst=orig.src, proto=orig.proto, sport=orig.dport,
                     dport=orig.sport, icmp_type=itype, icmp_code=orig.icmp_code,
                     icmp_id=orig.icmp_id)


def flow_from_attrs(v: list) -> Flow:
    """The Flow a conntrack message describes (slots from :func:`parse_attrs`).

    The original tuple, status, timeout, mark, zone, protocol info, helper, labels,
    master, sequence adjustment and synproxy are taken as sent; the reply tuple is the
    inverted original with the NAT attributes applied (SNAT_* sets the reply
    destination, DNAT_* the reply source), i.e. what the kernel holds for the flow."""
    family = None
    src = dst = None
    if v[0] is not None:
        family = 2
        src, dst = _ip(v[0][0]), _ip(v[0][1])
    if v[1] is not None:
        family = 10
        src, dst = _ip(v[1][0]), _ip(v[1][1])
    proto = v[2][0] if v[2] is not None else None
    sport = dport = itype = icode = iid = None
    if v[3] is not None:
        sport, dport = v[3]
    if v[22] is not None:
        itype = v[22][0]
    if v[23] is not None:
        icode = v[23][0]
    if v[24] is not None:
        iid = v[24][0]
    orig = _mk_tuple(src=src, dst=dst, proto=proto, sport=sport, dport=dport, icmp_type=itype,
                     icmp_code=icode, icmp_id=iid)
    reply = reply_tuple(orig)
    nat: dict = {}
    nat4 = v[12], v[13]
    if nat4[0] is not None:
        nat["dst"] = _ip(nat4[0][0])
    if nat4[1] is not None:
        nat["src"] = _ip(nat4[1][0])
    if v[29] is not None:
        nat["dst"] = _ip(v[29][0])
    if v[30] is not None:
        nat["src"] = _ip(v[30][0])
    if proto != 1 and proto != 58:  # ICMP "port translation" is meaningless (always 0)
        if v[14] is not None:
            nat["dport"] = v[14][0]
        if v[15] is not None:
            nat["sport"] = v[15][0]
    if nat:
        reply = reply.replace(**nat)
    tcp = sctp = dccp = None
    if v[4] is not None or v[25] is not None or v[26] is not None:
        tcp = _mk_tcp(state=_one(v[4]), wscale_orig=_one(v[25]), wscale_reply=_one(v[26]))
    if v[17] is not None or v[18] is not None or v[19] is not None:
        sctp = _mk_sctp(state=_one(v[17]), vtag_orig=_one(v[18]), vtag_reply=_one(v[19]))
    if v[20] is not None or v[21] is not None:
        dccp = _mk_dccp(state=_one(v[20]), role=_one(v[21]))
    master = None
    if v[8] is not None or v[9] is not None or v[10] is not None or v[11] is not None:
        msrc = mdst = msport = mdport = None
        if v[8] is not None:
            msrc, mdst = _ip(v[8][0]), _ip(v[8][1])
        if v[9] is not None:
            msrc, mdst = _ip(v[9][0]), _ip(v[9][1])
        if v[11] is not None:
            msport, mdport = v[11]
        master = _mk_tuple(src=msrc, dst=mdst, proto=_one(v[10]), sport=msport, dport=mdport)
    adj_o = adj_r = None
    if v[16] is not None:
        a = v[16]
        adj_o = _mk_seqadj(correction_pos=a[0], offset_before=a[1], offset_after=a[2])
        adj_r = _mk_seqadj(correction_pos=a[3], offset_before=a[4], offset_after=a[5])
    labels = labels_size = None
    if v[28] is not None:
        words = v[28]
        labels = 0
        for i, w in enumerate(words):
            labels |= w << (32 * i)
        labels_size = 4 * len(words)
    synproxy = None
    if v[31] is not None:
        its, isn, tsoff = v[31]
        synproxy = _mk_synproxy(isn=isn, its=its, tsoff=tsoff)
    return _mk_flow(family=family, orig=orig, reply=reply, master=master, status=_one(v[5]),
                    timeout=_one(v[6]), mark=_one(v[7]), zone=_one(v[32]), tcp=tcp, sctp=sctp,
                    dccp=dccp, helper=v[27], seq_adj_orig=adj_o, seq_adj_reply=adj_r,
                    labels=labels, labels_size=labels_size, synproxy=synproxy)


def _one(x):
    """The single value of an unpacked fixed attribute, None if absent."""
    return x[0] if x is not None else None


def l4_values(t: Tuple) -> tuple[int, int]:
    """(l4src.all, l4dst.all) of a tuple as libnetfilter_conntrack keeps them, read as
    big-endian numbers: ports (GRE keys) for protocols with ports, ICMP id for the
    source and ``type << 8 | code`` for the destination, 0 for anything unset."""
    if t.proto in (1, 58):
        return (t.icmp_id or 0), ((t.icmp_type or 0) << 8) | (t.icmp_code or 0)
    return (t.sport or 0), (t.dport or 0)


def expect_from_attrs(v: list) -> Expect:
    """The Expect an expectation message describes (slots from :func:`parse_attrs`)."""
    family = 2 if v[0] is not None else 10 if v[1] is not None else None

    def tup(ip4: int, ip6: int, l4: int, ports: int) -> Tuple | None:
        pair = v[ip4] if v[ip4] is not None else v[ip6]
        if pair is None and v[l4] is None and v[ports] is None:
            return None
        src, dst = (_ip(pair[0]), _ip(pair[1])) if pair is not None else (None, None)
        sport, dport = v[ports] if v[ports] is not None else (None, None)
        return _mk_tuple(src=src, dst=dst, proto=_one(v[l4]), sport=sport, dport=dport)

    nat_pair = v[15]
    nat = None
    if nat_pair is not None or v[16] is not None or v[17] is not None:
        sport, dport = v[16] if v[16] is not None else (None, None)
        nat = _mk_tuple(src=_ip(nat_pair[0]) if nat_pair else None,
                        dst=_ip(nat_pair[1]) if nat_pair else None,
                        proto=_one(v[17]), sport=sport, dport=dport)
    return _mk_expect(family=family, master=tup(0, 1, 2, 3), tuple=tup(4, 5, 6, 7),
                      mask=tup(8, 9, 10, 11), timeout=_one(v[12]), flags=_one(v[13]),
                      klass=_one(v[14]), nat_tuple=nat, nat_dir=_one(v[18]), helper=v[19],
                      fn=v[20])


# --- Flow / Expect -> attributes (the C sender's ct2msg / exp2msg) ------------------------------

def _packers(rows: dict) -> dict[str, object]:
    """Per attribute name a function of the payload values returning the padded
    attribute (header included), from the compiled formats."""
    out = {}
    for n, (name, kind, fmt, exact, _max) in rows.items():
        if fmt is None:
            continue
        pad = -exact % 4
        if fmt[0] == "<":  # a little-endian u16 in a big-endian header
            st = struct.Struct(f">HHH{pad}x")
            out[name] = (lambda st, ex, n: lambda x: st.pack(ex, n, ((x & 0xFF) << 8) | (x >> 8))
                         )(st, exact, n)
        else:
            st = struct.Struct(f">HH{fmt[1:]}{pad}x" if pad else f">HH{fmt[1:]}")
            out[name] = (lambda pack, ex, n: lambda *x: pack(ex, n, *x))(st.pack, exact, n)
    return out


_P = _packers(C.CT_ATTRS)
_PE = _packers(C.EXP_ATTRS)
_P_IPV4, _P_IPV6, _P_L4PROTO, _P_PORT = _P["NTA_IPV4"], _P["NTA_IPV6"], _P["NTA_L4PROTO"], _P["NTA_PORT"]
_P_STATUS, _P_TIMEOUT, _P_MARK = _P["NTA_STATUS"], _P["NTA_TIMEOUT"], _P["NTA_MARK"]
_P_TCP_STATE = _P["NTA_TCP_STATE"]


def _var(num: int, payload: bytes) -> bytes:
    ln = 4 + len(payload)
    return _NTA.pack(ln, num) + payload + b"\0" * (-ln % 4)


def nat_attributes(flow: Flow) -> tuple[bool, bool, bool, bool]:
    """(SNAT, DNAT, SPAT, DPAT) as the C sender detects them (libnetfilter_conntrack's
    ``NFCT_GOPT_IS_*``): the status says the NAT was done (or no status is known) and
    the reply tuple differs from the original one on that side. The C daemon holds no
    layer-4 part of an ICMP(v6) reply tuple (id, type and code read as 0), so an ICMP
    flow through a NAT table always "has" port translation, with value 0."""
    o, r = flow.orig, flow.reply
    if o is None or r is None:
        return False, False, False, False
    st = flow.status_bits
    s_ok = st is None or bool(st & K.IPS_SRC_NAT_DONE)
    d_ok = st is None or bool(st & K.IPS_DST_NAT_DONE)
    o_src, o_dst = l4_values(o)
    r_src, r_dst = sender_reply_l4(r)
    return (s_ok and r.dst is not None and r.dst != o.src,
            d_ok and r.src is not None and r.src != o.dst,
            s_ok and r_dst != o_src, d_ok and r_src != o_dst)


def sender_reply_l4(r: Tuple) -> tuple[int, int]:
    """(l4src, l4dst) of a reply tuple as the C sender sees it (0, 0 for ICMP)."""
    return (0, 0) if r.proto in (1, 58) else l4_values(r)


def encode_flow(flow: Flow, *, commit_timeout: bool = False,
                window_tracking: bool = False) -> bytes:
    """The attributes of a conntrack message for ``flow`` (``ct2msg`` of 1.4.7).

    ``commit_timeout``: the sender has ``CommitTimeout`` configured (TIMEOUT is then
    left out); ``window_tracking``: ``TCPWindowTracking on`` (window scales are sent).
    Generated per flow kind (:mod:`.flowenc`); :func:`encode_flow_reference` is the
    attribute-by-attribute version it equals.
    """
    return flowenc.encode(flow, None, 0, 0, window_tracking, commit_timeout)


def encode_flow_reference(flow: Flow, *, commit_timeout: bool = False,
                          window_tracking: bool = False) -> bytes:
    """:func:`encode_flow` written attribute by attribute, as ``ct2msg`` reads."""
    o = flow.orig
    out = []
    ap = out.append
    if o.src is not None:
        ap(_P_IPV4(o.src.packed, o.dst.packed) if o.src.version == 4
           else _P_IPV6(o.src.packed, o.dst.packed))
    status = flow.status_bits
    ap(_P_STATUS(status or 0))
    proto = o.proto or 0
    ap(_P_L4PROTO(proto))
    if proto == 6:
        ap(_P_PORT(o.sport or 0, o.dport or 0))
        tcp = flow.tcp
        if tcp is not None and tcp.state is not None:
            ap(_P_TCP_STATE(tcp.state))
            if window_tracking:
                ap(_P["NTA_TCP_WSCALE_ORIG"](tcp.wscale_orig or 0))
                ap(_P["NTA_TCP_WSCALE_REPL"](tcp.wscale_reply or 0))
    elif proto == 17:
        ap(_P_PORT(o.sport or 0, o.dport or 0))
    elif proto == 1 or proto == 58:
        if o.icmp_type is not None:
            ap(_P["NTA_ICMP_TYPE"](o.icmp_type))
            ap(_P["NTA_ICMP_CODE"](o.icmp_code or 0))
            ap(_P["NTA_ICMP_ID"](o.icmp_id or 0))
    elif proto == 132:
        ap(_P_PORT(o.sport or 0, o.dport or 0))
        sctp = flow.sctp
        if sctp is not None and sctp.state is not None:
            ap(_P["NTA_SCTP_STATE"](sctp.state))
            ap(_P["NTA_SCTP_VTAG_ORIG"](sctp.vtag_orig or 0))
            ap(_P["NTA_SCTP_VTAG_REPL"](sctp.vtag_reply or 0))
    elif proto == 33:
        ap(_P_PORT(o.sport or 0, o.dport or 0))
        dccp = flow.dccp
        if dccp is not None and dccp.state is not None:
            ap(_P["NTA_DCCP_STATE"](dccp.state))
            ap(_P["NTA_DCCP_ROLE"](dccp.role or 0))
    if not commit_timeout and flow.timeout is not None:
        ap(_P_TIMEOUT(flow.timeout))
    if flow.mark is not None:
        ap(_P_MARK(flow.mark))
    m = flow.master
    if m is not None and m.src is not None:
        if m.src.version == 4:
            ap(_P["NTA_MASTER_IPV4"](m.src.packed, m.dst.packed))
        else:
            ap(_P["NTA_MASTER_IPV6"](m.src.packed, m.dst.packed))
        ap(_P["NTA_MASTER_L4PROTO"](m.proto or 0))
        if m.sport is not None and m.dport is not None:
            ap(_P["NTA_MASTER_PORT"](m.sport, m.dport))
    r = flow.reply
    if r is not None:
        snat, dnat, spat, dpat = nat_attributes(flow)
        if snat or dnat:
            v4 = o.src is None or o.src.version == 4
            if snat:
                ap((_P["NTA_SNAT_IPV4"] if v4 else _P["NTA_SNAT_IPV6"])(r.dst.packed))
            if dnat:
                ap((_P["NTA_DNAT_IPV4"] if v4 else _P["NTA_DNAT_IPV6"])(r.src.packed))
        if spat:
            ap(_P["NTA_SPAT_PORT"](sender_reply_l4(r)[1]))
        if dpat:
            ap(_P["NTA_DPAT_PORT"](sender_reply_l4(r)[0]))
    a, b = flow.seq_adj_orig, flow.seq_adj_reply
    if a is not None and b is not None:
        six = (a.correction_pos, a.offset_before, a.offset_after,
               b.correction_pos, b.offset_before, b.offset_after)
        if None not in six:
            ap(_P["NTA_NAT_SEQ_ADJ"](*six))
    if flow.helper is not None:
        ap(_var(27, flow.helper.encode() + b"\0"))
    if flow.labels:
        ap(_var(28, labels_payload(flow.labels, flow.labels_size)))
    sp = flow.synproxy
    if sp is not None and sp.isn is not None and sp.its is not None and sp.tsoff is not None:
        ap(_P["NTA_SYNPROXY"](sp.its, sp.isn, sp.tsoff))
    if flow.zone is not None:
        ap(_P["NTA_ZONE"](flow.zone))
    return b"".join(out)


def encode_expect(exp: Expect, *, commit_timeout: bool = False) -> bytes:
    """The attributes of an expectation message for ``exp`` (``exp2msg`` of 1.4.7): the
    master's protocol decides whether ports are sent for all three tuples."""
    out = []
    ap = out.append
    master = exp.master
    l4 = master.proto if master is not None else None
    ports = l4 in PORT_PROTOS
    for t, ip4, ip6, proto, port in ((master, "MASTER_IPV4", "MASTER_IPV6", "MASTER_L4PROTO",
                                      "MASTER_PORT"),
                                     (exp.tuple, "EXPECT_IPV4", "EXPECT_IPV6", "EXPECT_L4PROTO",
                                      "EXPECT_PORT"),
                                     (exp.mask, "MASK_IPV4", "MASK_IPV6", "MASK_L4PROTO",
                                      "MASK_PORT")):
        if t is None:
            t = _mk_tuple()
        if t.src is not None:
            ap(_PE["NTA_EXP_" + (ip4 if t.src.version == 4 else ip6)](t.src.packed, t.dst.packed))
        ap(_PE["NTA_EXP_" + proto](t.proto or 0))
        if ports:
            ap(_PE["NTA_EXP_" + port](t.sport or 0, t.dport or 0))
    if not commit_timeout and exp.timeout is not None:
        ap(_PE["NTA_EXP_TIMEOUT"](exp.timeout))
    ap(_PE["NTA_EXP_FLAGS"](exp.flags or 0))
    if exp.klass is not None:
        ap(_PE["NTA_EXP_CLASS"](exp.klass))
    nat = exp.nat_tuple
    if nat is not None and exp.nat_dir is not None:
        if nat.src is not None and nat.src.version == 4:
            ap(_PE["NTA_EXP_NAT_IPV4"](nat.src.packed, (nat.dst or IPv4Address(0)).packed))
        ap(_PE["NTA_EXP_NAT_L4PROTO"](nat.proto or 0))
        if ports:
            ap(_PE["NTA_EXP_NAT_PORT"](nat.sport or 0, nat.dport or 0))
        ap(_PE["NTA_EXP_NAT_DIR"](exp.nat_dir))
    if exp.helper is not None:
        ap(_var(19, exp.helper.encode() + b"\0"))
    if exp.fn is not None:
        ap(_var(20, exp.fn.encode() + b"\0"))
    return b"".join(out)


# --- messages -> bytes ---------------------------------------------------------------------

def header(mtype: int, flags: int, length: int, seq: int, from_seq: int | None = None,
           to_seq: int | None = None, version: int = K.PROTOCOL_VERSION) -> bytes:
    """The 8-byte header, or the 16-byte one when a range is given."""
    vt = (version << 4) | mtype
    if from_seq is None:
        return _HDR.pack(vt, flags, length, seq)
    return _HDR_ACK.pack(vt, flags, length, seq, from_seq, to_seq)


def encode_message(msg: SyncMessage, *, commit_timeout: bool = False,
                   window_tracking: bool = False) -> bytes:
    """One message: header and payload (a Flow, Expect or raw attribute bytes)."""
    p = msg.payload
    if p is None:
        body = b""
    elif isinstance(p, Flow):
        body = encode_flow(p, commit_timeout=commit_timeout, window_tracking=window_tracking)
    elif isinstance(p, Expect):
        body = encode_expect(p, commit_timeout=commit_timeout)
    else:
        body = bytes(p)
    frm, to = msg.from_seq, msg.to_seq
    if frm is None and msg.has_range:
        frm = to = 0
    hsize = K.NETHDR_SIZ if frm is None else K.NETHDR_ACK_SIZ
    return header(msg.type, msg.flags, hsize + len(body), msg.seq, frm, to, msg.version) + body


def encode_datagram(messages: Iterable[SyncMessage], **options) -> bytes:
    """Messages back to back (a datagram, or a chunk of a TCP stream)."""
    return b"".join(encode_message(m, **options) for m in messages)


def flow_message(mtype: int, flow: Flow, seq: int, flags: int = 0, *,
                 commit_timeout: bool = False, window_tracking: bool = False) -> bytes:
    """A complete CT_NEW / CT_UPD / CT_DEL message for ``flow`` (the fast path)."""
    o = flow.orig
    fn = _kinds_get((o.src.__class__, o.proto, window_tracking, commit_timeout))
    if fn is None:
        fn = flowenc.encoder(o.src.__class__, o.proto, window_tracking, commit_timeout)
    return fn(flow, 0x10 | mtype, flags, seq)


_kinds_get = flowenc._kinds.get


# --- the shape decoders ---------------------------------------------------------------------

CT_DECODER = Decoder(C.CT_ATTRS, flow_builder)
"""Conntrack payloads -> :class:`Flow` (compiled per layout, see :mod:`.shapes`)."""
EXP_DECODER = Decoder(C.EXP_ATTRS,
                      lambda slots: slots_builder(slots, expect_from_attrs, len(C.EXP_ATTRS)))
"""Expectation payloads -> :class:`Expect`."""
