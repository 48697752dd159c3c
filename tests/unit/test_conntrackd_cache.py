"""conntrackd's compact cache (tools/conntrackd/entry.py, cache.py): keys, the stored
form, the operations and their counters (spec §6.1), without a kernel."""
from __future__ import annotations

import ipaddress
import sys

import pytest

from conntrack_tools.conntrackd import entry as E
from conntrack_tools.conntrackd.cache import ALIVE, DEAD, NEW, Cache, ExpectCache, parse_expect
from conntrack_tools.conntrackd.kernel import DROP_ALWAYS
from ctnetlink.decode import decode_flow
from ctnetlink.encode import encode_expect, encode_flow
from ctnetlink.model import Counters, Expect, Flow, TcpInfo, Tuple
from nfnl.message import build_nfnl


def msg(flow: Flow, new: bool = True, mtype: int = 0x100) -> bytes:
    return build_nfnl(mtype, 0x400 if new else 0, flow.family, encode_flow(flow), 1)


def tcp(src="10.0.0.1", dst="10.0.0.2", sport=1000, dport=80, **kw) -> Flow:
    o = Tuple(src=src, dst=dst, proto=6, sport=sport, dport=dport)
    fam = 10 if ":" in src else 2
    kw.setdefault("reply", o.reversed())
    kw.setdefault("status", 0xE)
    kw.setdefault("tcp", TcpInfo(state=3))
    return Flow(family=fam, orig=o, **kw)


FLOWS = [
    tcp(),
    tcp("2001:db8::1", "2001:db8::2", 5, 6, mark=3),
    tcp(mark=7, zone=5),
    # source NAT: the reply is not the mirror image
    tcp(sport=2000, reply=Tuple(src="10.9.9.9", dst="10.0.0.100", proto=6, sport=80, dport=4000)),
    Flow(family=2, orig=Tuple(src="10.0.0.1", dst="10.0.0.2", proto=1, icmp_type=8, icmp_code=0, icmp_id=77),
         reply=Tuple(src="10.0.0.2", dst="10.0.0.1", proto=1, icmp_type=0, icmp_code=0, icmp_id=77), status=8),
    Flow(family=2, orig=Tuple(src="10.0.0.1", dst="10.0.0.2", proto=47, sport=0x11, dport=0x22),
         reply=Tuple(src="10.0.0.2", dst="10.0.0.1", proto=47, sport=0x22, dport=0x11), status=8),
    Flow(family=2, orig=Tuple(src="10.0.0.1", dst="10.0.0.2", proto=17, sport=53, dport=53, zone=4),
         reply=Tuple(src="10.0.0.2", dst="10.0.0.1", proto=17, sport=53, dport=53), status=8),
]


@pytest.mark.parametrize("flow", FLOWS, ids=range(len(FLOWS)))
def test_split_and_rebuild(flow: Flow) -> None:
    m = msg(flow)
    p = E.parse(m, 0, len(m))
    assert E.CTA_TUPLE_ORIG not in p.attrs
    rebuilt = E.message(p.key, p.family, E.join(p.attrs), p.mirrored)
    assert decode_flow(rebuilt) == decode_flow(m)
    assert E.tuple_key(E.orig_tuple(p.key), p.attrs.get(E.CTA_ZONE)) == p.key


def test_mirrored_reply_is_not_stored() -> None:
    plain = E.parse(msg(tcp()), 0, len(msg(tcp())))
    assert plain.mirrored and E.CTA_TUPLE_REPLY not in plain.attrs
    natted = FLOWS[3]
    p = E.parse(msg(natted), 0, len(msg(natted)))
    assert not p.mirrored and E.CTA_TUPLE_REPLY in p.attrs
    assert p.addresses() == (ipaddress.ip_address("10.0.0.1").packed,
                             ipaddress.ip_address("10.9.9.9").packed)


def test_keys_tell_flows_apart() -> None:
    keys = {E.parse(m, 0, len(m)).key for m in map(msg, FLOWS)}
    assert len(keys) == len(FLOWS)
    # the zone is part of the key; the same tuple in zone 0 is another flow
    a, b = tcp(), tcp(zone=9)
    assert E.parse(msg(a), 0, len(msg(a))).key != E.parse(msg(b), 0, len(msg(b))).key
    # a compact IPv4 key: template id, addresses, protocol, ports
    assert len(E.parse(msg(a), 0, len(msg(a))).key) == 14


