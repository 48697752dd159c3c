"""Netlink packet captures: write and read LINKTYPE_NETLINK (253) files, standard library only.

A capture holds one record per netlink datagram, laid out like ``tcpdump -i nlmon0`` files: a
16-byte cooked header in network byte order (pkttype u16, ARPHRD_NETLINK 824 u16, address
length u16 = 0, 8 address bytes = 0, netlink protocol u16, e.g. 12 = NETLINK_NETFILTER) followed
by the datagram exactly as it crossed the socket (one or more ``nlmsghdr``, host byte order).
:class:`PcapWriter` writes classic microsecond pcap (snaplen 262144) with pkttype 4 ("sent by
us") for datagrams the program sent and 0 ("to us") for those it received, and flushes every
record so that a crashed program leaves a readable file.  :func:`read_pcap` reads classic pcap
(micro- and nanosecond magics, either byte order) and pcapng (SHB/IDB/EPB/SPB, either byte order,
per-interface ``if_tsresol``), and raises :class:`PcapError` on anything it cannot trust.  The
module imports only ``struct`` and ``time`` (no typing, dataclasses or construct) so that it
loads in well under 2 ms.
"""

import struct
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - annotations only
    from os import PathLike
    from typing import BinaryIO, Iterator, Literal

    Direction = Literal["sent", "received"]
    Source = str | bytes | PathLike[str] | PathLike[bytes] | BinaryIO

LINKTYPE_NETLINK = 253
ARPHRD_NETLINK = 824
NETLINK_NETFILTER = 12
SNAPLEN = 262144

SENT = "sent"
RECEIVED = "received"

# sll_pkttype values (linux/if_packet.h).  We write HOST/OUTGOING, the values every pcap tool
# knows; nlmon itself may tag packets USER (to user space) / KERNEL (to kernel space).
PACKET_HOST = 0
PACKET_OUTGOING = 4
PACKET_USER = 6
PACKET_KERNEL = 7
_SENT_PKTTYPES = frozenset((PACKET_OUTGOING, PACKET_KERNEL))

COOKED_HEADER = struct.Struct(">HHH8sH")  # pkttype, hatype, halen, addr, protocol: 16 bytes

_PCAP_MAGIC_US = 0xA1B2C3D4
_PCAP_MAGIC_NS = 0xA1B23C4D
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BOM = 0x1A2B3C4D
_MAX_RECORD = 1 << 26  # refuse absurd record lengths instead of allocating them


class PcapError(ValueError):
    """The file is not a netlink capture we can read (bad magic, truncation, wrong link type)."""


class Packet:
    """One captured netlink datagram (immutable; ``timestamp`` is ``ts_ns`` in seconds)."""

    __slots__ = ("ts_ns", "direction", "family", "data")
    ts_ns: int
    direction: str
    family: int
    data: bytes

    def __init__(self, ts_ns: int, direction: str, family: int, data: bytes) -> None:
        for name, value in (("ts_ns", ts_ns), ("direction", direction),
                            ("family", family), ("data", data)):
            object.__setattr__(self, name, value)

    @property
    def timestamp(self) -> float:
        return self.ts_ns / 1e9

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Packet is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Packet is immutable (cannot delete {name!r})")

    def _key(self) -> tuple[int, str, int, bytes]:
        return (self.ts_ns, self.direction, self.family, self.data)

    def __eq__(self, other: object) -> bool:
        return type(other) is Packet and self._key() == other._key()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Packet(ts_ns={self.ts_ns}, direction={self.direction!r}, "
                f"family={self.family}, data={self.data!r})")


def _pkttype(direction: str) -> int:
    if direction == SENT:
        return PACKET_OUTGOING
    if direction == RECEIVED:
        return PACKET_HOST
    raise ValueError(f"direction must be {SENT!r} or {RECEIVED!r}, not {direction!r}")


