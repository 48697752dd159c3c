"""The conntrackd sync wire codec on hand-made and specified datagrams (no kernel).

The decoded datagrams of the specification (conntrackd.md §5.14, observed from 1.4.7)
decode to the expected objects and re-encode byte for byte; the fast codec agrees with
construct's interpreter on the same declarations; every kind of malformed input raises
:class:`SyncDecodeError` with the reason the C receiver would count, and nothing else
(hypothesis); random flows survive encode -> decode -> encode unchanged.
"""
from __future__ import annotations

import ipaddress
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conntrack_tools.conntrackd.wire import _compiled as WC
from conntrack_tools.conntrackd.wire import constants as K
from conntrack_tools.conntrackd.wire import schema as S
from conntrack_tools.conntrackd.wire.codec import (
    _CT_TABLE, CT_DECODER, SyncDecodeError, SyncMessage, attr_list, decode_datagram,
    decode_payload, encode_datagram, encode_expect, encode_flow, encode_flow_reference,
    encode_message, flow_from_attrs, flow_message, labels_payload, parse_attrs, walk,
)
from conntrack_tools.conntrackd.wire.shapes import Decoder, slots_builder
from ctnetlink.model import Expect, Flow, Synproxy, TcpInfo, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.syncwire import assert_interpreter_agrees, flows  # noqa: E402


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


CT_NEW_5141 = h("""10 00 00 54 6b 07 14 60 00 0c 00 00 c0 a8 32 0a c0 a8 3c 14 00 08
00 05 00 00 00 0c 00 05 00 02 06 00 00 00 00 08 00 03 9c 40 00 50 00 05 00 04 03 00 00 00 00 08
00 06 00 00 01 2c 00 08 00 07 00 00 00 07 00 10 00 1f 00 00 00 00 00 00 00 00 00 00 00 00""")
SNAT_5142 = h("""10 00 0064 6b071486 000c 0000 c0a8320e c0a83c18 0008 0005 0000019e
0005 0002 06 000000 0008 0003 03e9 0016 0005 0004 03 000000 0008 0006 000001f4
0008 0007 00000000 0008 000c 0a630001 0006 000e d107 0000
0010 001f 00000000 00000000 00000000""")
EXP_5145 = h("""13 00 007c 6b0715e4 000c 0000 0a4d0001 0a4d0002 0005 0002 06 000000
0008 0003 b929 0015 000c 0004 0a4d0001 0a4d0002 0005 0006 06 000000 0008 0007 0000 2710
000c 0008 ffffffff ffffffff 0005 000a 06 000000 0008 000b 0000 ffff 0008 000c 0000012c
0008 000d 00000000 0008 000e 00000000 0008 0013 66747000""")
CONTROL_5144 = [h(x) for x in (
    "1a 10 0008 6b071548", "1a 30 0008 6b07145a", "1a 02 0010 6b07148f 00000000 00000000",
    "1a 22 0010 6b0715c2 00000000 00000000", "1a 08 0010 6b071490 6b0714e9 6b071516",
    "1a 04 0010 6b0714df 6b071567 6b07156a", "1a 68 0010 6b071649 00001388 0000138c")]
SPEC = [CT_NEW_5141, SNAT_5142, EXP_5145, *CONTROL_5144]


def test_ct_new_of_the_spec() -> None:
    (m,) = decode_datagram(CT_NEW_5141)
    assert (m.type, m.flags, m.seq) == (K.NET_T_STATE_CT_NEW, 0, 1795626080)
    f = m.payload
    assert f.family == 2
    assert f.orig == Tuple(src="192.168.50.10", dst="192.168.60.20", proto=6, sport=40000,
                           dport=80)
    assert f.reply == Tuple(src="192.168.60.20", dst="192.168.50.10", proto=6, sport=80,
                            dport=40000)
    assert (f.status, f.timeout, f.mark, f.tcp.state) == (0x0C, 300, 7, 3)
    assert f.synproxy == Synproxy(isn=0, its=0, tsoff=0)
    assert encode_datagram([m]) == CT_NEW_5141
    assert flow_message(m.type, f, m.seq) == CT_NEW_5141


def test_snat_port_is_little_endian_and_lands_in_the_reply_tuple() -> None:
    (m,) = decode_datagram(SNAT_5142)
    assert m.payload.reply.dst == ipaddress.ip_address("10.99.0.1")
    assert m.payload.reply.dport == 2001
    assert ("NTA_SPAT_PORT", (2001,)) in attr_list(SNAT_5142[8:])
    assert encode_message(m) == SNAT_5142


