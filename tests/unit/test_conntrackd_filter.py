"""conntrackd's Filter (tools/conntrackd/filter.py): the user-space predicate with the
semantics observed on the 1.4.7 binary, and the classic BPF program that must decide
exactly the same on every message (run here by a BPF interpreter with the kernel's
netlink-attribute lookups)."""
from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conntrack_tools.conntrackd import entry as E
from conntrack_tools.conntrackd.filter import FilterSpec, bpf_program, compile_filter
from ctnetlink.encode import encode_expect, encode_flow
from ctnetlink.model import Expect, Flow, TcpInfo, Tuple
from nfnl.message import build_nfnl
from tests.helpers import bpf

V4 = ["10.1.0.1", "10.1.7.7", "10.2.0.5", "10.3.0.1", "10.9.0.1"]
V6 = ["2001:db8::1", "2001:db8::2", "2001:db8:1::5"]


def flow(src: str, dst: str, proto: int = 17, state: int | None = None,
         reply_src: str | None = None) -> Flow:
    o = Tuple(src=src, dst=dst, proto=proto, sport=1, dport=2)
    r = Tuple(src=reply_src or dst, dst=src, proto=proto, sport=2, dport=1)
    return Flow(family=10 if ":" in src else 2, orig=o, reply=r,
                tcp=TcpInfo(state=state) if state is not None else None)


def message(f: Flow) -> bytes:
    return build_nfnl(0x100, 0x400, f.family, encode_flow(f), 1)


def kept(spec: FilterSpec, f: Flow) -> bool:
    m = message(f)
    return compile_filter(spec)(E.parse(m, 0, len(m)))


def nets(*items: str) -> list:
    return [ipaddress.ip_network(i, strict=False) for i in items]


# what conntrackd 1.4.7 kept of the start-up dump with each Address block (observed)
@pytest.mark.parametrize("accept, items, expected", [
    (True, ("10.1.0.0/16", "10.2.0.5"),
     {("10.1.0.1", "10.9.0.1"), ("10.2.0.5", "10.9.0.1"), ("10.9.0.1", "10.2.0.5"),
      ("10.9.0.1", "10.1.7.7")}),
    (False, ("10.1.0.0/16", "10.2.0.5"), {("10.3.0.1", "10.9.0.1"), ("2001:db8::1", "2001:db8::2")}),
    (True, ("10.2.0.5",), {("10.2.0.5", "10.9.0.1"), ("10.9.0.1", "10.2.0.5")}),
    (True, ("10.1.0.0/16",), {("10.1.0.1", "10.9.0.1"), ("10.9.0.1", "10.1.7.7")}),
    (False, ("2001:db8::1",), {("10.1.0.1", "10.9.0.1"), ("10.2.0.5", "10.9.0.1"),
                               ("10.3.0.1", "10.9.0.1"), ("10.9.0.1", "10.2.0.5"),
                               ("10.9.0.1", "10.1.7.7")}),
    (True, ("2001:db8::/64",), {("2001:db8::1", "2001:db8::2")}),
])
def test_address_semantics_of_the_reference(accept, items, expected) -> None:
    table = [("10.1.0.1", "10.9.0.1"), ("10.2.0.5", "10.9.0.1"), ("10.3.0.1", "10.9.0.1"),
             ("10.9.0.1", "10.2.0.5"), ("10.9.0.1", "10.1.7.7"), ("2001:db8::1", "2001:db8::2")]
    spec = FilterSpec(addresses=(accept, nets(*items)))
    assert {t for t in table if kept(spec, flow(*t))} == expected


def test_reply_source_is_the_second_end_point() -> None:
    spec = FilterSpec(addresses=(False, nets("10.9.9.9")))
    assert kept(spec, flow("10.1.0.1", "10.2.0.2"))
    assert not kept(spec, flow("10.1.0.1", "10.2.0.2", reply_src="10.9.9.9"))  # DNAT'ed


def test_protocols_and_states() -> None:
    spec = FilterSpec(protocols=(True, [6]), states=(False, [7]))
    assert not kept(spec, flow("10.1.0.1", "10.9.0.1", 17))
    assert kept(spec, flow("10.1.0.1", "10.9.0.1", 6, 3))
    assert not kept(spec, flow("10.1.0.1", "10.9.0.1", 6, 7))
    assert kept(spec, flow("10.1.0.1", "10.9.0.1", 6))  # no state: not tested
    spec = FilterSpec(states=(True, ["ESTABLISHED"]))
    assert kept(spec, flow("10.1.0.1", "10.9.0.1", 17))  # only TCP is tested
    assert not kept(spec, flow("10.1.0.1", "10.9.0.1", 6, 2))


def test_bpf_passes_other_messages() -> None:
    prog = bpf_program(FilterSpec(protocols=(True, [6])))
    exp = Expect(family=2, master=Tuple(src="10.0.0.1", dst="10.0.0.2", proto=17, sport=1, dport=2),
                 tuple=Tuple(src="10.0.0.1", dst="10.0.0.2", proto=17, sport=0, dport=3),
                 mask=Tuple(src="255.255.255.255", dst="255.255.255.255", proto=17, sport=0, dport=65535))
    assert bpf.run(prog, build_nfnl(0x200, 0x400, 2, encode_expect(exp), 1)) != 0
    assert bpf.run(prog, message(flow("10.1.0.1", "10.9.0.1", 17))) == 0
    assert bpf.run(prog, message(flow("10.1.0.1", "10.9.0.1", 6, 3))) != 0


def test_bpf_long_lists_assemble() -> None:
    many = nets(*(f"10.{i // 256}.{i % 256}.0/24" for i in range(400)))
    prog = bpf_program(FilterSpec(addresses=(True, many)))
    assert len(prog) < 4096
    assert bpf.run(prog, message(flow("10.1.44.3", "192.0.2.1"))) != 0
    assert bpf.run(prog, message(flow("192.0.2.1", "192.0.2.2"))) == 0


addr_lists = st.lists(st.sampled_from(
    ["10.1.0.0/16", "10.2.0.5", "10.9.0.1/32", "10.0.0.0/8", "2001:db8::/64", "2001:db8::1",
     "2001:db8:1::/48", "10.3.0.0/24"]), max_size=4)


@st.composite
def specs(draw) -> FilterSpec:
    protos = draw(st.none() | st.tuples(st.booleans(), st.sets(st.sampled_from([6, 17, 1, 132]))))
    addrs = draw(st.none() | st.tuples(st.booleans(), addr_lists.map(lambda xs: nets(*xs))))
    states = draw(st.none() | st.tuples(st.booleans(), st.sets(st.integers(1, 9), max_size=3)))
    return FilterSpec(protocols=protos, addresses=addrs, states=states)


@st.composite
def flows(draw) -> Flow:
    v6 = draw(st.booleans())
    pool = V6 if v6 else V4
    proto = draw(st.sampled_from([6, 17, 132]))
    state = draw(st.none() | st.integers(1, 9)) if proto == 6 else None
    return flow(draw(st.sampled_from(pool)), draw(st.sampled_from(pool)), proto, state,
                draw(st.none() | st.sampled_from(pool)))


@settings(max_examples=300, deadline=None)
@given(specs(), flows())
def test_bpf_agrees_with_user_space(spec: FilterSpec, f: Flow) -> None:
    keep = compile_filter(spec)
    m = message(f)
    expected = True if keep is None else keep(E.parse(m, 0, len(m)))
    assert (bpf.run(bpf_program(spec), m) != 0) == expected
