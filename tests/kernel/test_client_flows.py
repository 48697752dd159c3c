"""Conntrack entries through our client, checked against the reference ``conntrack``.

Both directions for the whole catalogue of ``helpers.flows`` (every protocol, IPv4 and
IPv6, NAT, zones, marks) with counters and timestamps on and the label extension
enabled: the reference creates and we read (``dump``, ``get``), we create and the
reference lists; and the entries created by either tool are the same. Then ``get`` by
either tuple and zone, ``update`` (mark, timeout, status, labels) and ``delete`` in both
directions, real traffic (counters, TCP window state, a helper), the per-family dump,
the ``dying``/``unconfirmed`` tables and reading counters with ``zero=True``.
"""
from __future__ import annotations

import socket
import struct
import time

import pytest
from helpers.flows import KERNEL_TRACKS_DCCP, all_cases, catalogue, request_view
from helpers.ftp import enable_labels
from helpers.netns import NetNS
from helpers.reference import (
    assert_same_table, assert_views_equal, flow_view, parse_extended, parse_xml,
    reference_views,
)

from ctnetlink.client import Conntrack
from ctnetlink.constants import Status
from ctnetlink.errors import FlowNotFound
from ctnetlink.model import Flow, Tuple

CASES = all_cases()


def key(t: Tuple) -> tuple:
    if t.proto == 33 and not KERNEL_TRACKS_DCCP:
        return (str(t.src), str(t.dst), t.proto)  # a generic entry: the ports are dropped
    return (str(t.src), str(t.dst), t.proto, t.sport, t.dport, t.icmp_type, t.icmp_id)


def by_key(flows) -> dict[tuple, Flow]:
    return {key(f.orig): f for f in flows}


def ref_ids(ns: NetNS, *args: str) -> set[int]:
    return {e["id"] for e in parse_extended(ns.conntrack("-L", *args, "-o", "extended,id").stdout)}


def check_request_fields(flows: dict[tuple, Flow], labels: dict[int, str]) -> None:
    for case in CASES:
        f = flows[key(case.flow.orig)]
        view = flow_view(f, labels)
        want = request_view(case)
        assert {k: view[k] for k in want} == want, case.name
        assert f.labels == case.flow.labels
        assert view["counters"] == ((0, 0), (0, 0))
        assert f.timestamp is not None and f.timestamp.start > 0 and f.timestamp.stop is None
        assert 0 < f.timeout <= 300


def test_reference_creates_we_dump_and_get(ns, ct, acct, labels) -> None:
    for case in CASES:
        ns.conntrack("-I", *case.args)
    ref = reference_views(ns)
    flows = list(ct.dump())
    assert len(flows) == len(CASES)
    assert_same_table(flows, ref, labels)
    check_request_fields(by_key(flows), labels)
    for f in flows:
        got = ct.get(f.orig, zone=f.zone)
        assert got.use == 2  # the kernel holds a reference while answering
        assert_views_equal(flow_view(got, labels), {**flow_view(f, labels), "use": 2})


def test_we_create_reference_lists(ns, ct, acct, labels) -> None:
    for case in CASES:
        ct.create(case.flow)
    flows = list(ct.dump())
    assert_same_table(flows, reference_views(ns), labels)
    check_request_fields(by_key(flows), labels)
    for case in CASES:  # the reference's -G finds each entry (it cannot name a zone)
        f = case.flow
        if f.zone is not None or f.orig.zone is not None:
            continue
        if f.proto == 33 and not KERNEL_TRACKS_DCCP:
            continue  # the reply lacks the ports, so -G's user-space check drops it
        args = ["-s", str(f.orig.src), "-d", str(f.orig.dst), "-p", str(f.proto)]
        if f.orig.sport is not None and f.proto in (6, 17, 33, 132, 136):
            args += ["--sport", str(f.orig.sport), "--dport", str(f.orig.dport)]
        if f.proto == 47:
            args += ["--srckey", str(f.orig.sport), "--dstkey", str(f.orig.dport)]
        if f.proto in (1, 58):
            v = "icmpv6-" if f.proto == 58 else "icmp-"
            args += [f"--{v}type", str(f.orig.icmp_type), f"--{v}code", str(f.orig.icmp_code),
                     f"--{v}id", str(f.orig.icmp_id)]
        got = parse_xml(ns.conntrack("-G", *args, "-o", "xml").stdout)
        assert len(got) == 1, case.name
        assert got[0]["orig"]["src"] == str(f.orig.src) and got[0]["orig"]["proto"] == f.proto