def test_expectation_of_the_spec() -> None:
    (m,) = decode_datagram(EXP_5145)
    e = m.payload
    assert e.master == Tuple(src="10.77.0.1", dst="10.77.0.2", proto=6, sport=47401, dport=21)
    assert e.tuple == Tuple(src="10.77.0.1", dst="10.77.0.2", proto=6, sport=0, dport=10000)
    assert e.mask.dport == 0xFFFF and e.mask.src == ipaddress.ip_address("255.255.255.255")
    assert (e.timeout, e.flags, e.klass, e.helper) == (300, 0, 0, "ftp")
    assert encode_message(m) == EXP_5145


@pytest.mark.parametrize("raw", CONTROL_5144, ids=lambda b: b.hex())
def test_control_messages_of_the_spec(raw: bytes) -> None:
    (m,) = decode_datagram(raw)
    assert m.type == K.NET_T_CTL and m.payload is None
    assert encode_message(m) == raw
    assert m.has_range == (len(raw) == 16)


def test_control_constructors() -> None:
    assert encode_message(SyncMessage.alive(0x6B071548)) == CONTROL_5144[0]
    assert encode_message(SyncMessage.alive(0x6B07145A, K.NET_F_HELLO)) == CONTROL_5144[1]
    assert encode_message(SyncMessage.resync(0x6B07148F)) == CONTROL_5144[2]
    assert encode_message(SyncMessage.ack(0x6B071490, 0x6B0714E9, 0x6B071516)) == CONTROL_5144[4]
    assert encode_message(SyncMessage.nack(0x6B0714DF, 0x6B071567, 0x6B07156A)) == CONTROL_5144[5]
    m = decode_datagram(CONTROL_5144[6])[0]
    assert m.is_ack and m.hello and m.hello_back and m.is_ctl and not m.is_data
    assert SyncMessage(K.NET_T_STATE_CT_NEW, K.NET_F_HELLO).is_data
    assert not SyncMessage(K.NET_T_STATE_CT_NEW, K.NET_F_ACK).is_data


def test_several_messages_per_datagram() -> None:
    data = b"".join(SPEC)
    msgs = decode_datagram(data)
    assert len(msgs) == len(SPEC)
    assert encode_datagram(msgs) == data


# --- the interpreter agrees ------------------------------------------------------------------

@pytest.mark.parametrize("raw", SPEC, ids=lambda b: b[:8].hex())
def test_interpreter_agrees_on_the_spec(raw: bytes) -> None:
    assert_interpreter_agrees(raw)


def test_compiled_tables_follow_the_schema() -> None:
    assert WC.CT_ATTRS == S.attr_table(S.NTA_CT)
    assert WC.EXP_ATTRS == S.attr_table(S.NTA_EXP)
    assert struct.calcsize(WC.NETHDR_FMT) == S.NetHdr.sizeof() == K.NETHDR_SIZ
    assert struct.calcsize(WC.NETHDR_ACK_FMT) == S.NetHdrAck.sizeof() == K.NETHDR_ACK_SIZ
    # the exact lengths the 1.4.7 receiver demands (conntrackd.md §5.5/§5.6)
    exact = {n: row[3] for n, row in WC.CT_ATTRS.items()}
    assert exact == {0: 12, 1: 36, 2: 5, 3: 8, 4: 5, 5: 8, 6: 8, 7: 8, 8: 12, 9: 36, 10: 5, 11: 8,
                     12: 8, 13: 8, 14: 6, 15: 6, 16: 28, 17: 5, 18: 8, 19: 8, 20: 5, 21: 5, 22: 5,
                     23: 5, 24: 6, 25: 5, 26: 5, 27: None, 28: None, 29: 20, 30: 20, 31: 16,
                     32: 6}
    assert (WC.CT_ATTRS[27][4], WC.CT_ATTRS[28][4], WC.EXP_ATTRS[19][4], WC.EXP_ATTRS[20][4]) == (
        16, 1028, 16, 32)


# --- malformed input ---------------------------------------------------------------------------

def reasons(data: bytes) -> list:
    out = []
    for m in walk(data):
        if isinstance(m, SyncDecodeError):
            out.append(m.reason)
        else:
            try:
                decode_payload(m)
                out.append("ok")
            except SyncDecodeError as e:
                out.append(e.reason)
    return out


def with_attr(attr: bytes) -> bytes:
    body = CT_NEW_5141[8:] + attr
    return struct.pack(">BBHI", 0x10, 0, 8 + len(body), 1) + body


