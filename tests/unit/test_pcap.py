"""nfnl.pcap: round trips, files written by Wireshark's tools, malformed input, tshark decoding."""

import io
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nfnl.pcap import (NETLINK_NETFILTER, RECEIVED, SENT, Packet, PcapError, PcapWriter,
                       read_pcap)

# conntrack -L request and the kernel's NLMSG_ERROR ack of a conntrack -I (from real traces)
DUMP_REQUEST = bytes.fromhex("14000000 01010103 2e25076b 00000000 00000000")
ACK = bytes.fromhex("24000000 02000001 1a25076b 2b180000 00000000"
                    "a4000000 00010506 1a25076b 00000000")
T0 = 1_700_000_000_123_456_789


def _packets() -> list[Packet]:
    return [Packet(T0, SENT, NETLINK_NETFILTER, DUMP_REQUEST),
            Packet(T0 + 1_500_000, RECEIVED, NETLINK_NETFILTER, ACK),
            Packet(T0 + 2_000_000_000, RECEIVED, 0, b"\x10\x00\x00\x00" + bytes(12))]


def _write(path: Path, packets: list[Packet], **kw: bool) -> Path:
    with PcapWriter(path, **kw) as w:
        for p in packets:
            w.write(p.data, p.direction, p.family, p.ts_ns)
    return path


def _us(p: Packet) -> Packet:
    return Packet(p.ts_ns // 1000 * 1000, p.direction, p.family, p.data)


def _tool(*argv: str) -> str:
    assert shutil.which(argv[0]), f"{argv[0]} is required (CI installs tshark/wireshark-common)"
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def test_round_trip_microseconds(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.pcap", _packets())
    got = list(read_pcap(path))
    assert got == [_us(p) for p in _packets()]
    assert got[0].timestamp == pytest.approx(1_700_000_000.123456)
    raw = path.read_bytes()
    assert struct.unpack_from("=IHHiIII", raw) == (0xA1B2C3D4, 2, 4, 0, 0, 262144, 253)
    # first record: 16-byte pcap header, then the cooked header in network byte order
    assert raw[24 + 16:24 + 32] == bytes.fromhex("0004 0338 0000 0000000000000000 000c")


def test_round_trip_nanoseconds_and_file_objects() -> None:
    buf = io.BytesIO()
    with PcapWriter(buf, nanosecond=True) as w:
        for p in _packets():
            w.write(p.data, p.direction, p.family, p.ts_ns)
    assert not buf.closed  # the caller's file stays open
    buf.seek(0)
    assert list(read_pcap(buf)) == _packets()


def test_each_record_is_flushed(tmp_path: Path) -> None:
    w = PcapWriter(tmp_path / "live.pcap")
    w.write(DUMP_REQUEST, SENT)
    assert [p.data for p in read_pcap(tmp_path / "live.pcap")] == [DUMP_REQUEST]
    w.close()


def test_writer_rejects_unknown_direction(tmp_path: Path) -> None:
    with PcapWriter(tmp_path / "x.pcap") as w, pytest.raises(ValueError, match="direction"):
        w.write(DUMP_REQUEST, "outgoing")


def test_packet_is_immutable_and_hashable() -> None:
    p = _packets()[0]
    with pytest.raises(AttributeError):
        p.data = b""  # type: ignore[misc]
    assert len({p, _packets()[0]}) == 1
    assert "direction='sent'" in repr(p)


def test_reads_big_endian_classic_pcap(tmp_path: Path) -> None:
    cooked = struct.pack(">HHH8sH", 4, 824, 0, b"", 12)
    data = (struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 253)
            + struct.pack(">IIII", 5, 7, 16 + 20, 16 + 20) + cooked + DUMP_REQUEST)
    assert list(read_pcap(io.BytesIO(data))) == [Packet(5_000_000_007, SENT, 12, DUMP_REQUEST)]


def test_nlmon_pkttypes_map_to_directions() -> None:
    frames = b"".join(struct.pack("<IIII", 0, 0, 36, 36)
                      + struct.pack(">HHH8sH", t, 824, 0, b"", 12) + DUMP_REQUEST
                      for t in (0, 4, 6, 7))
    data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 253) + frames
    assert [p.direction for p in read_pcap(io.BytesIO(data))] == [
        RECEIVED, SENT, RECEIVED, SENT]  # PACKET_USER = to user space, PACKET_KERNEL = to kernel


def _pcapng_block(order: str, kind: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return struct.pack(order + "II", kind, len(body) + 12) + body + struct.pack(
        order + "I", len(body) + 12)


def test_reads_handmade_big_endian_pcapng_with_simple_packets() -> None:
    o = ">"
    frame = struct.pack(">HHH8sH", 0, 824, 0, b"", 12) + ACK
    tsresol = struct.pack(o + "HH", 9, 1) + b"\x8a" + bytes(3)  # 2^-10 s ticks
    blocks = [
        _pcapng_block(o, 0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1)),
        _pcapng_block(o, 1, struct.pack(o + "HHI", 253, 0, 0) + tsresol + bytes(4)),
        _pcapng_block(o, 6, struct.pack(o + "IIIII", 0, 0, 3 * 1024, len(frame), len(frame))
                      + frame),
        _pcapng_block(o, 4, b""),  # name resolution block: skipped
        _pcapng_block(o, 3, struct.pack(o + "I", len(frame)) + frame),
    ]
    got = list(read_pcap(io.BytesIO(b"".join(blocks))))
    assert got == [Packet(3_000_000_000, RECEIVED, 12, ACK), Packet(0, RECEIVED, 12, ACK)]


