"""Expectations: ``dump_expect``, ``get_expect``, ``create_expect``, ``delete_expect``,
``flush_expect``, ``count_expect`` and ``expect_stats`` against the reference.

Masters come from real FTP control connections over loopback with the kernel's ``ftp``
helper attached by nftables (``helpers.ftp``): one IPv4 (PORT) and one IPv6 (EPSV)
session, each leaving one expectation. The ftp helper keeps at most one expectation per
master, so a new one for the same master replaces the old. The kernel gives every
expectation of a helped master the helper's timeout (ftp: 300 s), whatever the request
says.
"""
from __future__ import annotations

import socket

import pytest
from helpers.reference import (
    assert_same_expectations, expect_view, parse_expect_xml, parse_stats,
)

from ctnetlink.errors import ConntrackError, FlowExists, FlowNotFound, NotSupported
from ctnetlink.model import Expect, Flow, Tuple

LO = {2: "127.0.0.1", 10: "::1"}
FULL = {2: "255.255.255.255", 10: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}


@pytest.fixture
def sessions(ns, ftp):
    return {2: ftp.session(socket.AF_INET), 10: ftp.session(socket.AF_INET6)}


def ref_expect(ns, family: int | None = None) -> list[dict]:
    fam = ("-f", "ipv6") if family == 10 else ()
    return parse_expect_xml(ns.conntrack("-L", "expect", *fam, "-o", "xml").stdout)


def master(sess) -> Tuple:
    lo = LO[2 if sess.family == socket.AF_INET else 10]
    return Tuple(src=lo, dst=lo, proto=6, sport=sess.client_port, dport=21)


def ours(family: int, sess, sport: int = 1800, dport: int = 1801, **kw) -> Expect:
    lo = LO[family]
    return Expect(family=family, master=master(sess), tuple=Tuple(src=lo, dst=lo, proto=6, sport=sport, dport=dport),
                  mask=Tuple(src=FULL[family], dst=FULL[family], proto=6, sport=0xFFFF, dport=0xFFFF), timeout=120, **kw)


def ref_tuple_args(family: int, sport: int, dport: int) -> list[str]:
    lo = LO[family]
    return ["-s", lo, "-d", lo, "-p", "tcp", "--sport", str(sport), "--dport", str(dport),
            "--reply-port-src", "1", "--reply-port-dst", "1"]  # required, not sent


def test_dump_expect_like_reference(ns, ct, sessions) -> None:
    assert_same_expectations(ct.dump_expect(2), ref_expect(ns))
    assert_same_expectations(ct.dump_expect(10), ref_expect(ns, 10))
    assert_same_expectations(ct.dump_expect(0), ref_expect(ns) + ref_expect(ns, 10))
    assert [e.family for e in ct.dump_expect()] == [2]  # the default family is IPv4
    for fam, sess in sessions.items():
        (e,) = ct.dump_expect(fam)
        assert e.master == master(sess) and e.tuple.dport == sess.data_port
        assert e.helper == "ftp" and e.klass == 0 and 0 < e.timeout <= 300 and e.id


def test_get_expect(ns, ct, sessions) -> None:
    for fam in (2, 10):
        (e,) = ct.dump_expect(fam)
        for as_master in (True, False):
            got = ct.get_expect(e.tuple, as_master=as_master)
            assert got.copy(timeout=None) == e.copy(timeout=None)
        text = ns.conntrack("-G", "expect", *ref_tuple_args(fam, e.tuple.sport, e.tuple.dport)).stdout
        assert f"dport={e.tuple.dport} " in text and "helper=ftp" in text
    with pytest.raises(FlowNotFound) as exc:
        ct.get_expect(Tuple(src="127.0.0.1", dst="127.0.0.1", proto=6, sport=1, dport=2))
    assert exc.value.errno == 2


@pytest.mark.parametrize("family", [2, 10])
def test_reference_creates_we_read(ns, ct, sessions, family) -> None:
    sess = sessions[family]
    lo = LO[family]
    # --tuple-port-* must satisfy port >> 8 == 6 with 1.4.7 and tcp (see the spec, 3.12)
    ns.conntrack("-I", "expect", "-s", lo, "-d", lo, "-p", "tcp", "--sport", str(sess.client_port),
                 "--dport", "21", "--tuple-src", lo, "--tuple-dst", lo, "--tuple-port-src", "1700",
                 "--tuple-port-dst", "1701", "--mask-src", FULL[family], "--mask-dst", FULL[family],
                 "--mask-port-src", "65535", "--mask-port-dst", "65535", "-t", "200")
    (e,) = ct.dump_expect(family)  # it replaced the helper's own expectation
    assert (e.tuple.sport, e.tuple.dport) == (1700, 1701) and e.master == master(sess)
    assert (e.mask.sport, e.mask.dport) == (0xFFFF, 0xFFFF) and 295 <= e.timeout <= 300
    assert_same_expectations([e], ref_expect(ns, family))