@pytest.mark.parametrize("data, expected", [
    (b"\x10\x00\x00", [K.TRUNCATED]),
    (CT_NEW_5141 + b"\x10\x00\x00", ["ok", K.TRUNCATED]),
    (b"\x10\x00\x00\x00\x00\x00\x00\x01", [K.BAD_SIZE]),
    (struct.pack(">BBHI", 0x10, 0, 500, 1) + CT_NEW_5141[8:], [K.BAD_SIZE]),
    (struct.pack(">BBHI", 0x10, 0, 4, 1), [K.BAD_SIZE]),
    (h("1a 08 0010 00000001 00000002"), [K.BAD_SIZE]),
    (h("1a 08 000c 00000001 00000002"), [K.TRUNCATED]),
    (h("1a 08 0008 00000001") + bytes(8), [K.BAD_SIZE]),
    (b"\x20" + CT_NEW_5141[1:] + CT_NEW_5141, [K.BAD_VERSION, "ok"]),
    (h("17 00 0008 00000001"), [K.BAD_TYPE]),
    (h("1a 10 0008 00000001"), ["ok"]),
    (struct.pack(">BBHI", 0x10, 0, 18, 1) + h("000a 0000 c0a8320a c0a8"), [K.BAD_PAYLOAD]),
    (with_attr(h("0008 0021 00000000")), [K.BAD_PAYLOAD]),
    (with_attr(h("0003 0005 00000000")), [K.BAD_PAYLOAD]),
    (with_attr(h("0020 0005 00000000")), [K.BAD_PAYLOAD]),
    (with_attr(h("0014 001b") + b"sixteen-chars-x\0"), [K.BAD_PAYLOAD]),
    (with_attr(h("0006 001c 0001 0000")), [K.BAD_PAYLOAD]),
    (with_attr(h("0010 001b") + b"ftp-2\0" + bytes(6)), ["ok"]),
    (with_attr(h("0000 0000")), ["ok"]),  # a 4-byte tail is not an attribute
    (bytes(65537), [K.OVERSIZED]),
])
def test_malformed(data: bytes, expected: list) -> None:
    assert reasons(data) == expected
    if expected != ["ok"]:
        with pytest.raises(SyncDecodeError) as info:
            decode_datagram(data)
        assert info.value.reason == next(r for r in expected if r != "ok")


def test_a_repeated_attribute_overwrites() -> None:
    (m,) = decode_datagram(with_attr(h("0008 0007 00000009")))
    assert m.payload.mark == 9


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_the_decode_error(data: bytes) -> None:
    try:
        decode_datagram(data)
    except SyncDecodeError as e:
        assert e.reason in K.REASONS


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SPEC + [b"".join(SPEC)]), st.data())
def test_corrupted_datagrams_raise_only_the_decode_error(raw: bytes, data) -> None:
    buf = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buf)))
    for candidate in (bytes(buf), bytes(buf[:cut])):
        try:
            msgs = decode_datagram(candidate)
        except SyncDecodeError as e:
            assert e.reason in K.REASONS
        else:
            for m in msgs:  # whatever decodes also encodes
                encode_message(m)


# --- round trips of random flows ---------------------------------------------------------------

u8, u16, u32 = st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows(), st.integers(0, 5), u32, st.booleans())
def test_flow_round_trip(flow: Flow, mtype: int, seq: int, wt: bool) -> None:
    mtype %= 3
    raw = flow_message(mtype, flow, seq, window_tracking=wt)
    (m,) = decode_datagram(raw)
    assert flow_message(mtype, m.payload, seq, window_tracking=wt) == raw
    back = m.payload
    assert back.orig == flow.orig and back.status == flow.status
    assert (back.mark, back.zone, back.helper, back.labels) == (
        flow.mark, flow.zone, flow.helper, flow.labels)
    assert_interpreter_agrees(raw)


def test_commit_timeout_leaves_timeout_out_and_window_tracking_adds_scales() -> None:
    (m,) = decode_datagram(CT_NEW_5141)
    f = m.payload.copy(tcp=TcpInfo(state=3, wscale_orig=7, wscale_reply=10))
    names = [n for n, _ in attr_list(encode_flow(f, commit_timeout=True, window_tracking=True))]
    assert "NTA_TIMEOUT" not in names
    assert names[4:7] == ["NTA_TCP_STATE", "NTA_TCP_WSCALE_ORIG", "NTA_TCP_WSCALE_REPL"]


def test_labels_words() -> None:
    assert labels_payload(1 | 1 << 63, 16) == h("00000001 80000000 00000000 00000000")
    assert labels_payload(1 << 40) == h("00000000 00000100")


