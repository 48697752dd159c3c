"""Malformed netlink input raises the one decode error and never hangs or crashes.

The contract tested here: for any bytes, the decoding entry points

    nfnl.message.iter_messages, decode_message, decode_datagram, parse_error (on a message
    framed by iter_messages), nfnl.codec.decode_attrs, iter_raw_attrs,
    ctnetlink.decode.decode_flow, decode_expect

either return or raise :class:`nfnl.errors.NetlinkDecodeError` (a ``ValueError``) — no
``struct.error``, ``IndexError``, ``KeyError``, ``RecursionError`` or anything else.
``DumpReader.feed`` may in addition raise :class:`nfnl.errors.NetlinkError` when the
bytes hold a well-formed NLMSG_ERROR with a non-zero errno (that is an answer, not a
decoding failure). Every test runs under an alarm, so a hang fails instead of blocking.

Crafted cases cover truncated headers, lengths too small and too large, attributes
running past their container, zero-length attributes (the classic endless loop), nests
deeper than the limits, values of the wrong size; hypothesis adds random bytes and
random mutations of the captured kernel messages.
"""
from __future__ import annotations

import signal
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.kernel_data import MESSAGES, register_ctnetlink  # noqa: E402

from ctnetlink import _compiled as C  # noqa: E402
from ctnetlink import decode as D  # noqa: E402
from ctnetlink.decode import Decoder, decode_expect, decode_flow  # noqa: E402
from nfnl.codec import MAX_DEPTH, decode_attrs, iter_raw_attrs  # noqa: E402
from nfnl.errors import NetlinkDecodeError, NetlinkError  # noqa: E402
from nfnl.message import (  # noqa: E402
    DumpReader, decode_datagram, decode_message, iter_messages, parse_error,
)

register_ctnetlink()
HDR = struct.Struct("=IHHII")
SAMPLES = [m.raw for m in MESSAGES if m.kind in ("flow", "expect", "error", "stats_cpu")][::3]


@pytest.fixture(autouse=True)
def alarm():
    def hung(signum, frame):
        raise TimeoutError("decoding hung")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def nl(mtype: int, payload: bytes = b"", flags: int = 0, ln: int | None = None) -> bytes:
    n = 16 + len(payload) if ln is None else ln
    return HDR.pack(n, mtype, flags, 1, 0) + payload


def nfnl(mtype: int, attrs: bytes, family: int = 2) -> bytes:
    return nl(mtype, bytes((family, 0, 0, 0)) + attrs)


def attr(atype: int, payload: bytes, ln: int | None = None) -> bytes:
    n = 4 + len(payload) if ln is None else ln
    return struct.pack("=HH", n, atype) + payload + b"\0" * (-len(payload) % 4)


def nest(atype: int, *parts: bytes) -> bytes:
    return attr(atype | 0x8000, b"".join(parts))


def only_decode_errors(fn, *args) -> object:
    """Call ``fn``; a NetlinkDecodeError is fine, any other exception fails the test."""
    try:
        return fn(*args)
    except NetlinkDecodeError:
        return None


def everything(buf: bytes) -> None:
    """Every entry point over ``buf``; only NetlinkDecodeError may escape each."""
    only_decode_errors(lambda: list(iter_messages(buf)))
    only_decode_errors(decode_datagram, buf)
    only_decode_errors(decode_message, buf)
    only_decode_errors(decode_flow, buf)
    only_decode_errors(decode_expect, buf)
    only_decode_errors(Decoder(False).decode, buf, 0, len(buf))
    only_decode_errors(decode_attrs, C.ATTRS, "ctattr_type", buf)
    only_decode_errors(decode_attrs, C.ATTRS, "ctattr_expect", buf)
    only_decode_errors(lambda: list(iter_raw_attrs(buf)))
    try:
        for off, ln, mtype, flags, *_ in iter_messages(buf):
            if mtype == 2:
                only_decode_errors(parse_error, buf, off, ln, flags)
    except NetlinkDecodeError:
        pass
    try:
        DumpReader(1).feed(buf)
    except (NetlinkDecodeError, NetlinkError):
        pass


