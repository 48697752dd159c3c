"""The model and the package API, without a kernel.

Records (``Tuple``, ``Counters`` ...) are immutable values; ``Flow``/``Expect``/``Event``
are mutable, compare by value and are unhashable; ``Flow.key`` is the identity;
constructors are keyword-only; status and states take names and read back as enums;
``merge``/``diff`` track state; ``Tuple.reversed`` derives a reply as ``conntrack -I``;
``ctnetlink``/``nfnl`` export their public names lazily. The encoder is checked against
the decoder (every request field survives a round trip) and against the protocol table.
"""
from __future__ import annotations

import copy
import ipaddress
import pickle
import random
import subprocess
import sys
from pathlib import Path

import pytest

import ctnetlink
import nfnl
from ctnetlink.constants import PORT_ATTR_PROTOS, PROTOCOLS
from ctnetlink.decode import decode_expect, decode_flow
from ctnetlink import _compiled, _encoders
from nfnl import compile as compiler
from ctnetlink.encode import encode_expect, encode_flow
from ctnetlink.encodegen import Encoder
from ctnetlink.enums import DccpState, EventType, SctpState, Status, TcpState
from ctnetlink.formats.synthetic import kernel_message, random_flow
from ctnetlink.model import (
    Counters, DccpInfo, Event, Expect, ExpectKey, Flow, FlowKey, NatRange, SctpInfo, SeqAdj,
    Synproxy, TcpInfo, Timestamp, Tuple,
)
from nfnl.message import build_nfnl

T4 = Tuple(src="10.0.0.1", dst="10.0.0.2", proto=6, sport=1000, dport=80)
RECORDS = [T4, Counters(packets=1, bytes=2), Timestamp(start=1, stop=2),
           NatRange(min_ip="1.2.3.4", min_port=5), SeqAdj(correction_pos=1),
           Synproxy(isn=1, its=2, tsoff=3), TcpInfo(state=3, wscale_orig=7),
           SctpInfo(state=4, vtag_orig=9), DccpInfo(state=4, role=1),
           FlowKey(family=2, orig=T4, zone=0), ExpectKey(family=2, tuple=T4, zone=1)]


# --- records -------------------------------------------------------------------------

@pytest.mark.parametrize("rec", RECORDS, ids=lambda r: type(r).__name__)
def test_records_are_immutable_hashable_values(rec) -> None:
    name = rec._fields[0]
    with pytest.raises(AttributeError, match="immutable"):
        setattr(rec, name, 1)
    with pytest.raises(AttributeError):
        rec.not_a_field = 1
    twin = type(rec)._make(tuple(rec))
    assert twin == rec and hash(twin) == hash(rec) and twin is not rec
    assert len({rec, twin}) == 1
    changed = rec.replace(**{name: None})
    assert changed != rec and getattr(changed, name) is None
    assert getattr(rec, name) is not None  # the original is unchanged
    assert pickle.loads(pickle.dumps(rec)) == rec
    assert copy.deepcopy(rec) == rec
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        rec.replace(nope=1)


def test_records_equal_only_records_of_their_class() -> None:
    assert Counters(packets=1, bytes=2) != Timestamp(start=1, stop=2)
    assert Counters(packets=1, bytes=2) != (1, 2)
    assert (1, 2) != Counters(packets=1, bytes=2)
    with pytest.raises(TypeError):
        sorted([T4, T4.reversed()])  # no ordering: fields may be None


