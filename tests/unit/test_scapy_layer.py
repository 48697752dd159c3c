"""nfnl.scapy_layer: scapy dissects our kernel recordings exactly as nfnl's decoder does, and
messages crafted in scapy build to the bytes the kernel gets from the reference tool."""
from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import scapy  # noqa: F401 - the test extra installs it; a missing scapy must fail

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_replay_recordings import RECORDINGS, recording, write_pcap  # noqa: E402

from scapy.packet import NoPayload, Raw  # noqa: E402
from scapy.utils import rdpcap  # noqa: E402

import nfnl.scapy_layer as L  # noqa: E402
from ctnetlink import _compiled as CT  # noqa: E402
from nfnl import _compiled as NL  # noqa: E402
from nfnl.codec import decode_attrs  # noqa: E402
from nfnl.message import decode_message, iter_messages, set_seq  # noqa: E402
from nfnl.pcap import read_pcap  # noqa: E402
from nfnl.registry import discover  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def assert_dissection_agrees(pkt, data: bytes) -> None:
    """Every message of ``pkt`` (a scapy dissection of ``data``) equals nfnl's decoding."""
    discover()
    assert bytes(pkt) == data  # dissect -> build is exact
    for i, (off, ln, *_) in enumerate(iter_messages(data), 1):
        m = decode_message(data, off)
        n = pkt.getlayer(L.Netlink, i)
        assert n is not None, f"message {i} not dissected"
        assert (n.nlmsg_len, n.nlmsg_type, n.nlmsg_flags, n.nlmsg_seq, n.nlmsg_pid) == (
            ln, m.type, m.flags, m.seq, m.pid)
        body = n.payload
        if m.error is not None:
            assert isinstance(body, L.NlMsgErr)
            assert -body.error == m.error.errno
            assert (body.req_len, body.req_type, body.req_flags, body.req_seq,
                    body.req_pid) == m.error.request_header
            assert bytes(body.req_payload) == m.error.request[16:]
            assert L.to_python(body.ext_ack) == m.error.ext_ack.to_python()
        elif m.type == 3:
            assert isinstance(body, L.NlMsgDone)
            assert body.status == struct.unpack_from("=i", m.raw, 16)[0]
        elif m.family is not None:
            assert isinstance(body, L.NfGenMsg)
            assert (body.nfgen_family, body.version, body.res_id) == (m.family, m.version, m.res_id)
            attrs = body.payload
            if m.attrs:
                # the body layer is the one of the set our decoder chose (by content where
                # the kernel reuses a type: 0x0103 carries expectation statistics too)
                assert getattr(attrs, "set_name", None) == m.attrs.set_name
                assert L.to_python(attrs.attrs) == m.attrs.to_python()
            else:
                assert isinstance(attrs, NoPayload) or not getattr(attrs, "attrs", [])


def assert_pcap_agrees(path: Path) -> int:
    packets = rdpcap(str(path))
    ours = list(read_pcap(path))
    assert len(packets) == len(ours)
    for pkt, packet in zip(packets, ours):
        assert isinstance(pkt, L.NetlinkCooked)
        assert pkt.protocol == packet.family
        if packet.family == 12:
            assert_dissection_agrees(pkt.payload, packet.data)
    return len(ours)


@pytest.mark.parametrize("name", sorted(RECORDINGS))
def test_rdpcap_of_kernel_recordings_agrees_with_our_decoder(name: str, tmp_path: Path) -> None:
    write_pcap(name, tmp_path / f"{name}.pcap")
    assert assert_pcap_agrees(tmp_path / f"{name}.pcap") == len(RECORDINGS[name])


def test_layers_are_named_after_the_kernel() -> None:
    data = recording("list")[1][1]
    pkt = L.Netlink(data)
    assert pkt.summary().startswith("Netlink / NfGenMsg / CTA / Netlink / NfGenMsg / CTA")
    flow = pkt[L.CTA]
    orig = flow.attrs[0]
    assert type(orig).__name__ == "CTA_TUPLE_ORIG" and orig.nla_type == 0x8001
    ip = orig[L.CTA_TUPLE_IP]
    assert [type(a).__name__ for a in ip.attrs] == ["CTA_IP_V6_SRC", "CTA_IP_V6_DST"]
    assert ip.attrs[0].value == "2001:db8::1"
    assert L.Netlink(data).getlayer(L.CTA_ZONE).value == 3
    err = L.Netlink(recording("get_enoent")[1][1])
    assert err[L.NlMsgErr].error == -2 and err[L.NlMsgErr].req_type == 0x101
    assert "IPCTNL_MSG_CT_GET" in err[L.NlMsgErr].sprintf("%req_type%")
    assert err.sprintf("%Netlink.nlmsg_type%") == "NLMSG_ERROR"