def expect_decode_error(fn, *args) -> NetlinkDecodeError:
    with pytest.raises(NetlinkDecodeError) as e:
        fn(*args)
    assert isinstance(e.value, ValueError)
    return e.value


# --- truncated headers and bad message lengths -------------------------------------------

@pytest.mark.parametrize("n", [1, 4, 8, 15])
def test_truncated_netlink_header(n: int) -> None:
    buf = nfnl(0x100, b"")[:n]
    expect_decode_error(lambda: list(iter_messages(buf)))
    expect_decode_error(decode_datagram, buf)
    expect_decode_error(decode_message, buf)
    expect_decode_error(decode_flow, buf)
    expect_decode_error(decode_expect, buf)


def test_empty_input() -> None:
    assert list(iter_messages(b"")) == [] and decode_datagram(b"") == []
    expect_decode_error(decode_message, b"")
    expect_decode_error(decode_flow, b"")
    assert decode_attrs(C.ATTRS, "ctattr_type", b"") == []


@pytest.mark.parametrize("ln", [0, 1, 15, 21, 1000, 0xFFFFFFFF])
def test_message_length_too_small_or_too_large(ln: int) -> None:
    buf = nl(0x100, bytes(4), ln=ln)  # 20 bytes in the buffer
    expect_decode_error(lambda: list(iter_messages(buf)))
    expect_decode_error(decode_datagram, buf)
    expect_decode_error(decode_message, buf)
    if ln > 20:
        expect_decode_error(decode_flow, buf)
        expect_decode_error(decode_expect, buf)


@pytest.mark.parametrize("ln", [16, 17, 18, 19])
def test_truncated_nfgenmsg(ln: int) -> None:
    buf = nl(0x100, bytes(ln - 16))
    assert len(buf) == ln
    expect_decode_error(decode_message, buf)
    expect_decode_error(decode_flow, buf)
    expect_decode_error(decode_expect, buf)


def test_second_message_truncated() -> None:
    good = nfnl(0x100, attr(8, b"\0\0\0\7"))
    for cut in range(1, len(good)):
        buf = good + good[:cut]
        expect_decode_error(lambda: list(iter_messages(buf)))
        expect_decode_error(decode_datagram, buf)
        assert decode_message(buf, 0).attrs["CTA_MARK"] == 7


# --- attributes ------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b"\x08", b"\x08\x00", b"\x08\x00\x08"], ids=["1", "2", "3"])
def test_truncated_attribute_header(body: bytes) -> None:
    buf = nfnl(0x100, body)
    expect_decode_error(decode_message, buf)
    expect_decode_error(decode_flow, buf)
    expect_decode_error(decode_attrs, C.ATTRS, "ctattr_type", body)
    expect_decode_error(lambda: list(iter_raw_attrs(body)))


@pytest.mark.parametrize("ln", [0, 1, 2, 3], ids=lambda n: f"nla_len={n}")
def test_attribute_length_too_small_never_loops(ln: int) -> None:
    body = attr(8, b"\0\0\0\1", ln=ln)
    buf = nfnl(0x100, body)
    expect_decode_error(decode_message, buf)
    expect_decode_error(decode_flow, buf)
    expect_decode_error(decode_expect, buf)
    expect_decode_error(lambda: list(iter_raw_attrs(body)))


def test_attribute_length_beyond_the_message() -> None:
    body = attr(8, b"\0\0\0\1", ln=200)
    expect_decode_error(decode_message, nfnl(0x100, body))
    expect_decode_error(decode_flow, nfnl(0x100, body))


