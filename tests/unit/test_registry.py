"""nfnl.registry: subsystems register their schemas; nfnl's generic tools never name one.

ctnetlink is found through its ``nfnl.subsystems`` entry point by a program that never
imports it; a second subsystem, declared here with ``nfnl.attrs`` the way ctnetlink's
schema is, plugs into the same lookups (decoding, re-encoding, descriptions, the scapy
layer), and a message type can be claimed by one subsystem only.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from nfnl import registry
from nfnl.attrs import Attr, AttrSet, String, U32, attr_tables
from nfnl.codec import nla, nla_nest, nla_string, nla_u32
from nfnl.conversation import describe, type_name
from nfnl.message import build_nfnl, decode_message, encode_message

DEMO_INNER = AttrSet("demo_inner", [Attr(1, "DEMO_INNER_NAME", String)])
DEMO = AttrSet("demo_attrs", [Attr(1, "DEMO_ID", U32), Attr(2, "DEMO_NEST", DEMO_INNER)])
DEMO_MSG = 0x0B00  # nfnetlink subsystem 11 (unused by the kernel's netfilter subsystems)
DEMO_SETUP = textwrap.dedent("""
    from nfnl import registry
    from nfnl.attrs import Attr, AttrSet, String, U32, attr_tables
    INNER = AttrSet("demo_inner", [Attr(1, "DEMO_INNER_NAME", String)])
    DEMO = AttrSet("demo_attrs", [Attr(1, "DEMO_ID", U32), Attr(2, "DEMO_NEST", INNER)])
    registry.register(registry.Subsystem("demo", attrs=attr_tables(DEMO),
                      messages={0x0B00: ("DEMO_MSG", "demo_attrs")},
                      body_names={"demo_attrs": "DEMO"}))
""")


def demo_message() -> bytes:
    return build_nfnl(DEMO_MSG, 0x1, 2, nla_u32(1, 7) + nla_nest(2, nla_string(1, "x")), seq=5)


@pytest.fixture
def demo():
    sub = registry.register(registry.Subsystem(
        "demo", attrs=attr_tables(DEMO), messages={DEMO_MSG: ("DEMO_MSG", "demo_attrs")},
        body_names={"demo_attrs": "DEMO"}))
    try:
        yield sub
    finally:
        registry.unregister("demo")


def run(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_nfnl_loads_no_subsystem_by_itself() -> None:
    out = run("import sys, nfnl.message, nfnl.socket, nfnl.replay, nfnl.pytest_plugin, "
              "nfnl.compile, nfnl.conversation, nfnl.fakekernel, nfnl.registry\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in "
              "('ctnetlink', 'conntrack_tools')))")
    assert out.strip() == "[]"


def test_a_program_that_never_imports_ctnetlink_finds_it_by_entry_point() -> None:
    out = run("from nfnl.codec import nla_nest, nla_u32\n"
              "from nfnl.message import build_nfnl, decode_message\n"
              "m = decode_message(build_nfnl(0x100, 1, 2, nla_u32(8, 42)))\n"
              "print(m.name, m.attrs.to_python())\n"
              "import sys; from nfnl import registry\n"
              "print([s.name for s in registry.subsystems()], 'ctnetlink.client' in sys.modules)")
    assert out.splitlines() == ["IPCTNL_MSG_CT_NEW [('CTA_MARK', 42)]", "['ctnetlink'] False"]


def test_the_content_resolver_picks_the_body_of_0x0103() -> None:
    stats = decode_message(build_nfnl(0x103, 2, 0, nla_u32(1, 3) + nla_u32(2, 4)))
    assert stats.name == "IPCTNL_MSG_EXP_GET_STATS_CPU"
    assert stats.attrs.to_python() == [("CTA_STATS_EXP_NEW", 3), ("CTA_STATS_EXP_CREATE", 4)]
    entry = decode_message(build_nfnl(0x103, 2, 2, nla_nest(1, nla(1, b""))))
    assert entry.name == "IPCTNL_MSG_CT_GET_CTRZERO"
    assert entry.attrs[0].name == "CTA_TUPLE_ORIG"


def test_a_second_subsystem_plugs_in_the_same_way(demo) -> None:
    raw = demo_message()
    m = decode_message(raw)
    assert m.name == "DEMO_MSG" and type_name(DEMO_MSG) == "DEMO_MSG"
    assert m.attrs.to_python() == [("DEMO_ID", 7), ("DEMO_NEST", [("DEMO_INNER_NAME", "x")])]
    assert encode_message(m) == raw
    assert describe(raw) == ["DEMO_MSG flags=REQUEST family=AF_INET version=0 res_id=0",
                             "  DEMO_ID = 7", "  DEMO_NEST", "    DEMO_INNER_NAME = 'x'"]
    assert registry.tables_for("demo_inner") is demo.attrs
    assert registry.message_names()[DEMO_MSG] == "DEMO_MSG"
    registry.unregister("demo")
    assert decode_message(raw).name is None and decode_message(raw).attrs[0].name is None


def test_a_message_type_belongs_to_one_subsystem(demo) -> None:
    registry.discover()
    with pytest.raises(ValueError, match="already registered by ctnetlink"):
        registry.register(registry.Subsystem(
            "thief", attrs=attr_tables(DEMO), messages={0x100: ("X", "demo_attrs")}))
    with pytest.raises(ValueError, match="not among its attribute tables"):
        registry.Subsystem("bad", attrs={}, messages={0x0C00: ("X", "nowhere")})
    again = registry.register(registry.Subsystem("demo", attrs=attr_tables(DEMO)))
    assert registry.subsystem("demo") is again and registry.message(DEMO_MSG) is None


def test_the_scapy_layer_builds_a_registered_subsystem_too() -> None:
    out = run(DEMO_SETUP + textwrap.dedent("""
        import nfnl.scapy_layer as L
        from nfnl.codec import nla_nest, nla_string, nla_u32
        from nfnl.message import build_nfnl
        raw = build_nfnl(0x0B00, 1, 2, nla_u32(1, 7) + nla_nest(2, nla_string(1, "x")))
        pkt = L.Netlink(raw)
        print(pkt.payload.payload.__class__.__name__, L.to_python(pkt[L.DEMO].attrs))
        print(L.MESSAGE_NAMES[0x0B00], L.CTA_MARK.__name__)
    """))
    assert out.splitlines() == ["DEMO [('DEMO_ID', 7), ('DEMO_NEST', [('DEMO_INNER_NAME', 'x')])]",
                                "DEMO_MSG CTA_MARK"]
