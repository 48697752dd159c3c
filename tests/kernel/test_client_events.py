"""``Conntrack.events``: the reference creates, updates and deletes while we listen.

The listening socket is opened (and so subscribed) before anything happens, with a
receive timeout so that a missing event fails the test instead of hanging it. Event
contents are compared with what the reference lists for the same entries; expectation
events come from the kernel's FTP helper and from the reference's ``-D expect``.
"""
from __future__ import annotations

import socket
import threading

import pytest
from helpers.flows import all_cases, catalogue
from helpers.reference import flow_view, reference_views

from ctnetlink.client import Conntrack
from ctnetlink.constants import Group
from ctnetlink.model import EventType, Flow, Tuple
from nfnl.socket import NetlinkSocket

CASES = all_cases()
EVENT_FIELDS = ("id", "family", "proto", "orig", "reply", "mark", "zone", "state", "status",
                "assured", "unreplied", "labels", "vtags", "helper")


def listen(groups: int, timeout: float = 5.0) -> NetlinkSocket:
    sock = NetlinkSocket(groups=groups, rcvbuf=4 << 20)
    sock.settimeout(timeout)
    return sock


def take(it, n: int) -> list:
    return [next(it) for _ in range(n)]


def subset(view: dict) -> dict:
    return {k: view[k] for k in EVENT_FIELDS}


def test_new_update_destroy_from_the_reference(ns, ct, label_names) -> None:
    sock = listen(Group.CONNTRACK)
    events = ct.events(sock=sock)
    for case in CASES:
        ns.conntrack("-I", *case.args)
    new = take(events, len(CASES))
    assert {e.type for e in new} == {EventType.NEW}
    assert all(e.portid for e in new)  # caused by the reference's socket, not by a packet
    ref = reference_views(ns)
    assert sorted(e.flow.id for e in new) == sorted(ref)
    for e in new:
        assert subset(flow_view(e.flow, label_names)) == subset(ref[e.flow.id])
    ns.conntrack("-U", "-s", "10.1.0.1", "-p", "udp", "--sport", "1003", "-m", "5")
    (upd,) = take(events, 1)
    assert upd.type == EventType.UPDATE and upd.flow.mark == 5
    assert [upd.flow.id] == [f.id for f in ct.dump(mark=5)]
    ns.conntrack("-D", "-f", "ipv6")
    gone = take(events, len([c for c in CASES if c.family == 10]))
    assert {e.type for e in gone} == {EventType.DESTROY}
    assert {e.flow.id for e in gone} == {i for i, v in ref.items() if v["family"] == 10}
    ns.conntrack("-F")
    rest = take(events, len([c for c in CASES if c.family == 2]))
    assert {(e.type, e.flow.family) for e in rest} == {(EventType.DESTROY, 2)}
    sock.close()


def test_events_of_our_own_requests(ns, ct) -> None:
    sock = listen(Group.CONNTRACK)
    events = ct.events(sock=sock)
    case = catalogue(2)[0]
    ct.create(case.flow)
    ct.update(Flow(family=2, orig=case.flow.orig, mark=77))
    ct.delete(case.flow.orig)
    got = take(events, 3)
    assert [e.type for e in got] == [EventType.NEW, EventType.UPDATE, EventType.DESTROY]
    assert {e.portid for e in got} == {ct.sock.portid}
    assert got[1].flow.mark == 77 and got[0].flow.orig == case.flow.orig
    assert got[0].flow.id == got[1].flow.id == got[2].flow.id
    sock.close()


@pytest.mark.parametrize("groups,types", [
    (Group.NEW, {EventType.NEW}),
    (Group.DESTROY, {EventType.DESTROY}),
    (Group.UPDATE | Group.DESTROY, {EventType.UPDATE, EventType.DESTROY}),
])
def test_groups_select_event_types(ns, ct, groups, types) -> None:
    sock = listen(groups, timeout=0.5)
    events = ct.events(sock=sock)
    case = next(c for c in catalogue(2) if c.name == "udp-dnat")
    ns.conntrack("-I", *case.args)
    ns.conntrack("-U", "-s", "10.1.0.1", "-p", "udp", "-m", "3")
    ns.conntrack("-F")
    got = []
    with pytest.raises(TimeoutError):  # the socket timeout ends the stream
        for e in events:
            got.append(e.type)
    assert set(got) == types and len(got) == len(types)


def test_family_filter(ns, ct) -> None:
    sock = listen(Group.NEW)
    events = ct.events(family=10, sock=sock)
    for case in CASES:
        ns.conntrack("-I", *case.args)
    got = take(events, len([c for c in CASES if c.family == 10]))
    assert {e.flow.family for e in got} == {10}
    # the next event would be an IPv6 one, too
    ns.conntrack("-I", "-s", "10.9.0.1", "-d", "10.9.0.2", "-p", "udp", "--sport", "1",
                 "--dport", "2", "-t", "30")
    ns.conntrack("-I", "-s", "2001:db8:9::1", "-d", "2001:db8:9::2", "-p", "udp", "--sport", "1",
                 "--dport", "2", "-t", "30")
    assert str(next(events).flow.orig.src) == "2001:db8:9::1"
    sock.close()