def test_nested_attribute_beyond_its_container() -> None:
    inner = attr(1, b"\x0a\0\0\1", ln=40)  # claims 40 bytes inside an 8-byte nest
    body = attr(1 | 0x8000, inner[:8]) + attr(8, b"\0\0\0\1")
    buf = nfnl(0x100, body)
    expect_decode_error(decode_message, buf)
    expect_decode_error(decode_flow, buf)
    expect_decode_error(decode_expect, buf)
    expect_decode_error(decode_attrs, C.ATTRS, "ctattr_type", body)


def test_zero_length_attribute_inside_a_nest() -> None:
    body = nest(1, nest(1, struct.pack("=HH", 0, 1) + bytes(4)))
    expect_decode_error(decode_message, nfnl(0x100, body))
    expect_decode_error(decode_flow, nfnl(0x100, body))


def test_values_of_the_wrong_size() -> None:
    """The generic decoder keeps them verbatim; the model decoder refuses them."""
    for name, atype, payload in (("CTA_MARK", 8, b"\0\0\7"), ("CTA_TIMEOUT", 7, bytes(8)),
                                 ("CTA_ZONE", 18, bytes(4))):
        buf = nfnl(0x100, attr(atype, payload))
        assert decode_message(buf).attrs[name] == payload
        expect_decode_error(decode_flow, buf)
    v4 = nfnl(0x100, nest(1, nest(1, attr(1, bytes(16)))))  # an IPv6-sized V4 address
    expect_decode_error(decode_flow, v4)
    assert decode_message(v4).attrs["CTA_TUPLE_ORIG"]["CTA_TUPLE_IP"]["CTA_IP_V4_SRC"] == bytes(16)


def test_strings_that_are_not_utf8_or_not_terminated() -> None:
    for raw in (b"\xff\xfe\0", b"ftp", b"f\0tp\0"):
        buf = nfnl(0x100, nest(5, attr(1, raw)))
        assert decode_message(buf).attrs["CTA_HELP"]["CTA_HELP_NAME"] == raw
        assert isinstance(decode_flow(buf).helper, str)


def test_unknown_attributes_are_kept() -> None:
    buf = nfnl(0x100, attr(200, b"abc") + attr(8, b"\0\0\0\1"))
    msg = decode_message(buf)
    assert [(a.type, a.name, a.value) for a in msg.attrs] == [(200, None, b"abc"), (8, "CTA_MARK", 1)]
    assert decode_flow(buf).unknown == ((200, b"abc"),)


# --- nesting limits ------------------------------------------------------------------------------

def deep(depth: int, atype: int = 1, leaf: bytes = b"") -> bytes:
    """``depth`` nests of type ``atype`` around ``leaf`` (default: an unknown attribute)."""
    body = leaf or attr(99, b"\0\0\0\0")
    for _ in range(depth):
        body = nest(atype, body)
    return body


def test_generic_nesting_limit() -> None:
    """A self-referencing attribute set (no kernel schema has one, but tables are data)."""
    table = {"loop": {1: ("LOOP", "nested", None, "loop")}}
    assert decode_attrs(table, "loop", deep(MAX_DEPTH))
    err = expect_decode_error(decode_attrs, table, "loop", deep(MAX_DEPTH + 1))
    assert "deeply" in str(err)
    expect_decode_error(decode_attrs, table, "loop", deep(5000))  # no RecursionError


def test_model_decoder_nesting_limit(monkeypatch) -> None:
    table = {k: dict(v) for k, v in C.ATTRS.items()}
    table["ctattr_tuple"][1] = ("CTA_TUPLE_IP", "nested", None, "ctattr_tuple")

    class Fake:
        ATTRS = table

    monkeypatch.setattr(D, "C", Fake)
    zone = attr(3, b"\0\7")  # CTA_TUPLE_ZONE
    ok = nfnl(0x100, nest(1, deep(D.MAX_DEPTH - 1, leaf=zone)))
    Decoder(False).decode(ok, 0, len(ok))
    for depth in (D.MAX_DEPTH, 3000):
        bad = nfnl(0x100, nest(1, deep(depth, leaf=zone)))
        err = expect_decode_error(Decoder(False).decode, bad, 0, len(bad))
        assert "deeply" in str(err)