def p_of(flow: Flow, drop=DROP_ALWAYS) -> E.Parsed:
    m = msg(flow)
    return E.parse(m, 0, len(m), drop)


def test_add_update_delete_counters() -> None:
    now = [1000.0]
    c = Cache("internal", clock=lambda: now[0])
    assert c.add(p_of(tcp(mark=1)))
    key = p_of(tcp()).key
    assert c.status(key) == NEW and c.active == 1
    now[0] = 1005
    # an update without a mark keeps the stored mark (spec §6.1: absent attributes stay)
    c.update_force(p_of(tcp(mark=None, timeout=50)))
    f = c.flow(key)
    assert f.mark == 1 and f.timeout == 50 and c.status(key) == ALIVE
    assert Cache.times(c.get(key)) == (1000, 1005)
    assert c.stats.add_ok == 1 and c.stats.upd_ok == 1
    assert c.delete(key) and not c.delete(key)
    assert c.stats.del_ok == 1 and c.active == 0 and len(c) == 0


def test_counters_and_use_are_never_stored() -> None:
    c = Cache("stats", drop=(E.CTA_TIMEOUT,) + DROP_ALWAYS)
    c.add(p_of(tcp(timeout=30, use=1, counters_orig=Counters(packets=1, bytes=2)), drop=()))
    f = c.flow(p_of(tcp()).key)
    assert f.timeout is None and f.use is None and f.counters_orig is None


def test_limit() -> None:
    c = Cache("internal", limit=2)
    for port in (1, 2, 3):
        c.add(p_of(tcp(sport=port)))
    assert len(c) == 2
    assert (c.stats.add_ok, c.stats.add_fail, c.stats.add_fail_enospc) == (2, 1, 1)


def test_mark_dead_and_references() -> None:
    c = Cache("internal")
    p = p_of(tcp())
    c.add(p)
    c.hold(p.key)                 # e.g. a queued message
    assert c.mark_dead(p.key)
    assert c.status(p.key) == DEAD and c.active == 0 and len(c) == 1
    assert not c.mark_dead(p.key)  # counted once
    # update-force of a dead entry replaces it with a new one
    c.update_force(p)
    assert c.status(p.key) == NEW and c.stats.add_ok == 2 and c.stats.del_ok == 1
    c.mark_dead(p.key)             # no reference: gone at once
    assert p.key not in c


def test_flush_counts_destroyed() -> None:
    c = Cache("internal")
    for port in range(5):
        c.add(p_of(tcp(sport=port)))
    assert c.flush() == 5
    assert c.stats.del_ok == 5 and c.active == 0 and c.stats.flush == 1


def test_nat_update_switches_reply_storage() -> None:
    c = Cache("internal")
    c.add(p_of(tcp(sport=2000)))
    c.update(p_of(FLOWS[3]))
    key = p_of(tcp(sport=2000)).key
    assert c.flow(key).reply == FLOWS[3].reply


def test_expect_cache() -> None:
    exp = Expect(family=2, master=Tuple(src="10.0.0.1", dst="10.0.0.2", proto=6, sport=4000, dport=21),
                 tuple=Tuple(src="10.0.0.1", dst="10.0.0.2", proto=6, sport=0, dport=10000),
                 mask=Tuple(src="255.255.255.255", dst="255.255.255.255", proto=6, sport=0, dport=65535), helper="ftp",
                 timeout=300)
    m = build_nfnl(0x200, 0x400, 2, encode_expect(exp), 1)
    c = ExpectCache("internal")
    p = parse_expect(m, 0, len(m))
    assert c.add(p)
    assert c.expect(p.key).helper == "ftp"
    # the master tuple's key is the key of the master flow in the conntrack cache
    master = tcp(sport=4000, dport=21)
    assert E.tuple_key(p.attrs[1]) == p_of(master).key


def test_bytes_per_entry_stay_small() -> None:
    """The stored form of a plain IPv4 TCP entry: key and value are two small bytes."""
    c = Cache("internal")
    c.add(p_of(tcp(mark=1, id=5, timeout=100)))
    key, value = next(c.items())
    assert sys.getsizeof(key) + sys.getsizeof(value) < 200