class PcapWriter:
    """Write netlink datagrams to a classic pcap file (path or binary file object).

    ``nanosecond=True`` writes the nanosecond variant (magic 0xa1b23c4d) instead of the
    microsecond one tcpdump writes by default.  Only files opened from a path are closed.
    """

    def __init__(self, target: "Source", *, nanosecond: bool = False) -> None:
        if hasattr(target, "write"):
            self._file: BinaryIO = target  # type: ignore[assignment]
            self._owned = False
        else:
            self._file = open(target, "wb")  # type: ignore[arg-type]
            self._owned = True
        self._nanosecond = nanosecond
        magic = _PCAP_MAGIC_NS if nanosecond else _PCAP_MAGIC_US
        try:
            self._file.write(struct.pack("=IHHiIII", magic, 2, 4, 0, 0, SNAPLEN, LINKTYPE_NETLINK))
            self._file.flush()
        except BaseException:  # e.g. /dev/full: the file is not left open
            self.close()
            raise

    def write(self, data: bytes, direction: "Direction", family: int = NETLINK_NETFILTER,
              ts_ns: int | None = None) -> None:
        """Append one datagram; ``ts_ns`` defaults to the current time."""
        if ts_ns is None:
            ts_ns = time.time_ns()
        frame = COOKED_HEADER.pack(_pkttype(direction), ARPHRD_NETLINK, 0, b"", family) + data
        caplen = min(len(frame), SNAPLEN)
        sec, frac = divmod(ts_ns, 1_000_000_000)
        if not self._nanosecond:
            frac //= 1000
        self._file.write(struct.pack("=IIII", sec, frac, caplen, len(frame)) + frame[:caplen])
        self._file.flush()

    def close(self) -> None:
        if self._owned and not self._file.closed:
            self._file.close()

    def __enter__(self) -> "PcapWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_pcap(source: "Source") -> "Iterator[Packet]":
    """Yield the datagrams of a pcap or pcapng netlink capture (path or binary file object)."""
    if hasattr(source, "read"):
        yield from _read(source)  # type: ignore[arg-type]
    else:
        with open(source, "rb") as f:  # type: ignore[arg-type]
            yield from _read(f)