@pytest.mark.parametrize("family", [2, 10])
def test_we_create_reference_lists(ns, ct, sessions, family) -> None:
    ct.create_expect(ours(family, sessions[family]))
    ref = ref_expect(ns, family)
    assert_same_expectations(ct.dump_expect(family), ref)
    (r,) = ref
    assert r["expected"] == (LO[family], LO[family], 1800, 1801) and r["helper"] == "ftp"
    assert 295 <= r["timeout"] <= 300  # the ftp helper's policy, not the request
    text = ns.conntrack("-G", "expect", *ref_tuple_args(family, 1800, 1801)).stdout
    assert "sport=1800 dport=1801" in text


def test_create_expect_with_helper_name_and_class(ns, ct, sessions) -> None:
    ct.create_expect(ours(2, sessions[2], helper="ftp", klass=0))
    (e,) = ct.dump_expect(2)
    assert e.helper == "ftp" and e.klass == 0 and expect_view(e)["flags"] == frozenset()


def test_create_expect_errors(ns, ct, sessions) -> None:
    exp = ours(2, sessions[2])
    ct.create_expect(exp)
    with pytest.raises(FlowExists) as e1:
        ct.create_expect(exp)
    # the expected tuple is looked up first: a new one for the next cases
    other = exp.copy(tuple=exp.tuple.replace(sport=1900, dport=1901))
    with pytest.raises(FlowNotFound) as e2:
        ct.create_expect(other.copy(master=Tuple(src="127.0.0.1", dst="127.0.0.1", proto=6, sport=1, dport=21)))
    # a master without a helper cannot have expectations
    plain = Tuple(src="10.0.0.1", dst="10.0.0.2", proto=6, sport=5, dport=6)
    ct.create(Flow(family=2, orig=plain, reply=plain.reversed(), timeout=100))
    with pytest.raises(NotSupported) as e3:
        ct.create_expect(other.copy(master=plain))
    for e, code in ((e1, 17), (e2, 2), (e3, 95)):
        assert isinstance(e.value, ConntrackError) and e.value.errno == code
        assert e.value.request[4:6] == (0x200).to_bytes(2, "little")  # IPCTNL_MSG_EXP_NEW


def test_delete_expect_both_ways(ns, ct, sessions) -> None:
    (e4,) = ct.dump_expect(2)
    ct.delete_expect(e4.tuple)
    assert ref_expect(ns) == [] and list(ct.dump_expect(2)) == []
    with pytest.raises(FlowNotFound):
        ct.delete_expect(e4.tuple)
    (e6,) = ct.dump_expect(10)
    r = ns.conntrack("-D", "expect", *ref_tuple_args(10, e6.tuple.sport, e6.tuple.dport), check=False)
    assert r.returncode == 1  # 1.4.7 exits 1 even on success (spec 3.12)
    with pytest.raises(FlowNotFound):
        ct.get_expect(e6.tuple)
    assert ref_expect(ns, 10) == []


def test_delete_expect_by_id_removes_only_that_one(ns, ct, sessions) -> None:
    (e4,) = ct.dump_expect(2)
    (e6,) = ct.dump_expect(10)
    ct.delete_expect(Expect(family=2, id=e4.id))
    assert [e.id for e in ct.dump_expect(0)] == [e6.id]


def test_flush_expect_both_ways(ns, ct, sessions, ftp) -> None:
    assert len(list(ct.dump_expect(0))) == 2
    ct.flush_expect()
    assert ref_expect(ns) == ref_expect(ns, 10) == []
    ftp.session(socket.AF_INET)
    ftp.session(socket.AF_INET6)
    assert len(list(ct.dump_expect(0))) == 2
    ns.conntrack("-F", "expect")
    assert list(ct.dump_expect(0)) == []


def test_count_expect_and_stats(ns, ct, sessions, ftp) -> None:
    ftp.session(socket.AF_INET)
    assert ct.count_expect() == int(ns.conntrack("-C", "expect").stdout) == 2
    assert ct.count_expect(10) == 1 and ct.count_expect(0) == 3
    ours_ = {s.cpu: s.values for s in ct.expect_stats()}
    assert ours_ == parse_stats(ns.conntrack("-S", "expect").stdout)
    assert sum(v["expect_create"] for v in ours_.values()) >= 3