def test_expect_round_trip_with_nat_and_ipv6() -> None:
    e = Expect(family=10, master=Tuple(src="2001:db8::1", dst="2001:db8::2", proto=17,
                                       sport=1000, dport=69),
               tuple=Tuple(src="2001:db8::2", dst="2001:db8::1", proto=17, sport=0, dport=1000),
               mask=Tuple(src="ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                          dst="ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", proto=17, sport=0,
                          dport=0xFFFF),
               timeout=30, flags=4, klass=1, helper="tftp", fn="nat-follow-master")
    raw = encode_message(SyncMessage(K.NET_T_STATE_EXP_NEW, 0, 9, e))
    (m,) = decode_datagram(raw)
    assert m.payload == e
    e4 = Expect(family=2, master=Tuple(src="10.0.1.1", dst="10.0.2.2", proto=6, sport=45021,
                                       dport=21),
                tuple=Tuple(src="10.0.2.2", dst="10.0.3.33", proto=6, sport=0, dport=50000),
                mask=Tuple(src="255.255.255.255", dst="255.255.255.255", proto=6, sport=0,
                           dport=0xFFFF),
                timeout=300, flags=0, nat_dir=1,
                nat_tuple=Tuple(src="10.0.1.1", dst="0.0.0.0", proto=6, sport=50000, dport=0))
    raw = encode_expect(e4)
    names = [n for n, _ in attr_list(raw, True)]
    assert names[-4:] == ["NTA_EXP_NAT_IPV4", "NTA_EXP_NAT_L4PROTO", "NTA_EXP_NAT_PORT",
                          "NTA_EXP_NAT_DIR"]
    (m,) = decode_datagram(encode_message(SyncMessage(K.NET_T_STATE_EXP_DEL, 0, 1, e4)))
    assert m.payload == e4


# --- the fast paths equal the reference paths ----------------------------------------------------

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows(), st.booleans(), st.booleans(), st.integers(0, 2), u32, u8,
       st.sampled_from([None, 0, 0x80, 0x100, 0x180]))
def test_generated_encoders_equal_the_reference(flow: Flow, wt: bool, ct: bool, mtype: int,
                                                seq: int, flags: int, nat_done) -> None:
    if nat_done is None:  # no status known: every NAT difference counts
        flow = flow.copy(status=None)
    else:  # NAT done flags without (or with) a translated reply, ICMP included
        flow = flow.copy(status=flow.status | nat_done)
    body = encode_flow_reference(flow, commit_timeout=ct, window_tracking=wt)
    assert encode_flow(flow, commit_timeout=ct, window_tracking=wt) == body
    whole = flow_message(mtype, flow, seq, flags, commit_timeout=ct, window_tracking=wt)
    assert whole == struct.pack(">BBHI", 0x10 | mtype, flags, 8 + len(body), seq) + body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows(), st.booleans())
def test_shapes_decode_as_the_reference(flow: Flow, wt: bool) -> None:
    body = encode_flow_reference(flow, window_tracking=wt)
    for payload in (body, body[:len(body) - 3] if len(body) > 3 else body):
        try:
            expected = flow_from_attrs(parse_attrs(payload, _CT_TABLE))
        except SyncDecodeError as e:
            with pytest.raises(SyncDecodeError) as info:
                CT_DECODER.decode(payload, 0, len(payload))
            assert (info.value.reason, info.value.offset) == (e.reason, e.offset)
            continue
        assert CT_DECODER.decode(payload, 0, len(payload)) == expected
        slots = Decoder(WC.CT_ATTRS, slots_builder)
        assert slots.decode(payload, 0, len(payload)) == parse_attrs(payload, _CT_TABLE)


def test_layouts_of_the_same_length_do_not_mix() -> None:
    """Two layouts of one length (TCP with a state vs UDP with a mark) each decode as
    themselves, in either order and repeatedly."""
    tcp = Flow(family=2, orig=Tuple(src="10.0.0.1", dst="10.0.0.2", proto=6, sport=1, dport=2),
               status=8, tcp=TcpInfo(state=3))
    udp = Flow(family=2, orig=Tuple(src="10.0.0.1", dst="10.0.0.2", proto=17, sport=1, dport=2),
               status=8, timeout=7)
    a, b = flow_message(0, tcp, 1), flow_message(0, udp, 2)
    assert len(a) == len(b)
    for data in (a + b, b + a, a + a + b + b):
        for m in decode_datagram(data):
            assert m.payload.orig.proto == (6 if m.seq == 1 else 17)
            assert (m.payload.tcp is not None) == (m.seq == 1)
