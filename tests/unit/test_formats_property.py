"""Property checks: the shape path and the Flow path print the same, for many flows.

Random entries cover every protocol handler (and unknown protocols), IPv4/IPv6 (with
IPv4-mapped and -compatible addresses), with and without counters, timestamps, zones,
labels, helper, NAT, security context, missing tuples and out-of-range states. Each is
formatted from the hand-built Flow, from the Flow the decoder builds out of its kernel
message, and from the shape decoder's raw values: all three must agree, in every format
and under several option sets. The JSON output must also parse, match the schema and
carry the same values as the model.
"""
from __future__ import annotations

import ipaddress
import json
import random

import pytest

from ctnetlink.decode import Decoder, decode_flow
from ctnetlink.formats import LabelMap, Options
from ctnetlink.formats import json as fjson
from ctnetlink.formats import save, text, xml
from ctnetlink.formats._engine import status_names
from ctnetlink.formats.synthetic import kernel_message, random_flow
from ctnetlink.model import Flow, Tuple

LABELS = {0: "eth0-in", 1: "eth1-in", 2: "web", 5: "high", 127: "top"}


def fixed_clock() -> float:
    return 1_795_625_600.75


OPTION_SETS = [
    Options(clock=fixed_clock),
    Options(extended=True, id=True, ktimestamp=True, labels=LABELS, clock=fixed_clock),
    Options(event=1, labels={}, clock=fixed_clock),
    Options(event=2, extended=True, clock=fixed_clock),
    Options(event=3, timestamp=True, ktimestamp=True, labels=LABELS, clock=fixed_clock),
    Options(save_prefix="-D", id=True, clock=fixed_clock),
]
MODULES = [text, xml, save, fjson]


def flows(seed: int, n: int):
    rng = random.Random(seed)
    for _ in range(n):
        yield random_flow(rng, rich=rng.random())


@pytest.mark.parametrize("seed", range(3))
def test_shape_path_equals_flow_path(seed):
    dec = Decoder()
    for flow in flows(seed, 100):
        msg = kernel_message(flow)
        shape = dec.shape(msg, 0, len(msg))
        values = shape.struct.unpack_from(msg, 20)
        decoded = decode_flow(msg)
        for opts in OPTION_SETS:
            for mod in MODULES:
                a = mod.format_flow(flow, opts)
                b = mod.format_flow(decoded, opts)
                c = mod.compile_for_shape(shape, opts)(values, msg[16])
                assert a == b == c, (mod.__name__, opts, flow)


def test_shape_formatter_is_cached_per_shape_and_options():
    flow = next(flows(99, 1))
    msg = kernel_message(flow)
    shape = Decoder().shape(msg, 0, len(msg))
    assert text.compile_for_shape(shape, Options()) is text.compile_for_shape(shape, Options())
    assert text.compile_for_shape(shape, Options(id=True)) is not text.compile_for_shape(shape, Options())
    assert text.flow_formatter(Options(labels={1: "a"})) is text.flow_formatter(Options(labels={1: "a"}))


def test_ipv6_text_is_libc_inet_ntop():
    for a, want in (("::ffff:1.2.3.4", "::ffff:1.2.3.4"), ("::1.2.3.4", "::1.2.3.4"),
                    ("::1", "::1"), ("2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1"),
                    ("fe80::1:2", "fe80::1:2"), ("::", "::"), ("1::", "1::")):
        f = Flow(family=10, orig=Tuple(src=a, dst="::2", proto=17, sport=1, dport=2), reply=Tuple(src="::2", dst=a, proto=17, sport=2, dport=1))
        assert text.format_flow(f).startswith(f"udp      17 src={want} dst=::2 ")


@pytest.mark.parametrize("seed", range(3))
def test_json_values_match_the_model(seed):
    for flow in flows(100 + seed, 300):
        for opts in (Options(), Options(labels=LABELS, event=3)):
            obj = json.loads(fjson.format_flow(flow, opts))
            fjson.validate(obj)
            fam = flow.family
            if flow.orig is not None:
                assert obj["l3protonum"] == fam
                o = obj["orig"]
                if fam in (2, 10):
                    assert ipaddress.ip_address(o["src"]) == flow.orig.src
                    assert ipaddress.ip_address(o["dst"]) == flow.orig.dst
                if flow.orig.proto in (6, 17, 136, 132, 33):
                    assert o["sport"] == (flow.orig.sport or 0)
            else:
                assert "orig" not in obj and "l3proto" not in obj
            if flow.status is not None:
                assert obj["status"] == status_names(flow.status)
            for key, value in (("timeout", flow.timeout), ("mark", flow.mark), ("use", flow.use),
                               ("id", flow.id), ("zone", flow.zone), ("helper", flow.helper),
                               ("secctx", flow.secctx), ("secmark", flow.secmark)):
                assert obj.get(key) == value
            if flow.timestamp is not None:
                assert obj.get("start_ns") == flow.timestamp.start
                assert obj.get("stop_ns") == flow.timestamp.stop
            if opts.labels is not None and flow.labels is not None:
                assert obj["labels"]["bits"] == flow.label_bits
                assert obj["labels"]["names"] == [LABELS[b] for b in flow.label_bits if b in LABELS]
            else:
                assert "labels" not in obj
            if opts.event:
                assert obj["event"] == "destroy"


def test_json_escapes_strings_and_rejects_bad_objects():
    f = Flow(family=2, orig=Tuple(src="1.1.1.1", dst="2.2.2.2", proto=6, sport=1, dport=2), helper='a"b\\c',
             secctx="x\ny")
    obj = json.loads(fjson.format_flow(f))
    assert obj["helper"] == 'a"b\\c' and obj["secctx"] == "x\ny"
    fjson.validate(obj)
    for bad in ({"mark": -1}, {"mark": "0"}, {"event": "boom"}, {"orig": {"port": 1}},
                {"nonsense": 1}, {"labels": {"names": []}}):
        with pytest.raises(ValueError):
            fjson.validate(bad)


def test_options_are_values():
    a = Options(extended=True, labels={1: "x"})
    assert a == Options(extended=True, labels=LabelMap({1: "x"}))
    assert hash(a) == hash(Options(extended=True, labels={1: "x"}))
    assert a.replace(id=True) == Options(extended=True, id=True, labels={1: "x"})
    with pytest.raises(AttributeError):
        a.extended = False  # type: ignore[misc]
    assert "extended=True" in repr(a)
