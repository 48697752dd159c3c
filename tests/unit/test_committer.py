"""The committer (``conntrackd -c``, spec §6.7) without a kernel: a fake netlink client
records the requests and answers with chosen errors.

The external cache is filled as the receive path fills it (NOTRACK datagrams built with
our wire codec, applied by the sync machinery). Checked: the reference's log lines and
counters, the connection kept open until the end, EEXIST -> delete + create once more
(and the ``commit-destroy`` / ``commit-create`` errors with the flow line after them),
related flows after all others, the timeout estimate (and the 60 s where 1.4.7 sends
none), ``commit already in progress, skipping``, flushes refused while a commit runs and
accepted after it (1.4.7 refuses them for ever with a small HashSize), worker processes
reporting through their pipes, and the generated tuple rebuilding of cache entries.
"""
from __future__ import annotations

import errno
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.miniloop import MiniLoop  # noqa: E402

from conntrack_tools.conntrackd import entry as E  # noqa: E402
from conntrack_tools.conntrackd import handlers as H  # noqa: E402
from conntrack_tools.conntrackd.cache import F_INET6, F_MIRRORED, META_SIZE  # noqa: E402
from conntrack_tools.conntrackd.commit import Committer, CommitSettings, Result  # noqa: E402
from conntrack_tools.conntrackd.log import ERROR  # noqa: E402
from conntrack_tools.conntrackd.sync.common import CacheOp  # noqa: E402
from conntrack_tools.conntrackd.sync.notrack import NotrackMachine  # noqa: E402
from conntrack_tools.conntrackd.sync.source import apply  # noqa: E402
from conntrack_tools.conntrackd.syncmode import SyncMode, SyncSettings  # noqa: E402
from conntrack_tools.conntrackd.wire.codec import flow_message  # noqa: E402
from ctnetlink.decode import decode_flow  # noqa: E402
from ctnetlink.errors import wrap  # noqa: E402
from ctnetlink.model import Flow, NatRange, SctpInfo, TcpInfo, Tuple  # noqa: E402
from nfnl.errors import NetlinkError  # noqa: E402

TOOK = re.compile(r"commit has taken \d+\.\d{6} seconds")


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Conn:
    def __init__(self) -> None:
        self.detached = self.closed = False

    def detach(self) -> None:
        self.detached = True

    def close(self) -> None:
        self.closed = True


def decoded(family: int, attrs: bytes) -> Flow:
    msg = (20 + len(attrs)).to_bytes(4, "little") + b"\x00\x01\x00\x00" + bytes(8) + \
        bytes((family, 0, 0, 0)) + attrs
    return decode_flow(msg, 0, len(msg))


class FakeCt:
    """Records requests; ``errors`` maps (operation, orig sport) -> a list of errnos
    returned one per call (create, delete)."""

    def __init__(self, errors: dict | None = None) -> None:
        self.log: list[tuple[str, Flow]] = []
        self.errors = {k: list(v) for k, v in (errors or {}).items()}

    def _many(self, op: str, requests) -> dict:
        out = {}
        for i, (fam, attrs) in enumerate(requests):
            f = decoded(fam, attrs)
            self.log.append((op, f))
            pending = self.errors.get((op, f.orig.sport))
            if pending:
                out[i] = wrap(NetlinkError(pending.pop(0)))
        return out

    def create_raw_many(self, requests) -> dict:
        return self._many("create", requests)

    def delete_raw_many(self, requests) -> dict:
        return self._many("delete", requests)

    def close(self) -> None:
        pass


def flows(n: int) -> list[Flow]:
    out = []
    for i in range(n):
        o = Tuple(src=f"10.1.{i // 200}.{i % 200 + 1}", dst="10.2.0.1", proto=6,
                  sport=1000 + i, dport=80)
        out.append(Flow(family=2, orig=o, reply=o.reversed(), status=0xE, timeout=600,
                        mark=i, tcp=TcpInfo(state=3)))
    return out


def related_flow(sport: int) -> Flow:
    o = Tuple(src="10.1.9.1", dst="10.2.0.1", proto=6, sport=sport, dport=20)
    master = Tuple(src="10.1.9.1", dst="10.2.0.1", proto=6, sport=sport + 1, dport=21)
    return Flow(family=2, orig=o, reply=o.reversed(), status=0xF, timeout=100, master=master,
                tcp=TcpInfo(state=3))