@pytest.mark.parametrize("convert", [
    ["editcap", "-F", "pcapng"],
    ["editcap", "-F", "nsecpcap"],
    ["tshark", "-F", "pcapng", "-w"],  # tshark adds SHB/IDB options and statistics
])
def test_reads_files_written_by_wireshark_tools(tmp_path: Path, convert: list[str]) -> None:
    ours = _write(tmp_path / "ours.pcap", _packets(), nanosecond=True)
    theirs = tmp_path / "theirs"
    if convert[0] == "tshark":
        _tool("tshark", "-r", str(ours), *convert[1:], str(theirs))
    else:
        _tool(*convert, str(ours), str(theirs))
    assert list(read_pcap(theirs)) == _packets()


def test_reads_nanosecond_pcapng_from_editcap(tmp_path: Path) -> None:
    ours = _write(tmp_path / "ours.pcap", _packets(), nanosecond=True)
    _tool("editcap", "-F", "pcapng", str(ours), str(tmp_path / "ns.pcapng"))
    assert [p.ts_ns for p in read_pcap(tmp_path / "ns.pcapng")] == [p.ts_ns for p in _packets()]


@pytest.mark.parametrize("cut", [1, 4, 10, 24 + 5, 24 + 16 + 3, -1])
def test_truncated_classic_file_raises(tmp_path: Path, cut: int) -> None:
    raw = _write(tmp_path / "a.pcap", _packets()).read_bytes()
    with pytest.raises(PcapError, match="truncated|only"):
        list(read_pcap(io.BytesIO(raw[:cut])))


def test_truncated_pcapng_raises(tmp_path: Path) -> None:
    _write(tmp_path / "a.pcap", _packets())
    _tool("editcap", "-F", "pcapng", str(tmp_path / "a.pcap"), str(tmp_path / "b.pcapng"))
    raw = (tmp_path / "b.pcapng").read_bytes()
    for cut in (6, 30, len(raw) - 2):
        with pytest.raises(PcapError):
            list(read_pcap(io.BytesIO(raw[:cut])))


def test_rejects_other_files() -> None:
    with pytest.raises(PcapError, match="magic"):
        list(read_pcap(io.BytesIO(b"GIF89a" + bytes(40))))
    with pytest.raises(PcapError):
        list(read_pcap(io.BytesIO(b"")))
    ethernet = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    with pytest.raises(PcapError, match="link type 1 "):
        list(read_pcap(io.BytesIO(ethernet)))
    short = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 253) + struct.pack(
        "<IIII", 0, 0, 4, 4) + b"abcd"
    with pytest.raises(PcapError, match="cooked header"):
        list(read_pcap(io.BytesIO(short)))


_PREFIXES = [b"", struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 253),
             _pcapng_block("<", 0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
             + _pcapng_block("<", 1, struct.pack("<HHI", 253, 0, 0))]


@given(st.sampled_from(_PREFIXES), st.binary(max_size=300))
def test_garbage_only_ever_raises_pcap_error(prefix: bytes, junk: bytes) -> None:
    try:
        for packet in read_pcap(io.BytesIO(prefix + junk)):
            assert isinstance(packet, Packet)
    except PcapError:
        pass


def test_tshark_decodes_netfilter_netlink(tmp_path: Path) -> None:
    path = _write(tmp_path / "ct.pcap", _packets()[:2])
    frames = json.loads(_tool("tshark", "-r", str(path), "-T", "json"))
    layers = [f["_source"]["layers"] for f in frames]
    assert layers[0]["frame"]["frame.protocols"] == "netlink:netlink-netfilter"
    assert layers[0]["frame"]["frame.time_epoch"] == "1700000000.123456000"
    for layer in layers:
        assert layer["netlink"] == {"netlink.hatype": "824", "netlink.family": "0x000c"}
    request = layers[0]["netlink-netfilter"]
    header = next(v for k, v in request.items() if k.startswith("Netlink message header"))
    assert (header["netlink.hdr_type"], header["netlink.hdr_flags"]) == ("0x0101", "0x0301")
    ack = layers[1]["Netlink message"]
    assert ack["netlink.error"] == "0"
    # tshark 4.0 does not display the packet type, but it sees it where the SLL layout puts it
    assert _tool("tshark", "-r", str(path), "-Y", "frame[0:2] == 00:04",
                 "-T", "fields", "-e", "frame.number").split() == ["1"]
    assert _tool("tshark", "-r", str(path), "-Y", "frame[0:2] == 00:00",
                 "-T", "fields", "-e", "frame.number").split() == ["2"]


def test_import_is_cheap() -> None:
    """Importing nfnl.pcap loads nothing heavy: no typing/dataclasses/construct, only
    struct (its cost is measured by the start-up benchmark, not here)."""
    code = ("import sys; import nfnl; before = set(sys.modules); import nfnl.pcap;"
            "print(*sorted(set(sys.modules) - before))")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=root, env={"PATH": "/usr/bin:/bin"},
                         check=True, capture_output=True, text=True).stdout.split()
    assert "nfnl.pcap" in out
    assert set(out) <= {"nfnl.pcap", "struct", "_struct"}