def test_either_tool_creates_the_same_entry(ns, ct, acct, labels) -> None:
    """The catalogue created by the reference in a second namespace equals ours."""
    for case in CASES:
        ct.create(case.flow)
    with NetNS() as other:
        enable_labels(other)
        other.sysctl("net.netfilter.nf_conntrack_acct", 1)
        other.sysctl("net.netfilter.nf_conntrack_timestamp", 1)
        for case in CASES:
            other.conntrack("-I", *case.args)
        theirs = {(v["proto"], v["orig"]): v for v in reference_views(other).values()}
    ours = {(v["proto"], v["orig"]): v for v in (flow_view(f, labels) for f in ct.dump())}
    assert sorted(ours) == sorted(theirs)
    for k, v in ours.items():
        a = {n: x for n, x in v.items() if n not in ("id", "timestamp", "timeout")}
        b = {n: x for n, x in theirs[k].items() if n not in ("id", "timestamp", "timeout")}
        assert a == b


@pytest.mark.parametrize("family,name", [(0, None), (2, "ipv4"), (10, "ipv6")])
def test_dump_by_family(ns, ct, family, name) -> None:
    for case in CASES:
        ct.create(case.flow)
    ours = {f.id for f in ct.dump(family)}
    assert all(f.family == family for f in ct.dump(family) if family)
    assert ours == ref_ids(ns, *(("-f", name) if name else ()))
    assert len(ours) == len([c for c in CASES if family in (0, c.family)])


def test_get_by_reply_tuple_and_zone(ns, ct) -> None:
    cases = {c.name: c for c in catalogue(2)}
    for c in cases.values():
        ct.create(c.flow)
    nat = cases["udp-dnat"].flow
    by_reply = ct.get(Flow(family=2, reply=nat.reply))
    assert by_reply.orig == nat.orig.replace(zone=None) and by_reply.reply == nat.reply
    assert by_reply.status & Status.DST_NAT_DONE
    zoned = cases["udp-zone"].flow
    assert ct.get(zoned.orig, zone=9).zone == 9
    with pytest.raises(FlowNotFound):
        ct.get(zoned.orig)  # zone 0
    oz = cases["udplite-orig-zone"].flow
    assert ct.get(oz.orig).orig.zone == 4
    rz = cases["sctp-reply-zone"].flow
    assert ct.get(Flow(family=2, reply=rz.reply)).reply.zone == 6


# --- update ---------------------------------------------------------------------------------

def test_update_mark_timeout_status_labels_seen_by_reference(ns, ct, labels) -> None:
    c = {c.name: c for c in catalogue(10)}["udp-zone"]
    ct.create(c.flow.copy(labels=1 << 2, labels_size=16))
    new = Flow(family=10, orig=c.flow.orig, zone=9, mark=0xABCD, timeout=1000,
               status=int(Status.SEEN_REPLY | Status.ASSURED | Status.CONFIRMED),
               labels=(1 << 5) | (1 << 0) | (1 << 100), labels_size=16)
    ct.update(new)
    (ref,) = reference_views(ns).values()
    assert ref["mark"] == 0xABCD
    assert 995 <= ref["timeout"] <= 1000
    assert ref["status"] == {"SEEN_REPLY", "ASSURED"} and ref["assured"] and not ref["unreplied"]
    assert set(ref["labels"]) == {labels[0], labels[5]}
    got = ct.get(c.flow.orig, zone=9)
    assert got.label_bits == [0, 5, 100] and got.labels_size == 16
    # with a mask only the masked bits change
    ct.update(Flow(family=10, orig=c.flow.orig, zone=9, labels=1 << 2, labels_mask=(1 << 2) | 1,
                   labels_size=16))
    assert ct.get(c.flow.orig, zone=9).label_bits == [2, 5, 100]
    assert set(reference_views(ns)[got.id]["labels"]) == {labels[2], labels[5]}


def test_update_status_bits_like_the_reference(ns, ct) -> None:
    """Setting status bits works without restating CONFIRMED, as with ``conntrack -U -u``.

    The kernel refuses (EBUSY) a CTA_STATUS that would clear CONFIRMED on a confirmed
    entry; the reference therefore always adds CONFIRMED to what it sends."""
    c = {c.name: c for c in catalogue(2)}["udp-dnat"]
    ct.create(c.flow)
    ns.conntrack("-U", "-s", "10.1.0.1", "-p", "udp", "--sport", "1003", "-u", "SEEN_REPLY")
    assert ct.get(c.flow.orig).status & Status.SEEN_REPLY
    ct.update(Flow(family=2, orig=c.flow.orig, status=int(Status.ASSURED | Status.SEEN_REPLY)))
    got = ct.get(c.flow.orig)
    assert got.status & Status.ASSURED and got.status & Status.CONFIRMED