def test_constructors_are_keyword_only_and_name_a_misspelt_field() -> None:
    with pytest.raises(TypeError, match="positional"):
        Tuple("10.0.0.1", "10.0.0.2")  # type: ignore[misc]
    with pytest.raises(TypeError, match="'sprot'"):
        Tuple(src="10.0.0.1", sprot=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'timeot'"):
        Flow(orig=T4, timeot=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'helpr'"):
        Expect(tuple=T4, helpr="ftp")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"Flow\.orig must be a Tuple, not dict"):
        Flow(orig={"src": "10.0.0.1"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        Flow(orig=T4).copy(colour=1)


def test_tuple_converts_addresses_and_knows_its_family() -> None:
    t = Tuple(src="2001:db8::1", dst=ipaddress.ip_address("2001:db8::2"), proto=17)
    assert t.src == ipaddress.IPv6Address("2001:db8::1") and t.family == 10
    assert T4.family == 2 and Tuple(proto=6).family is None
    assert T4.proto_name == "tcp" and Tuple(proto=200).proto_name == "unknown"
    with pytest.raises(ValueError):
        Tuple(src="not an address")


# --- the reply tuple, as conntrack -I derives it ---------------------------------------

@pytest.mark.parametrize("proto", sorted(PORT_ATTR_PROTOS))
def test_reversed_swaps_addresses_and_ports(proto: int) -> None:
    t = Tuple(src="10.0.0.1", dst="10.0.0.2", proto=proto, sport=1, dport=2, zone=5)
    assert t.reversed() == Tuple(src="10.0.0.2", dst="10.0.0.1", proto=proto, sport=2, dport=1)


@pytest.mark.parametrize("proto, src, query, answer", [
    (1, "10.0.0.1", 8, 0), (1, "10.0.0.1", 0, 8), (1, "10.0.0.1", 13, 14),
    (1, "10.0.0.1", 17, 18), (1, "10.0.0.1", 3, 255),
    (58, "2001:db8::1", 128, 129), (58, "2001:db8::1", 139, 140), (58, "2001:db8::1", 1, 255),
])
def test_reversed_answers_icmp_queries(proto: int, src: str, query: int, answer: int) -> None:
    dst = "10.0.0.2" if proto == 1 else "2001:db8::2"
    t = Tuple(src=src, dst=dst, proto=proto, icmp_type=query, icmp_code=0, icmp_id=77)
    assert t.reversed() == Tuple(src=dst, dst=src, proto=proto, icmp_type=answer, icmp_code=0,
                                 icmp_id=77)


# --- flows: enums and names ------------------------------------------------------------

def test_status_accepts_names_numbers_and_enums_and_reads_back_as_flag() -> None:
    want = Status.ASSURED | Status.SEEN_REPLY
    for given in (want, 6, "ASSURED|SEEN_REPLY", "assured, seen_reply", ["ASSURED", "SEEN_REPLY"],
                  (Status.ASSURED, "SEEN_REPLY")):
        f = Flow(orig=T4, status=given)
        assert f.status == want and type(f.status) is Status and f.status_bits == 6
        assert f.status_flags == want
    f = Flow()
    assert f.status is None
    f.status = "CONFIRMED"
    assert f.status is Status.CONFIRMED and f.status_bits == 8
    f.status_mask = Status.ASSURED
    assert f.status_mask is Status.ASSURED and f.status_mask_bits == 4


@pytest.mark.parametrize("bad, error", [("ASSURD", ValueError), ("ASSURED|NOPE", ValueError),
                                        (1.5, TypeError), ([object()], TypeError)])
def test_bad_status_fails_clearly(bad, error) -> None:
    with pytest.raises(error, match="status"):
        Flow(status=bad)


@pytest.mark.parametrize("field, record, enum, name", [
    ("tcp_state", "tcp", TcpState, "ESTABLISHED"),
    ("sctp_state", "sctp", SctpState, "COOKIE_ECHOED"),
    ("dccp_state", "dccp", DccpState, "PARTOPEN"),
])
def test_states_accept_names_and_read_back_as_enums(field, record, enum, name) -> None:
    member = enum[name]
    for given in (name, name.lower(), member, int(member)):
        f = Flow(orig=T4, **{field: given})
        assert getattr(f, field) is member and getattr(f, record).state is member
        assert f.state is member and f.state_name == name
    f = Flow(orig=T4)
    setattr(f, field, name)
    assert getattr(f, record)[0] == int(member)  # stored raw
    with pytest.raises(ValueError, match=f"unknown {record.upper()} state 'NOSUCH'.*{name}"):
        Flow(**{field: "NOSUCH"})


def test_tcp_state_keeps_the_other_tcp_fields() -> None:
    f = Flow(tcp=TcpInfo(state="SYN_SENT", wscale_orig=7), tcp_state="ESTABLISHED")
    assert f.tcp == TcpInfo(state=TcpState.ESTABLISHED, wscale_orig=7)


def test_states_beyond_the_enum_read_as_numbers() -> None:
    assert TcpInfo(state=11).state == 11 and Flow(tcp=TcpInfo(state=11)).state_name == "NONE"


def test_repr_round_trips_through_the_constructors() -> None:
    f = Flow(family=2, orig=T4, reply=T4.reversed(), status="ASSURED|CONFIRMED",
             tcp_state="ESTABLISHED", counters_orig=Counters(packets=1, bytes=2))
    text = repr(f)
    assert "status='ASSURED|CONFIRMED'" in text and "state='ESTABLISHED'" in text
    ns = {n: getattr(ctnetlink, n) for n in ctnetlink.__all__}
    assert eval(text, ns) == f  # noqa: S307 - our own repr
    assert f.to_dict()["status"] == 12 and f.to_dict()["tcp"] == {"state": 3}


# --- flows: value semantics and identity ------------------------------------------------

def test_flows_are_unhashable_values() -> None:
    f = Flow(orig=T4, timeout=30)
    with pytest.raises(TypeError, match="unhashable"):
        hash(f)
    with pytest.raises(TypeError):
        {f}  # noqa: B018
    assert f == f.copy() and f != f.copy(timeout=31)
    for cls in (Expect, Event):
        with pytest.raises(TypeError, match="unhashable"):
            hash(cls(type=EventType.NEW) if cls is Event else cls())


def test_key_is_stable_across_copies_and_changes() -> None:
    f = Flow(family=2, orig=T4, reply=T4.reversed(), timeout=30, tcp_state="SYN_SENT")
    key = f.key
    assert key == FlowKey(family=2, orig=T4, zone=0)
    g = f.copy(timeout=20, status="ASSURED", tcp_state="ESTABLISHED", mark=1)
    assert g.key == key and hash(g.key) == hash(key)
    assert {key: 1}[g.key] == 1
    assert Flow(orig=T4).key == key  # family from the addresses
    assert Flow(orig=T4, zone=0).key == key  # zone 0 = no zone


def test_key_zone_is_the_original_direction_zone() -> None:
    zoned = T4.replace(zone=7)
    assert Flow(orig=zoned).key == FlowKey(family=2, orig=T4, zone=7)
    assert Flow(orig=T4, zone=7).key == FlowKey(family=2, orig=T4, zone=7)
    assert Flow(orig=T4, reply=T4.reversed().replace(zone=9)).key.zone == 0
    assert FlowKey(family=2, orig=zoned, zone=7).orig.zone is None
    with pytest.raises(ValueError, match="no key"):
        Flow(reply=T4).key  # noqa: B018


def test_expect_key() -> None:
    e = Expect(family=2, tuple=T4.replace(zone=3), master=T4, timeout=5)
    assert e.key == ExpectKey(family=2, tuple=T4, zone=3) == e.copy(timeout=1).key


# --- merge and diff -----------------------------------------------------------------------

NEW = Flow(family=2, orig=T4, reply=T4.reversed(), status="CONFIRMED", timeout=120, id=9,
           tcp=TcpInfo(state="SYN_SENT", wscale_orig=7, wscale_reply=0, flags_orig=(3, 0),
                       flags_reply=(0, 0)), mark=5, use=1)


def test_merge_applies_the_fields_an_update_carries() -> None:
    update = Flow(family=2, orig=T4, reply=T4.reversed(), status="SEEN_REPLY|CONFIRMED",
                  timeout=60, id=9, tcp=TcpInfo(state="SYN_RECV", wscale_orig=7,
                                                wscale_reply=7, flags_orig=(3, 0),
                                                flags_reply=(35, 0)))
    merged = NEW.merge(update)
    assert merged.status == Status.SEEN_REPLY | Status.CONFIRMED and merged.timeout == 60
    assert merged.tcp == update.tcp
    assert merged.mark == 5 and merged.use == 1  # not in the update: kept
    assert NEW.timeout == 120  # merge returns a new flow
    assert merged.key == NEW.key
    assert NEW.diff(merged) == {
        "status": (Status.CONFIRMED, Status.SEEN_REPLY | Status.CONFIRMED),
        "timeout": (120, 60),
        "tcp.state": (TcpState.SYN_SENT, TcpState.SYN_RECV),
        "tcp.wscale_reply": (0, 7),
        "tcp.flags_reply": ((0, 0), (35, 0)),
    }


def test_merge_of_a_destroy_event_keeps_fields_its_records_lack() -> None:
    destroy = Flow(family=2, orig=T4, reply=T4.reversed(), status="CONFIRMED|DYING", id=9,
                   tcp=TcpInfo(state="TIME_WAIT"), counters_orig=Counters(packets=3, bytes=9),
                   timestamp=Timestamp(start=1, stop=2))
    merged = NEW.merge(destroy)
    assert merged.tcp == NEW.tcp.replace(state="TIME_WAIT")  # window scales kept
    assert merged.counters_orig == Counters(packets=3, bytes=9)
    diff = NEW.diff(merged)
    assert diff["counters_orig.packets"] == (None, 3) and diff["timestamp.stop"] == (None, 2)
    assert "counters_reply.packets" not in diff and merged.diff(merged) == {}


def test_merge_refuses_another_flow() -> None:
    with pytest.raises(ValueError, match="another flow"):
        NEW.merge(Flow(orig=T4.replace(sport=1001), timeout=1))


# --- encoding from the schema -------------------------------------------------------------

def test_request_encoders_are_generated_from_the_schema() -> None:
    """``ctnetlink/_encoders.py`` is what the generator makes of REQUEST_ORDER (the
    compile check keeps it current); a run-time order compiles the same way."""
    text = (Path(_encoders.__file__)).read_text()
    where, rendered = compiler.render("ctnetlink.encodegen")
    assert where == Path(_encoders.__file__).resolve() and text == rendered
    assert "ctnetlink.encodegen" in compiler.targets()
    for name in ("def encode_tuple(o, fam, natp):", "def encode_flow(o, fam, natp):",
                 "def encode_expect(o, fam, natp):", "nla_nest(1, encode_tuple(",
                 "v = o.status_bits"):
        assert name in text
    again = Encoder(_compiled.REQUEST_ORDER)
    f = random_flow(random.Random(3), rich=1.0)
    assert again.flow(f) == encode_flow(f)
    assert again.source == text.split("\n", 1)[1].replace("REQUEST_ORDER", "a run-time order")


REQUEST_FIELDS = ("family", "orig", "reply", "status", "timeout", "mark", "secmark", "zone",
                  "helper", "labels", "labels_size", "tcp", "sctp", "dccp")


def test_requests_round_trip_through_the_decoder() -> None:
    """Every field a request carries is encoded where the decoder reads it back."""
    rng = random.Random(7)
    for _ in range(400):
        f = random_flow(rng, rich=1.0)
        f.labels_size = None if f.labels is None else f.labels_size
        back = decode_flow(build_nfnl(0x100, 0x5, f.family, encode_flow(f)))
        for name in REQUEST_FIELDS:
            want = getattr(f, name)
            l4 = f.orig.proto if f.orig is not None else None
            if name in ("tcp", "sctp", "dccp") and l4 is not None and \
                    PROTOCOLS.get(l4, ("", "", None))[2] != name:
                want = None  # only the protocol info of the flow's protocol is sent
            if name in ("tcp", "sctp", "dccp") and want is not None and not any(
                    v is not None for v in want):
                want = None
            assert getattr(back, name) == want, (name, f)
        assert decode_flow(kernel_message(f)) == f


def test_expect_request_round_trip() -> None:
    e = Expect(family=2, master=T4, tuple=T4.reversed().replace(dport=20), mask=T4, timeout=5,
               helper="ftp", zone=1, flags=4, klass=0, nat_dir=1, nat_tuple=T4, fn="x")
    assert decode_expect(build_nfnl(0x200, 0x5, 2, encode_expect(e))) == e


def test_nat_ports_follow_the_protocol_table() -> None:
    f = Flow(family=2, orig=T4.replace(proto=132), nat_src=NatRange(min_ip="1.1.1.1",
                                                                    min_port=5, max_port=6))
    assert encode_flow(f) != encode_flow(f, nat_port_protos=frozenset((6, 17)))
    assert encode_flow(f).endswith(bytes.fromhex("1400038006000100000500000600020000060000"))
    assert encode_flow(f, nat_port_protos=frozenset((6, 17))).endswith(bytes.fromhex("04000380"))


# --- package API ----------------------------------------------------------------------

@pytest.mark.parametrize("package", [ctnetlink, nfnl], ids=lambda p: p.__name__)
def test_every_exported_name_resolves(package) -> None:
    assert package.__all__ == sorted(set(package.__all__))
    for name in package.__all__:
        assert getattr(package, name) is not None, name
        assert name in dir(package)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        package.Nope  # noqa: B018


def test_ctnetlink_exports_the_documented_entry_points() -> None:
    assert {"Conntrack", "AsyncConntrack", "Flow", "Tuple", "FlowKey", "Expect", "Event",
            "EventType", "Filter", "Status", "TcpState", "ConntrackError",
            "FlowNotFound"} <= set(ctnetlink.__all__)
    assert ctnetlink.Flow is Flow and ctnetlink.EventType is EventType
    from ctnetlink.model import EventType as E2  # still importable from the model
    assert E2 is EventType and ctnetlink.FlowKey is FlowKey
    assert {"NetlinkSocket", "NetlinkError", "build_nfnl", "nla_u32"} <= set(nfnl.__all__)


def test_package_imports_are_lazy() -> None:
    code = ("import sys, ctnetlink, nfnl\n"
            "heavy = [m for m in ('ctnetlink.client', 'ctnetlink.aio', 'ctnetlink.model', "
            "'ctnetlink.enums', 'nfnl.socket', 'asyncio', 'construct') "
            "if m in sys.modules]\n"
            "print(heavy)\n"
            "ctnetlink.Flow\n"
            "print('ctnetlink.model' in sys.modules, 'ctnetlink.client' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "True False"]