def make(fl: list[Flow], *, settings: CommitSettings | None = None, ct: FakeCt | None = None,
         clock: Clock | None = None, **sync) -> tuple[SyncMode, Committer, list, MiniLoop]:
    clock = clock or Clock()
    logs: list = []
    loop = MiniLoop()
    mode = SyncMode(SyncSettings(**sync), log=lambda lv, m: logs.append((lv, m)), loop=loop,
                    clock=clock)
    machine = NotrackMachine()
    data = b"".join(flow_message(0, f, i) for i, f in enumerate(fl))
    for a in machine.receive(data, 0.0):
        if isinstance(a, CacheOp):
            apply(a, mode.external, mode.external_exp)
    assert len(mode.external) == len(fl)
    flow_lines: list = []
    committer = Committer(mode, ct or FakeCt(), loop, mode.log,
                          settings=settings or CommitSettings(),
                          flow_log=lambda text, priority: flow_lines.append((priority, text)),
                          clock=clock)
    mode.committer = committer
    committer.flow_lines = flow_lines  # type: ignore[attr-defined]
    return mode, committer, logs, loop


def run(mode: SyncMode, loop: MiniLoop, code: int = H.ALL_COMMIT) -> Conn:
    conn = Conn()
    assert mode.commit(code, conn)
    assert loop.run_until(lambda: not mode.commit_running, 10)
    return conn


def messages(logs: list) -> list[str]:
    return [TOOK.sub("commit has taken T seconds", m) for _, m in logs]


def test_commit_logs_counts_and_closes_the_client() -> None:
    mode, cm, logs, loop = make(flows(10))
    conn = run(mode, loop)
    assert conn.detached and conn.closed
    assert messages(logs) == ["committing all external caches", "Committed 10 new entries",
                              "commit has taken T seconds"]
    assert [op for op, _ in cm.ct.log] == ["create"] * 10
    assert sorted(f.mark for _, f in cm.ct.log) == list(range(10))
    assert len(mode.external) == 10  # a commit does not flush
    assert mode.external.stats.commit_ok == 10 and not mode.commit_running


def test_request_names() -> None:
    mode, cm, logs, loop = make(flows(2))
    run(mode, loop, H.CT_COMMIT)
    assert messages(logs)[0] == "committing conntrack cache"
    logs.clear()
    conn = Conn()
    assert mode.commit(H.EXP_COMMIT, conn)  # without ExpectationSync: nothing at all
    assert logs == [] and not conn.detached
    assert not mode.commit(H.STATS, conn)


def test_requests_are_the_reference_ones() -> None:
    """Reply = inverted original tuple, NAT requests, EXPECTED cleared, "be liberal"."""
    o = Tuple(src="10.1.0.1", dst="10.2.0.1", proto=6, sport=1000, dport=80)
    snat = Flow(family=2, orig=o, reply=Tuple(src="10.2.0.1", dst="10.9.0.9", proto=6,
                                               sport=80, dport=2000),
                status=0x19F, timeout=600, mark=3, zone=4, tcp=TcpInfo(state=3))
    o6 = Tuple(src="2001:db8::1", dst="2001:db8::2", proto=132, sport=5, dport=6)
    sctp = Flow(family=10, orig=o6, reply=o6.reversed(), status=0xE, timeout=600,
                sctp=SctpInfo(state=3, vtag_orig=0x11223344, vtag_reply=0x55667788))
    mode, cm, logs, loop = make([snat, sctp])
    run(mode, loop)
    got = {f.orig.proto: f for _, f in cm.ct.log}
    t = got[6]
    assert t.reply == o.reversed() and t.zone == 4 and t.mark == 3
    assert t.nat_src == NatRange(min_ip=t.nat_src.min_ip, min_port=2000, max_port=2000)
    assert str(t.nat_src.min_ip) == "10.9.0.9"
    assert t.status_bits == 0x19E  # EXPECTED cleared
    assert t.tcp.flags_orig == (8, 8) and t.tcp.flags_reply == (8, 8)
    s = got[132]
    # not 1.4.7's corrupted original vtag (TCP flags written over the protocol info)
    assert (s.sctp.vtag_orig, s.sctp.vtag_reply) == (0x11223344, 0x55667788)


def test_window_tracking_keeps_tcp_flags_off() -> None:
    mode, cm, logs, loop = make(flows(1), settings=CommitSettings(window_tracking=True))
    run(mode, loop)
    (_, f), = cm.ct.log
    assert f.tcp.flags_orig is None