def test_reference_updates_we_read(ns, ct, labels) -> None:
    c = {c.name: c for c in catalogue(2)}["tcp"]
    ct.create(c.flow.copy(labels=None))
    ns.conntrack("-U", "-s", "10.1.0.1", "-p", "tcp", "--sport", "1000", "-m", "42")
    assert ct.get(c.flow.orig).mark == 42
    ns.conntrack("-U", "-s", "10.1.0.1", "-p", "tcp", "--sport", "1000", "-t", "77")
    assert 70 <= ct.get(c.flow.orig).timeout <= 77
    ns.conntrack("-U", "-s", "10.1.0.1", "-p", "tcp", "--sport", "1000",
                 "--label-add", labels[2])
    got = ct.get(c.flow.orig)
    assert got.label_bits == [2]
    ns.conntrack("-U", "-s", "10.1.0.1", "-p", "tcp", "--sport", "1000", "--label-del")
    assert not ct.get(c.flow.orig).labels


def test_update_missing_entry_is_not_found(ns, ct) -> None:
    c = catalogue(2)[0]
    with pytest.raises(FlowNotFound) as e:
        ct.update(c.flow.copy(mark=1))
    assert e.value.errno == 2


# --- delete ---------------------------------------------------------------------------------

def test_we_delete_what_the_reference_created(ns, ct) -> None:
    for case in CASES:
        ns.conntrack("-I", *case.args)
    for f in list(ct.dump()):
        ct.delete(f)
        with pytest.raises(FlowNotFound):
            ct.get(f.orig, zone=f.zone)
    assert ns.conntrack("-L").stdout == ""
    assert ns.conntrack("-C").stdout.strip() == "0"


def test_delete_by_tuple_and_zone(ns, ct) -> None:
    cases = {c.name: c for c in catalogue(2)}
    for c in cases.values():
        ct.create(c.flow)
    zoned = cases["udp-zone"].flow
    with pytest.raises(FlowNotFound):
        ct.delete(zoned.orig)  # zone 0
    ct.delete(Flow(family=2, orig=zoned.orig, zone=9))
    ct.delete(Flow(family=2, reply=cases["udp-dnat"].flow.reply))
    with pytest.raises(FlowNotFound):
        ct.get(cases["udp-dnat"].flow.orig)
    left = {c.name for c in cases.values()} - {"udp-zone", "udp-dnat"}
    assert len(ref_ids(ns)) == len(left)


def test_reference_deletes_what_we_created(ns, ct) -> None:
    for case in CASES:
        ct.create(case.flow)
    ns.conntrack("-D", "-p", "udp")
    ns.conntrack("-D", "-f", "ipv6", "-p", "tcp")
    left = {f.id for f in ct.dump()}
    want = [c for c in CASES if not (c.flow.proto == 17 or (c.family == 10 and c.flow.proto == 6))]
    assert len(left) == len(want) and left == ref_ids(ns)
    with pytest.raises(FlowNotFound):
        ct.get(catalogue(2)[1].flow.orig, zone=9)


# --- real traffic ---------------------------------------------------------------------------

def _icmp_echo(family: int) -> None:
    if family == socket.AF_INET:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        body = struct.pack(">BBHHH", 8, 0, 0, 0x1234, 1) + b"ping"
        csum = _checksum(body)
        body = body[:2] + struct.pack(">H", csum) + body[4:]
        dst = "127.0.0.1"
    else:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        body = struct.pack(">BBHHH", 128, 0, 0, 0x1234, 1) + b"ping"  # kernel fills the sum
        dst = "::1"
    with s:
        s.settimeout(5)
        s.sendto(body, (dst, 0))
        while True:  # our own request comes back first on a raw socket, then the reply
            data = s.recv(1500)
            t = data[20] if family == socket.AF_INET else data[0]
            if t in (0, 129):
                return


def _checksum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f">{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def _udp_exchange(family: int) -> None:
    addr = "127.0.0.1" if family == socket.AF_INET else "::1"
    with socket.socket(family, socket.SOCK_DGRAM) as srv, socket.socket(family, socket.SOCK_DGRAM) as cli:
        srv.bind((addr, 0))
        srv.settimeout(5)
        cli.settimeout(5)
        cli.sendto(b"x" * 10, srv.getsockname()[:2])
        data, peer = srv.recvfrom(100)
        srv.sendto(b"y" * 20, peer)
        cli.recv(100)