def _exact(f: "BinaryIO", n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise PcapError(f"truncated capture: {what} needs {n} bytes, file has {len(data)}")
    return data


def _read(f: "BinaryIO") -> "Iterator[Packet]":
    head = f.read(4)
    if len(head) < 4:
        raise PcapError(f"not a capture file: only {len(head)} bytes")
    if struct.unpack("<I", head)[0] == _PCAPNG_SHB:
        return _read_pcapng(f)
    for order in "<>":
        magic = struct.unpack(order + "I", head)[0]
        if magic in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
            return _read_classic(f, order, 1 if magic == _PCAP_MAGIC_NS else 1000)
    raise PcapError(f"not a pcap or pcapng file: magic {head.hex()}")


def _packet(frame: bytes, ts_ns: int) -> Packet:
    if len(frame) < COOKED_HEADER.size:
        raise PcapError(f"record of {len(frame)} bytes is shorter than the 16-byte cooked header")
    pkttype, hatype, _, _, protocol = COOKED_HEADER.unpack_from(frame)
    if hatype != ARPHRD_NETLINK:
        raise PcapError(f"cooked header has ARPHRD type {hatype}, expected {ARPHRD_NETLINK}")
    direction = SENT if pkttype in _SENT_PKTTYPES else RECEIVED
    return Packet(ts_ns, direction, protocol, frame[COOKED_HEADER.size:])


def _check_linktype(linktype: int) -> None:
    if linktype & 0xFFFF != LINKTYPE_NETLINK:
        raise PcapError(f"link type {linktype & 0xFFFF} is not LINKTYPE_NETLINK (253)")


def _read_classic(f: "BinaryIO", order: str, ns_per_tick: int) -> "Iterator[Packet]":
    *_, linktype = struct.unpack(order + "HHiIII", _exact(f, 20, "pcap file header"))
    _check_linktype(linktype)
    record = struct.Struct(order + "IIII")
    while True:
        raw = f.read(16)
        if not raw:
            return
        if len(raw) < 16:
            raise PcapError(f"truncated capture: record header has {len(raw)} of 16 bytes")
        sec, frac, caplen, _ = record.unpack(raw)
        if caplen > _MAX_RECORD:
            raise PcapError(f"record length {caplen} is implausible (corrupt file?)")
        yield _packet(_exact(f, caplen, "record"), sec * 1_000_000_000 + frac * ns_per_tick)


def _read_pcapng(f: "BinaryIO") -> "Iterator[Packet]":
    order = "<"
    interfaces: list[tuple[int, int]] = []  # (linktype, timestamp ticks per second)
    block_type = _PCAPNG_SHB
    while True:
        raw_len = _exact(f, 4, "pcapng block length")
        if block_type == _PCAPNG_SHB:
            bom = _exact(f, 4, "section header")
            order = "<" if struct.unpack("<I", bom)[0] == _PCAPNG_BOM else ">"
            if struct.unpack(order + "I", bom)[0] != _PCAPNG_BOM:
                raise PcapError(f"bad pcapng byte-order magic {bom.hex()}")
            interfaces = []
            length = struct.unpack(order + "I", raw_len)[0]
            body = bom + _exact(f, _block_rest(length, 12), "section header block")
        else:
            length = struct.unpack(order + "I", raw_len)[0]
            body = _exact(f, _block_rest(length, 8), "pcapng block")
        body = body[:-4]  # trailing copy of the block length
        if block_type == 1:  # interface description
            if len(body) < 8:
                raise PcapError("interface description block too short")
            linktype = struct.unpack_from(order + "H", body)[0]
            interfaces.append((linktype, _tsresol(body[8:], order)))
        elif block_type in (6, 3):  # enhanced / simple packet
            yield _pcapng_packet(block_type, body, order, interfaces)
        raw = f.read(4)
        if not raw:
            return
        if len(raw) < 4:
            raise PcapError("truncated capture: partial pcapng block type")
        block_type = struct.unpack(order + "I", raw)[0]


def _block_rest(length: int, already: int) -> int:
    if length % 4 or length < already + 4 or length > _MAX_RECORD:
        raise PcapError(f"bad pcapng block length {length}")
    return length - already


def _tsresol(options: bytes, order: str) -> int:
    """Timestamp ticks per second from the IDB options (``if_tsresol``); default microseconds."""
    pos = 0
    while pos + 4 <= len(options):
        code, size = struct.unpack_from(order + "HH", options, pos)
        if code == 0:
            break
        if code == 9 and size >= 1:  # if_tsresol
            value = options[pos + 4]
            return 2 ** (value & 0x7F) if value & 0x80 else 10 ** (value & 0x7F)
        pos += 4 + (size + 3) // 4 * 4
    return 1_000_000


def _pcapng_packet(block_type: int, body: bytes, order: str,
                   interfaces: list[tuple[int, int]]) -> Packet:
    if block_type == 3:
        if len(body) < 4:
            raise PcapError("simple packet block too short")
        iface, ts_ns = 0, 0
        caplen = min(struct.unpack_from(order + "I", body)[0], len(body) - 4)
        data_at = 4
    else:
        if len(body) < 20:
            raise PcapError("enhanced packet block too short")
        iface, high, low, caplen, _ = struct.unpack_from(order + "IIIII", body)
        data_at = 20
        if caplen > len(body) - data_at:
            raise PcapError(f"enhanced packet block claims {caplen} captured bytes, "
                            f"has {len(body) - data_at}")
    if iface >= len(interfaces):
        raise PcapError(f"packet refers to undeclared interface {iface}")
    linktype, ticks = interfaces[iface]
    _check_linktype(linktype)
    if block_type == 6:
        ts_ns = ((high << 32) | low) * 1_000_000_000 // ticks
    return _packet(body[data_at:data_at + caplen], ts_ns)