def test_events_subscribed_when_the_iterator_is_created(ns, ct) -> None:
    """Events that happen after ``events()`` returned are delivered even when the first
    ``next()`` comes later (the socket must be bound when the iterator is made)."""
    it = ct.events(Group.NEW)
    first = catalogue(2)[0]
    ns.conntrack("-I", *first.args)
    got: list = []
    th = threading.Thread(target=lambda: got.append(next(it)), daemon=True)
    th.start()
    th.join(2)
    if th.is_alive():  # subscribed too late: release the reader with a second event
        ns.conntrack("-I", "-s", "10.9.0.1", "-d", "10.9.0.2", "-p", "udp", "--sport", "1",
                     "--dport", "2", "-t", "30")
        th.join(5)
    assert got and got[0].flow.orig == first.flow.orig
    it.close()


def test_overrun_is_counted_not_fatal(ns, ct) -> None:
    """The loss is counted once the queue (older events) has been read, and reported on
    the next event: the first one after the gap."""
    sock = NetlinkSocket(groups=Group.NEW, rcvbuf=4096)
    sock.settimeout(0.5)
    lost_calls: list[int] = []
    listener = ct.listen(sock=sock, on_overrun=lost_calls.append)
    n = 300
    flows = []
    for i in range(n + 1):
        o = Tuple(src=f"10.50.{i // 200}.{i % 200 + 1}", dst="10.60.0.1", proto=17, sport=1000 + i,
                  dport=53)
        flows.append(Flow(family=2, orig=o, reply=o.reversed(), timeout=100))
    assert ct.create_many(flows[:n]) == [None] * n
    got = []
    with pytest.raises(TimeoutError):  # the iterator ends, the listener stays
        for e in listener:
            got.append(e)
    assert lost_calls and len(got) + sum(lost_calls) == n
    assert not any(e.lost for e in got)
    assert len({e.flow.id for e in got}) == len(got)
    ct.create(flows[n])
    after = next(iter(listener))
    assert after.lost == sum(lost_calls) and after.flow.orig == flows[n].orig
    sock.close()


# --- expectation events --------------------------------------------------------------------

def until(it, done, limit: int = 1000) -> list:
    """Events up to and including the one for which ``done(events so far)`` holds."""
    got: list = []
    while len(got) < limit:
        got.append(next(it))
        if done(got):
            return got
    raise AssertionError(f"no end after {limit} events: {got}")


def test_expectation_events(ns, ct, ftp) -> None:
    sock = listen(Group.EXPECT)
    events = ct.events(Group.EXPECT, sock=sock)
    s4 = ftp.session(socket.AF_INET)
    s6 = ftp.session(socket.AF_INET6)
    final = {e.id: e for e in ct.dump_expect(0)}
    assert sorted((e.family, e.tuple.dport) for e in final.values()) == [
        (2, s4.data_port), (10, s6.data_port)]
    got = until(events, lambda g: {e.expect.id for e in g if e.type == EventType.NEW} >= set(final))
    assert all(e.expect is not None and e.flow is None and e.portid == 0 for e in got)
    # the helper replaces its expectation once per pass over the packet (see helpers.ftp)
    seen_new = set()
    for e in got:
        if e.type == EventType.DESTROY:
            assert e.expect.id in seen_new
        else:
            assert e.type == EventType.NEW
            seen_new.add(e.expect.id)
    for e in got:
        if e.expect.id in final:
            assert e.expect.copy(timeout=None) == final[e.expect.id].copy(timeout=None)
            assert e.expect.helper == "ftp" and e.expect.master.dport == 21
    (e4,) = [e for e in final.values() if e.family == 2]
    (e6,) = [e for e in final.values() if e.family == 10]
    ns.conntrack("-D", "expect", "-s", "127.0.0.1", "-d", "127.0.0.1", "-p", "tcp",
                 "--sport", "0", "--dport", str(s4.data_port), "--reply-port-src", "1",
                 "--reply-port-dst", "1", check=False)  # 1.4.7 exits 1 even on success
    ct.delete_expect(e6.tuple)
    gone = take(events, 2)
    assert [(e.type, e.expect.id) for e in gone] == [(EventType.DESTROY, e4.id),
                                                     (EventType.DESTROY, e6.id)]
    sock.close()


def test_conntrack_and_expectation_events_together(ns, ct, ftp) -> None:
    sock = listen(Group.CONNTRACK | Group.EXPECT)
    events = ct.events(sock=sock)
    s = ftp.session(socket.AF_INET, "PASV")
    got = until(events, lambda g: g[-1].expect is not None)
    assert got[0].type == EventType.NEW and got[0].flow.orig.dport == 21
    assert {e.type for e in got[1:-1]} == {EventType.UPDATE}
    assert all(e.flow.id == got[0].flow.id for e in got[:-1])
    assert got[-1].type == EventType.NEW and got[-1].expect.tuple.dport == s.data_port
    assert got[-1].expect.master == got[0].flow.orig
    with Conntrack() as other:  # and the reference agrees that the helper is attached
        (flow,) = other.dump()
    assert flow.helper == "ftp" and reference_views(ns)[flow.id]["helper"] == "ftp"
    sock.close()