@pytest.mark.parametrize("stored, elapsed, configured, expected", [
    (600, 28, 0, 572),
    (600, 700, 0, 60),    # negative: 60 s, as 1.4.7
    (600, 600, 0, 60),    # exactly 0: 1.4.7 sends no timeout and the kernel refuses
    (600, 28, 180, 180),  # CommitTimeout
])
def test_timeout(stored: int, elapsed: int, configured: int, expected: int) -> None:
    clock = Clock()
    f = flows(1)[0].copy(timeout=stored)
    mode, cm, logs, loop = make([f], clock=clock,
                                settings=CommitSettings(commit_timeout=configured))
    clock.t += elapsed
    run(mode, loop)
    assert cm.ct.log[0][1].timeout == expected


def test_eexist_delete_and_create_again() -> None:
    errs = {("create", 1000): [errno.EEXIST],                   # then deleted, created
            ("create", 1001): [errno.EEXIST],
            ("delete", 1001): [errno.ENOENT],                   # gone meanwhile: created
            ("create", 1002): [errno.EEXIST],
            ("delete", 1002): [errno.EPERM],                    # commit-destroy
            ("create", 1003): [errno.EEXIST, errno.EEXIST],     # commit-create after retry
            ("create", 1004): [errno.ENOMEM]}                   # commit-create
    mode, cm, logs, loop = make(flows(6), ct=FakeCt(errs))
    run(mode, loop)
    ops = [(op, f.orig.sport) for op, f in cm.ct.log]
    assert ops.count(("create", 1000)) == 2 and ("delete", 1000) in ops
    assert ops.count(("create", 1002)) == 1
    assert ops.count(("create", 1004)) == 1 and ("delete", 1004) not in ops
    m = messages(logs)
    assert m[0] == "committing all external caches"
    assert sorted(m[1:4]) == ["commit-create: Cannot allocate memory",
                              "commit-create: File exists",
                              "commit-destroy: Operation not permitted"]
    assert m[4:] == ["Committed 3 new entries", "3 entries can't be committed",
                     "commit has taken T seconds"]
    assert [lv for lv, _ in logs[1:4]] == ["error"] * 3
    lines = cm.flow_lines
    assert len(lines) == 3 and all(p == ERROR for p, _ in lines)
    assert all("src=10.1.0." in text and "dport=80" in text for _, text in lines)
    assert mode.external.stats.commit_fail == 3


def test_related_flows_come_last() -> None:
    fl = flows(5)
    fl.insert(2, related_flow(3000))
    mode, cm, logs, loop = make(fl, settings=CommitSettings(step=2))
    run(mode, loop)
    order = [f.orig.sport for _, f in cm.ct.log]
    assert order[-1] == 3000 and len(order) == 6
    assert cm.ct.log[-1][1].master is not None
    assert messages(logs)[-2] == "Committed 6 new entries"


def test_second_commit_and_flushes_while_running() -> None:
    mode, cm, logs, loop = make(flows(9), settings=CommitSettings(step=2))
    first = Conn()
    assert mode.commit(H.ALL_COMMIT, first)
    assert mode.commit_running and first.detached and not first.closed
    second = Conn()
    assert mode.commit(H.CT_COMMIT, second)
    assert not second.detached  # the control server closes it at once
    assert mode.handle(H.ALL_FLUSH_CACHE) == ()
    assert mode.handle(H.CT_FLUSH_EXT_CACHE) == ()
    assert len(mode.external) == 9
    assert loop.run_until(lambda: first.closed, 10)
    m = messages(logs)
    assert m[:5] == ["committing all external caches", "committing conntrack cache",
                     "commit already in progress, skipping",
                     "ignoring flush command, commit still in progress",
                     "ignoring flush command, commit still in progress"]
    assert m[5:] == ["Committed 9 new entries", "commit has taken T seconds"]
    assert len(cm.ct.log) == 9
    logs.clear()
    mode.handle(H.ALL_FLUSH_CACHE)  # 1.4.7 with HashSize <= 8192 refuses it for ever
    assert messages(logs) == ["flushing caches"] and len(mode.external) == 0


def test_disable_external_cache_commits_nothing() -> None:
    mode, cm, logs, loop = make(flows(3), disable_external_cache=True)
    conn = Conn()
    assert mode.commit(H.ALL_COMMIT, conn)
    assert messages(logs) == ["committing all external caches"] and cm.ct.log == []
    assert not conn.detached and not mode.commit_running