def test_crafted_request_builds_to_the_reference_tools_bytes() -> None:
    sent = recording("get_enoent")[0][1]
    seq = struct.unpack_from("=I", sent, 8)[0]
    crafted = (
        L.Netlink(nlmsg_type="IPCTNL_MSG_CT_GET", nlmsg_flags="REQUEST|ACK", nlmsg_seq=seq)
        / L.NfGenMsg(nfgen_family=2)
        / L.CTA(attrs=[
            L.CTA_TUPLE_ORIG(attrs=[
                L.CTA_TUPLE_IP(attrs=[L.CTA_IP_V4_SRC(value="192.0.2.7"),
                                      L.CTA_IP_V4_DST(value="198.51.100.7")]),
                L.CTA_TUPLE_PROTO(attrs=[L.CTA_PROTO_NUM(value=6), L.CTA_PROTO_SRC_PORT(value=7000),
                                         L.CTA_PROTO_DST_PORT(value=22)])]),
            L.CTA_PROTOINFO(attrs=[L.CTA_PROTOINFO_TCP(attrs=[
                L.CTA_PROTOINFO_TCP_FLAGS_ORIGINAL(flags=10, mask=10),
                L.CTA_PROTOINFO_TCP_FLAGS_REPLY(flags=10, mask=10)])]),
        ]))
    assert bytes(crafted) == sent


def test_crafted_messages_chain_and_cooked_frames_round_trip() -> None:
    one = L.Netlink(nlmsg_type=0x102, nlmsg_flags="REQUEST+ACK") / L.NfGenMsg(nfgen_family=10) / L.CTA(
        attrs=[L.CTA_MARK(value=7), L.CTA_HELP(attrs=[L.CTA_HELP_NAME(value=b"ftp")])])
    two = one / L.Netlink(nlmsg_type="IPCTNL_MSG_CT_GET_STATS", nlmsg_flags=1) / L.NfGenMsg()
    data = bytes(two)
    msgs = [decode_message(data, off) for off, *_ in iter_messages(data)]
    assert [(m.name, m.family) for m in msgs] == [("IPCTNL_MSG_CT_DELETE", 10), ("IPCTNL_MSG_CT_GET_STATS", 0)]
    assert msgs[0].attrs.to_python() == [("CTA_MARK", 7), ("CTA_HELP", [("CTA_HELP_NAME", "ftp")])]
    frame = L.NetlinkCooked() / two
    again = L.NetlinkCooked(bytes(frame))
    assert again.protocol == 12 and again.hatype == 824 and bytes(again.payload) == data
    assert_dissection_agrees(again.payload, data)


def test_every_generated_attribute_class_round_trips_through_our_codec() -> None:
    tables = {**NL.ATTRS, **CT.ATTRS}
    assert set(L.ATTR_SETS) == set(tables)
    for set_name, rows in tables.items():
        assert set(L.ATTR_SETS[set_name]) == set(rows)
        for atype, cls in L.ATTR_SETS[set_name].items():
            attr = cls()
            data = bytes(attr)
            assert len(data) % 4 == 0
            decoded = decode_attrs(tables, set_name, data)
            assert [(a.type, a.name, a.flags) for a in decoded] == [
                (atype, rows[atype][0], 0x8000 if rows[atype][1] == "nested" else 0)]
            again = L.dispatcher(set_name)(data)
            assert type(again) is cls and L.to_python([again]) == decoded.to_python()


def test_odd_payloads_stay_raw_like_our_decoder() -> None:
    odd = bytes(L.NLA(nla_type=8, value=b"\x01\x02"))  # CTA_MARK is a u32: 2 bytes do not fit
    pkt = L.CTA(attrs=[L.dispatcher("ctattr_type")(odd)])
    assert pkt.attrs[0].name == "CTA_MARK" and pkt.attrs[0].value == b"\x01\x02"
    assert L.to_python(pkt.attrs) == decode_attrs(CT.ATTRS, "ctattr_type", odd).to_python()


def test_only_the_scapy_layer_imports_scapy() -> None:
    importers = [p.relative_to(ROOT).as_posix()
                 for top in ("nfnl", "ctnetlink", "tools") for p in (ROOT / top).rglob("*.py")
                 if re.search(r"^\s*(from|import)\s+scapy\b", p.read_text(), re.M)]
    assert importers == ["nfnl/scapy_layer.py"]
    code = ("import sys, nfnl.replay, nfnl.pytest_plugin, ctnetlink.client; "
            "print(any(m == 'scapy' or m.startswith('scapy.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_fixture_corpus_dissects_and_agrees() -> None:
    # the netlink corpus (fixtures/sync holds Ethernet captures of conntrackd's sync traffic)
    corpus = sorted((ROOT / "fixtures").glob("*.pcap")) if (ROOT / "fixtures").is_dir() else []
    assert corpus, "no fixtures/ corpus in this checkout"
    for path in corpus:
        assert_pcap_agrees(path)


def test_raw_bodies_for_other_protocols() -> None:
    frame = L.NetlinkCooked(protocol=0) / L.Netlink(nlmsg_type=18, nlmsg_flags=0x301) / Raw(b"\0" * 4)
    again = L.NetlinkCooked(bytes(frame))
    assert isinstance(again[L.Netlink].payload, Raw)
    assert set_seq(bytes(again.payload), 0) == bytes(again.payload)
