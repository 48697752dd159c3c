"""The compiled paths between cache entries and sync messages (``sync/entries.py``) equal
the general ones: received payloads stored (key, stored attributes, flags, cache
operations) and stored entries rendered, for random flows, the recorded C daemons'
datagrams and the recorded kernel tables."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conntrack_tools.conntrackd import entry as E
from conntrack_tools.conntrackd.cache import F_INET6, F_MIRRORED, META_SIZE, Cache
from conntrack_tools.conntrackd.kernel import DROP_ALWAYS
from conntrack_tools.conntrackd.sync import entries, source
from conntrack_tools.conntrackd.sync.alarm import AlarmMachine
from conntrack_tools.conntrackd.sync.common import CacheOp
from conntrack_tools.conntrackd.sync.ftfw import FtfwMachine
from conntrack_tools.conntrackd.sync.notrack import NotrackMachine
from conntrack_tools.conntrackd.wire.codec import CT_DECODER, encode_flow, walk
from conntrack_tools.conntrackd.wire.ctsync import payload_flow_attrs, sync_message
from ctnetlink.encode import flow_message as ct_message
from ctnetlink.model import Flow

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.syncwire import SCENARIOS, flows, sidecar, streams  # noqa: E402

DROPS = [(), DROP_ALWAYS, DROP_ALWAYS + (E.CTA_TIMEOUT,)]
OPTIONS = [(wt, ct) for wt in (False, True) for ct in (False, True)]


def general_parts(payload: bytes, drop: tuple) -> tuple[bytes, int, bytes]:
    """(key, flags, stored attributes) by the general path."""
    family, attrs = payload_flow_attrs(payload)
    p = E.split(family, E._attrs_by_shape(attrs, 0, len(attrs)))
    for t in drop:
        p.attrs.pop(t, None)
    flags = (F_INET6 if p.family == 10 else 0) | (F_MIRRORED if p.mirrored else 0)
    return p.key, flags, E.join(p.attrs)


def general_render(key: bytes, value: bytes, mtype: int, seq: int, flags: int,
                   wt: bool, ct: bool) -> bytes:
    msg = E.message(key, 10 if value[0] & F_INET6 else 2, value[META_SIZE:], False)
    return sync_message(msg, 0, len(msg), mtype, seq, flags, window_tracking=wt,
                        commit_timeout=ct)


def general_apply(op: CacheOp, cache: Cache) -> bytes | None:
    real = source.entry_parts
    source.entry_parts = lambda *a: None
    try:
        return source.apply(op, cache)
    finally:
        source.entry_parts = real


def check_payload(payload: bytes, drop: tuple) -> None:
    shape, values = CT_DECODER.values(payload, 0, len(payload))
    fast = entries.entry_parts(shape, values, drop)
    want = general_parts(payload, drop)
    if fast is None:  # the general path's layouts (master tuple, sequence adjustment)
        assert any(a in shape.slots for a in (8, 9, 10, 11, 16))
        return
    key, flags, attrs, (ln, mask, expected) = fast
    assert (key, flags, attrs) == want
    assert ln == len(attrs) and int.from_bytes(attrs, "little") & mask == expected


def _flow(flow: Flow, nat_done: int | None) -> Flow:
    """``flow`` with the NAT status bits ``nat_done`` (None: no status), and mostly
    without master tuple and sequence adjustment (the layouts that take the general
    path anyway)."""
    if flow.mark is None or flow.mark & 3:
        flow = flow.copy(master=None, seq_adj_orig=None, seq_adj_reply=None)
    return flow.copy(status=None) if nat_done is None else flow.copy(status=flow.status | nat_done)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows(), st.sampled_from([None, 0, 0x80, 0x180]), st.booleans(),
       st.sampled_from(DROPS))
def test_random_payloads_stored_as_the_general_path_stores_them(flow: Flow, nat_done, wt: bool,
                                                                drop: tuple) -> None:
    check_payload(encode_flow(_flow(flow, nat_done), window_tracking=wt), drop)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(flows(), st.sampled_from([None, 0, 0x80, 0x180]),
                          st.sampled_from(["new", "update", "delete"])), min_size=1, max_size=6),
       st.sampled_from(DROPS))
def test_random_operations_leave_the_same_cache(ops, drop: tuple) -> None:
    """NEW, UPD (onto entries of other layouts too) and DEL: the caches are equal."""
    fast, slow = (Cache("external", drop=drop, clock=lambda: 7) for _ in range(2))
    base = ops[0][0]
    for flow, nat_done, op in ops:
        if op != "new":  # the same entry as the first, maybe another layout
            flow = flow.copy(orig=base.orig, reply=base.reply, family=base.family,
                             zone=base.zone, tcp=base.tcp, sctp=base.sctp, dccp=base.dccp)
        payload = encode_flow(_flow(flow, nat_done))
        shape, values = CT_DECODER.values(payload, 0, len(payload))
        k1 = source.apply(CacheOp(op, False, False, payload, shape, values), fast)
        k2 = general_apply(CacheOp(op, False, False, payload, shape, values), slow)
        assert k1 == k2
        assert fast._d == slow._d
        assert fast.stats.as_dict() == slow.stats.as_dict() and fast.active == slow.active


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows(), st.sampled_from([None, 0, 0x80, 0x180]), st.sampled_from(OPTIONS),
       st.integers(0, 2), st.sampled_from(DROPS))
def test_random_entries_render_as_the_general_path(flow: Flow, nat_done, opts, mtype: int,
                                                   drop: tuple) -> None:
    wt, ct = opts
    raw = ct_message(0x0100, 0, _flow(flow, nat_done), 1)
    cache = Cache("internal", drop=drop)
    cache.add(E.parse(raw, 0, len(raw)))
    ((key, value),) = cache.items()
    assert entries.render(key, value, mtype, 77, 0x40, window_tracking=wt, commit_timeout=ct) \
        == general_render(key, value, mtype, 77, 0x40, wt, ct)


def test_kernel_tables_render_as_the_general_path() -> None:
    cache = Cache("internal", drop=DROP_ALWAYS)
    for name in SCENARIOS:
        for h in sidecar(name)["primary_table"]["conntrack"]:
            raw = bytes.fromhex(h)
            p = E.parse(raw, 0, len(raw))
            if p.key not in cache:
                cache.add(p)
    assert len(cache) >= 20
    for wt, ct in OPTIONS:
        for _ in range(2):  # learnt, then compiled
            for key, value in cache.items():
                for mtype in (0, 1, 2):
                    assert entries.render(key, value, mtype, 5, 0, window_tracking=wt,
                                          commit_timeout=ct) == \
                        general_render(key, value, mtype, 5, 0, wt, ct)


@pytest.mark.parametrize("name", SCENARIOS)
def test_recorded_datagrams_stored_as_the_general_path(name: str) -> None:
    """The C daemons' datagrams (fixtures/sync) through a receiving machine: every state
    message stored as the general path stores it, the caches equal after each."""
    payloads = [m.payload for d in streams(name) for m in walk(d) if m.type <= 2]
    assert payloads
    for drop in DROPS:
        for p in payloads:
            check_payload(p, drop)
    sc = sidecar(name)
    machine = {"NOTRACK": NotrackMachine, "ALARM": AlarmMachine}.get(sc["mode"], FtfwMachine)
    fast, slow = Cache("external", drop=DROP_ALWAYS), Cache("external", drop=DROP_ALWAYS)
    m1, m2 = machine(None), machine(None)
    n = 0
    for d in streams(name):
        for a1, a2 in zip(m1.receive(d, 1.0), m2.receive(d, 1.0)):
            if type(a1) is CacheOp and not a1.expect:
                assert source.apply(a1, fast) == general_apply(a2, slow)
                n += 1
        assert fast._d.keys() == slow._d.keys()
        for k, v in fast._d.items():  # lifetime and last update may differ by a second
            assert v[0] == slow._d[k][0] and v[META_SIZE:] == slow._d[k][META_SIZE:]
    assert n


@pytest.mark.parametrize("family", [2, 10])
def test_every_protocol_number_stored_and_rendered_as_the_general_path(family: int) -> None:
    """Protocols without ports, with unknown numbers, ICMP of the other family: both
    directions equal the general paths."""
    from ctnetlink.model import Tuple

    src, dst = ("10.0.0.1", "10.0.0.2") if family == 2 else ("fd00::1", "fd00::2")
    cache = Cache("internal", drop=DROP_ALWAYS)
    for proto in range(256):
        kw = {"sport": 1000 + proto, "dport": 53} if proto in (6, 17, 33, 132, 136) else {}
        flow = Flow(family=family, orig=Tuple(src=src, dst=dst, proto=proto, **kw),
                    status=8, timeout=30, mark=proto)
        check_payload(encode_flow(flow), DROP_ALWAYS)
        raw = ct_message(0x0100, 0, flow, 1)
        cache.add(E.parse(raw, 0, len(raw)))
    assert len(cache) == 256
    for key, value in cache.items():
        assert entries.render(key, value, 1, 3, 0) == general_render(key, value, 1, 3, 0,
                                                                     False, False)