def test_workers_report_through_pipes() -> None:
    """Large caches go to worker processes (forced here with ``fork_min``): they commit
    their share and send counts, failures and related flows back to the loop."""
    errs = {("create", 1003): [errno.ENOMEM], ("create", 1030): [errno.EPERM]}
    fl = flows(40)
    fl.append(related_flow(3000))
    made: list[FakeCt] = []

    def open_socket() -> FakeCt:
        made.append(FakeCt(errs))
        return made[-1]

    mode, cm, logs, loop = make(fl, settings=CommitSettings(fork_min=1), ct=FakeCt())
    cm.open_socket = open_socket
    paused: list[bool] = []
    cm.pause_events = paused.append
    run(mode, loop)
    assert len(made) >= 1 and paused == [True, False]
    # the workers' requests happened in other processes; the related flow came back to
    # this one for the second pass
    assert [f.orig.sport for _, f in cm.ct.log] == [3000]
    m = messages(logs)
    assert sorted(m[1:3]) == ["commit-create: Cannot allocate memory",
                              "commit-create: Operation not permitted"]
    assert m[3:] == ["Committed 39 new entries", "2 entries can't be committed",
                     "commit has taken T seconds"]
    assert not mode.commit_running


def test_result_encoding() -> None:
    r = Result()
    r.ok = 7
    r.failures = [(3, "commit-create", 12, None), (9, "commit-destroy", 1, "with spaces in")]
    r.related = [4, 5]
    back = Result.decode(r.encode())
    assert (back.ok, back.failures, back.related) == (7, r.failures, [4, 5])
    assert Result.decode(r.encode()[:-3]) is None  # a worker that died mid-way
    r.failures = [(1, "commit-create", 22, "two\nlines")]
    assert Result.decode(r.encode()).failures == [(1, "commit-create", 22, "two lines")]
    assert Result.decode(b"") is None


def test_generated_tuples_equal_the_reference_path() -> None:
    """``entry.message`` (generated per tuple template) equals the attribute-by-attribute
    path for every layout of a varied cache."""
    fl = flows(3)
    o6 = Tuple(src="2001:db8::1", dst="2001:db8::2", proto=58, icmp_type=128, icmp_code=0,
               icmp_id=9)
    fl.append(Flow(family=10, orig=o6, reply=o6.reversed().replace(icmp_type=129),
                   timeout=30))
    o = Tuple(src="10.1.0.1", dst="10.2.0.1", proto=17, sport=5, dport=53)
    fl.append(Flow(family=2, orig=o, reply=Tuple(src="10.3.0.3", dst="10.1.0.1", proto=17,
                                                 sport=53, dport=5), status=0x1AE, timeout=30,
                   zone=7))
    fl.append(related_flow(4000))
    mode, cm, logs, loop = make(fl)
    cache = mode.external
    for key, value in cache.items():
        args = (key, 10 if value[0] & F_INET6 else 2, value[META_SIZE:],
                bool(value[0] & F_MIRRORED))
        assert E.message(*args) == E.message_slow(*args)


class FakeExpCt(FakeCt):
    """Also answers expectation requests: ``exp_errors`` lists the errnos of successive
    calls ("create", "delete")."""

    def __init__(self, exp_errors: dict | None = None) -> None:
        super().__init__()
        self.exp_errors = {k: list(v) for k, v in (exp_errors or {}).items()}
        self.exp_log: list = []

    def _exp(self, op: str, exp) -> None:
        self.exp_log.append((op, exp))
        pending = self.exp_errors.get(op)
        if pending:
            raise wrap(NetlinkError(pending.pop(0)))

    def create_expect(self, exp) -> None:
        self._exp("create", exp)

    def delete_expect(self, exp) -> None:
        self._exp("delete", exp)


def recorded_expectation():
    """The FTP expectation a C primary sent (``fixtures``, scenario ftfw-multicast)."""
    from helpers.syncwire import streams

    from conntrack_tools.conntrackd.wire.codec import decode_datagram

    for d in streams("ftfw-multicast"):
        for m in decode_datagram(d):
            if m.type == 3:
                return d, m
    raise AssertionError("no expectation in the corpus")


def with_expectation(ct: FakeExpCt, clock: Clock | None = None):
    mode, cm, logs, loop = make(flows(2), ct=ct, clock=clock, expectation_sync=True)
    datagram, m = recorded_expectation()
    for a in NotrackMachine().receive(datagram, 0.0):
        if isinstance(a, CacheOp) and a.expect:
            apply(a, mode.external, mode.external_exp)
    assert len(mode.external_exp) == 1
    return mode, cm, logs, loop, m.payload