def test_traffic_counters_and_helper(ns, ct, acct, ftp, label_names) -> None:
    for fam in (socket.AF_INET, socket.AF_INET6):
        _udp_exchange(fam)
        _icmp_echo(fam)
        ftp.session(fam)
    flows = list(ct.dump())
    ref = reference_views(ns)
    assert sorted(ref) == sorted(f.id for f in flows)
    for f in flows:
        ours, theirs = flow_view(f, label_names), ref[f.id]
        if f.proto == 6:
            # a delayed ACK may pass between the two dumps: counters only grow, and the
            # "unacknowledged data" timeout (300 s) may turn into the established one
            for (a, b), (c, d) in zip(ours.pop("counters"), theirs.pop("counters")):
                assert a <= c and b <= d
            ours.pop("timeout"), theirs.pop("timeout")
            assert ours == theirs
        else:
            assert_views_equal(ours, theirs)
    protos = sorted((f.family, f.proto) for f in flows)
    assert protos == [(2, 1), (2, 6), (2, 17), (10, 6), (10, 17), (10, 58)]
    for f in flows:
        assert f.counters_orig.packets >= 1 and f.counters_reply.packets >= 1
        assert f.status & Status.SEEN_REPLY
        if f.proto == 6:
            assert f.helper == "ftp" and f.status & Status.HELPER
            assert f.tcp.state == 3 and f.tcp.wscale_orig is not None
    udp4 = next(f for f in flows if (f.family, f.proto) == (2, 17))
    assert (udp4.counters_orig.packets, udp4.counters_orig.bytes) == (1, 38)
    assert (udp4.counters_reply.packets, udp4.counters_reply.bytes) == (1, 48)


def test_zero_counters_like_the_reference(ns, ct, acct, tracking) -> None:
    _udp_exchange(socket.AF_INET)
    _udp_exchange(socket.AF_INET6)
    (before,) = ct.dump(2, zero=True)
    assert before.counters_orig.packets == 1
    (after,) = [f for f in ct.dump(2)]
    assert (after.counters_orig.packets, after.counters_reply.bytes) == (0, 0)
    ref = parse_xml(ns.conntrack("-L", "-z", "-f", "ipv6", "-o", "xml").stdout)
    assert [x["orig"]["counters"] for x in ref] == [(1, 58)]
    (v6,) = ct.dump(10)
    assert (v6.counters_orig.packets, v6.counters_orig.bytes) == (0, 0)


@pytest.mark.parametrize("table", ["dying", "unconfirmed"])
def test_dying_and_unconfirmed_tables(ns, ct, table) -> None:
    for case in CASES:
        ct.create(case.flow)
    ours = list(ct.dump(table=table))
    theirs = ns.conntrack("-L", table).stdout
    assert ours == [] and theirs == ""


def test_flows_compare_by_value_and_keys_hash_by_value(ns, ct) -> None:
    for case in catalogue(2):
        ct.create(case.flow)
    a = {f.id: f.copy(timeout=None) for f in ct.dump()}
    b = {f.id: f.copy(timeout=None) for f in ct.dump()}
    assert a == b
    with pytest.raises(TypeError, match="unhashable"):
        hash(next(iter(a.values())))
    assert {i: hash(f.key) for i, f in a.items()} == {i: hash(f.key) for i, f in b.items()}
    assert len({f.key for f in a.values()}) == len(a)


@pytest.mark.parametrize("pipeline", [True, False], ids=["pipelined", "plain"])
def test_abandoned_dump_leaves_the_socket_usable_at_once(ns, ct, pipeline) -> None:
    """Stopping early reads and drops the rest of the dump, without waiting for data
    that will never come (the socket has a 2 s timeout here: a wait would show)."""
    flows = []
    for i in range(600):  # several datagrams
        o = Tuple(src=f"10.40.{i // 250}.{i % 250 + 1}", dst="10.41.0.1", proto=17, sport=1000 + i, dport=53)
        flows.append(Flow(family=2, orig=o, reply=o.reversed(), timeout=100))
    ct.create_many(flows)
    ct.sock.settimeout(2)
    for stop_after in (1, 50, 599):
        t0 = time.monotonic()
        it = ct.dump_raw(pipeline=pipeline)
        for _ in range(stop_after):
            next(it)
        it.close()
        assert time.monotonic() - t0 < 1.0, f"closing the dump after {stop_after} entries waited"
        assert ct.count() == 600
        assert len(list(ct.dump(mark=0))) == 600


def test_second_client_sees_the_same_table(ns, ct) -> None:
    for case in CASES:
        ct.create(case.flow)
    with Conntrack() as other:
        assert sorted(f.id for f in other.dump()) == sorted(f.id for f in ct.dump())