def test_deep_unknown_nests_are_opaque() -> None:
    body = deep(3000, atype=99)
    assert len(body) > 12000
    buf = nfnl(0x100, body)
    assert decode_message(buf).attrs[0].value == body[4:]
    assert decode_flow(buf).unknown == ((99 | 0x8000 & 0x3FFF, body[4:]),)


# --- NLMSG_ERROR --------------------------------------------------------------------------

def test_error_messages_of_every_length() -> None:
    full = nl(2, struct.pack("=i", -2) + nfnl(0x101, attr(8, bytes(4))))
    for ln in range(16, len(full) + 1):
        buf = full[:ln]
        buf = struct.pack("=I", ln) + buf[4:]
        if ln < 20:
            expect_decode_error(parse_error, buf, 0, ln, 0)
            expect_decode_error(decode_message, buf)
        else:
            assert parse_error(buf, 0, ln, 0).errno == 2
            assert decode_message(buf).error.errno == 2


def test_error_with_bad_extended_ack() -> None:
    req = nfnl(0x100, b"")
    tlv = attr(1, b"oops", ln=90)
    buf = nl(2, struct.pack("=i", -22) + req + tlv, flags=0x200)
    expect_decode_error(parse_error, buf, 0, len(buf), 0x200)
    expect_decode_error(decode_message, buf)
    with pytest.raises(NetlinkDecodeError):
        DumpReader(1).feed(buf)


def test_error_echo_claiming_a_huge_request() -> None:
    echo = HDR.pack(0xFFFFFFFF, 0x100, 5, 1, 0)
    buf = nl(2, struct.pack("=i", -1) + echo)
    err = parse_error(buf, 0, len(buf), 0)
    assert err.errno == 1 and err.request == echo


# --- random input ---------------------------------------------------------------------------

FUZZ = settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(buf: bytes) -> None:
    everything(buf)


@FUZZ
@given(st.binary(max_size=200), st.sampled_from([0x100, 0x102, 0x200, 0x104, 0x105, 2, 3]),
       st.integers(0, 0xFFFF))
def test_random_bodies_behind_valid_headers(body: bytes, mtype: int, flags: int) -> None:
    everything(HDR.pack(20 + len(body), mtype, flags, 1, 0) + b"\x02\0\0\0" + body)


@st.composite
def mutated(draw) -> bytes:
    buf = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["byte", "u16", "u32-len", "truncate", "attr-len"]))
        if how == "byte" and buf:
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
        elif how == "u16" and len(buf) >= 2:
            i = draw(st.integers(0, len(buf) - 2))
            buf[i:i + 2] = struct.pack("=H", draw(st.integers(0, 0xFFFF)))
        elif how == "u32-len" and len(buf) >= 4:
            buf[0:4] = struct.pack("=I", draw(st.integers(0, len(buf) + 8)))
        elif how == "truncate":
            del buf[draw(st.integers(0, len(buf))):]
        elif how == "attr-len" and len(buf) > 24:
            # rewrite the length of an attribute header at a 4-aligned offset
            i = 20 + 4 * draw(st.integers(0, (len(buf) - 24) // 4))
            buf[i:i + 2] = struct.pack("=H", draw(st.sampled_from([0, 1, 3, 4, 5, 8, 255, 0xFFFF])))
    return bytes(buf)


@FUZZ
@given(mutated())
def test_mutated_kernel_messages(buf: bytes) -> None:
    everything(buf)


@FUZZ
@given(st.lists(mutated(), min_size=2, max_size=4))
def test_mutated_datagrams(parts: list[bytes]) -> None:
    everything(b"".join(p + b"\0" * (-len(p) % 4) for p in parts))