def test_expectations_after_conntracks() -> None:
    ct = FakeExpCt({"create": [errno.EEXIST]})
    clock = Clock()
    mode, cm, logs, loop, sent = with_expectation(ct, clock)
    clock.t += 10
    run(mode, loop)
    assert messages(logs) == ["committing all external caches", "Committed 2 new entries",
                              "commit has taken T seconds", "Committed 1 new expectations",
                              "commit has taken T seconds"]
    assert [op for op, _ in ct.exp_log] == ["create", "delete", "create"]
    exp = ct.exp_log[-1][1]
    assert (exp.master, exp.tuple, exp.mask, exp.helper) == \
        (sent.master, sent.tuple, sent.mask, sent.helper)
    assert exp.timeout == sent.timeout - 10
    logs.clear()
    run(mode, loop, H.EXP_COMMIT)
    assert messages(logs)[0] == "committing expectation cache"
    assert len(cm.ct.log) == 2  # conntracks not committed again


def test_failing_expectation_commit() -> None:
    """The C log of spec §6.7 (a backup whose master has no helper)."""
    mode, cm, logs, loop, _ = with_expectation(FakeExpCt({"create": [errno.EOPNOTSUPP]}))
    run(mode, loop, H.EXP_COMMIT)
    assert messages(logs) == ["committing expectation cache",
                              "commit-create: Operation not supported",
                              "Committed 0 new expectations",
                              "1 expectations can't be committed",
                              "commit has taken T seconds"]
    ((priority, line),) = cm.flow_lines
    assert priority == ERROR and "helper=ftp" in line and "master-src=" in line


@pytest.mark.parametrize("wt", [False, True])
def test_stored_commit_request_equals_the_chain(wt: bool) -> None:
    """For every conntrack entry of the recorded corpus (the C primaries' tables):
    ``stored_commit_request`` = the entry's sync message (every attribute) turned into
    the commit request by ``payload_commit_request``; related = has a master tuple."""
    from helpers.syncwire import SCENARIOS, sidecar

    from conntrack_tools.conntrackd.wire.ctsync import (
        payload_commit_request, stored_commit_request, sync_message,
    )

    n = 0
    for name in SCENARIOS:
        for h in sidecar(name)["primary_table"]["conntrack"]:
            raw = bytes.fromhex(h)
            f = decode_flow(raw, 0, len(raw))
            left = (f.timeout or 0) - 5
            got, related = stored_commit_request(raw, 0, len(raw), elapsed=5,
                                                 window_tracking=wt)
            s = sync_message(raw, 0, len(raw), 0, 0, window_tracking=True, commit_timeout=True)
            want = payload_commit_request(s[8:], timeout=left if left > 0 else 60,
                                          window_tracking=wt)
            assert got == want
            assert related == (f.master is not None)
            n += 1
    assert n > 40


def _chain(msg: bytes, timeout: int, wt: bool) -> bytes:
    from conntrack_tools.conntrackd.wire.ctsync import payload_commit_request, sync_message

    s = sync_message(msg, 0, len(msg), 0, 0, window_tracking=True, commit_timeout=True)
    return payload_commit_request(s[8:], timeout=timeout, window_tracking=wt)


def _stored(flow: Flow) -> bytes:
    """The ctnetlink form a cache stores for ``flow`` received from a C sender."""
    from conntrack_tools.conntrackd.wire.ctsync import payload_flow_message

    return payload_flow_message(flow_message(0, flow, 0)[8:])


from hypothesis import given, settings as hsettings, strategies as hst  # noqa: E402
from helpers.syncwire import flows as any_flow  # noqa: E402


@hsettings(max_examples=400, deadline=None)
@given(any_flow(), hst.booleans(), hst.booleans(), hst.integers(0, 700))
def test_fused_requests_equal_the_chain(flow: Flow, wt: bool, no_status: bool,
                                        elapsed: int) -> None:
    """The requests built straight from ctnetlink values (TCP/UDP layouts) equal those
    built through the sync message, whatever the NAT, status, marks, zones, synproxy."""
    from conntrack_tools.conntrackd.wire.ctsync import stored_commit_request

    if no_status:
        flow = flow.copy(status=None)
    if flow.orig.proto in (6, 17) and flow.helper is None:
        flow = flow.copy(master=None, seq_adj_orig=None, seq_adj_reply=None, labels=None)
    msg = _stored(flow)
    got, related = stored_commit_request(msg, 0, len(msg), elapsed, 0, wt)
    left = (flow.timeout or 0) - elapsed
    assert got == _chain(msg, left if left > 0 else 60, wt)
    assert related == (flow.master is not None)
