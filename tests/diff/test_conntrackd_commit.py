"""Commit (``conntrackd -c``), the C conntrackd 1.4.7 against ours.

A source namespace holds a varied table (TCP, UDP, UDP-Lite, SCTP, DCCP, ICMP, ICMPv6,
GRE, other protocols, IPv4 and IPv6, source and destination NAT, marks, the three kinds
of zone, labels, a related flow and its master); each entry becomes a NOTRACK sync
message (our wire codec, as the C sender writes it). Each daemon runs in a fresh
namespace of its own (``helpers.commitrig``) and receives the datagrams over UDP.
Then:

* ``-c`` gives the same kernel table (``conntrack -L -o extended`` with the timeouts
  normalised, and field by field through the library: labels, zones, NAT, protocol
  state), timeouts within seconds of the sent ones, and the same log lines;
* a second ``-c`` over entries that exist (some changed meanwhile) updates them the same
  way (EEXIST -> delete + create) and logs the same counts;
* the client's output and exit status of ``-c``, ``-c ct`` and ``-c expect`` are the same
  with either client against either daemon;
* a flush while a large commit runs is refused (``ignoring flush command, commit still
  in progress``) and accepted once it is over, where 1.4.7 with ``HashSize 8192`` refuses
  every later flush (spec §6.7, §12.2 #1);
* a commit that forks workers (large cache) equals one done in steps;
* with ``TCPWindowTracking On`` the entries keep window tracking on both sides;
* an entry the kernel refuses gives the same error and flow lines;
* with ``ExpectationSync``, FTP masters and their expectations (IPv4, IPv6) give the
  same tables and log (1.4.7 was only seen failing there, spec §6.7).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conntrack_tools.conntrackd.wire.ctsync import sync_message  # noqa: E402
from helpers.cdaemon import CONNTRACKD, OURS, request  # noqa: E402
from helpers.commitrig import CommitRig, datagrams, table, timeouts  # noqa: E402
from helpers.flows import TIMEOUT, all_cases  # noqa: E402
from helpers.ftp import enable_labels  # noqa: E402
from helpers.netns import NetNS  # noqa: E402

from ctnetlink.client import Conntrack  # noqa: E402
from ctnetlink.model import Flow, TcpInfo, Tuple  # noqa: E402

TOOK = re.compile(r"commit has taken \d+\.\d{6} seconds")
ALL_FLUSH_CACHE = 45


def extra_flows() -> list[Flow]:
    """Labels, and a related flow after its master (created in that order)."""
    o = Tuple(src="10.5.0.1", dst="10.5.0.2", proto=6, sport=4000, dport=21)
    master = Flow(family=2, orig=o, reply=o.reversed(), timeout=TIMEOUT, status=0xE,
                  tcp=TcpInfo(state=3), labels=(1 << 3) | (1 << 70))
    c = Tuple(src="10.5.0.1", dst="10.5.0.2", proto=6, sport=4001, dport=20)
    child = Flow(family=2, orig=c, reply=c.reversed(), timeout=TIMEOUT, status=0xE,
                 tcp=TcpInfo(state=3), master=o)
    u = Tuple(src="10.5.0.1", dst="10.5.0.3", proto=17, sport=7, dport=7)
    lab = Flow(family=2, orig=u, reply=u.reversed(), timeout=TIMEOUT, labels=1 << 127, mark=5)
    return [master, child, lab]


def sync_messages(flows: list[Flow]) -> list[bytes]:
    """Create ``flows`` in a scratch namespace, dump it, one CT NEW message per entry."""
    out = []
    with NetNS("commit") as ns:
        enable_labels(ns)
        with ns.enter(), Conntrack() as ct:
            for f in flows:
                ct.create(f)
            for seq, (buf, off, ln) in enumerate(ct.dump_raw(0)):
                out.append(sync_message(buf, off, ln, 0, seq))
    return out


@pytest.fixture(scope="module")
def catalogue() -> list[bytes]:
    flows = [c.flow for c in all_cases(1)] + extra_flows()
    msgs = sync_messages(flows)
    assert len(msgs) == len(flows)
    return msgs


@pytest.fixture(scope="module")
def rigs(catalogue) -> Iterator[dict[str, CommitRig]]:
    out = {"C": CommitRig(False), "ours": CommitRig(True)}
    try:
        for rig in out.values():
            rig.start(datagrams(catalogue), len(catalogue))
            enable_labels(rig.ns)
        yield out
    finally:
        for rig in out.values():
            rig.close()


def commit_log(rig: CommitRig, since: int) -> list[str]:
    return [TOOK.sub("commit has taken T seconds", line) for line in rig.log_lines()[since:]
            if "buffer size" not in line]


def library_view(ns: NetNS) -> list[Flow]:
    """Every entry field by field, timeout, id and use left out."""
    with ns.enter(), Conntrack() as ct:
        return [f.copy(timeout=None, id=None, use=None) for f in ct.dump()]


def _no_vtag(f: Flow) -> Flow:
    if f.sctp is None:
        return f
    return f.copy(sctp=f.sctp.__class__(state=f.sctp.state, vtag_reply=f.sctp.vtag_reply))


def commit(rig: CommitRig, *args: str) -> tuple[int, str, str]:
    r, _ = rig.client("-c", *args)
    return r.returncode, r.stdout, r.stderr


def test_commit_gives_the_same_table(rigs, catalogue) -> None:
    n = len(catalogue)
    before = {k: len(r.log_lines()) for k, r in rigs.items()}
    results = {k: commit(r) for k, r in rigs.items()}
    assert results["C"] == results["ours"] == (0, "", "")
    tables = {k: table(r.ns) for k, r in rigs.items()}
    assert len(tables["C"]) == n
    assert tables["ours"] == tables["C"]
    # field by field: equal but for 1.4.7's commit bug on SCTP (the TCP "be liberal"
    # flags land in the first byte, host order, of the original verification tag)
    ours, theirs = library_view(rigs["ours"].ns), library_view(rigs["C"].ns)
    assert {f.orig.proto for f in ours if f.sctp} == {132}
    for f in ours:
        if f.sctp is not None:
            assert (f.sctp.vtag_orig, f.sctp.vtag_reply) == (1234, 5678)
    for f in theirs:
        if f.sctp is not None:
            assert (f.sctp.vtag_orig, f.sctp.vtag_reply) == ((1234 & ~0xFF) | 0x08, 5678)
    assert sorted(map(repr, map(_no_vtag, ours))) == sorted(map(repr, map(_no_vtag, theirs)))
    labels = {f.orig.sport: f.labels for f in ours if f.labels}
    assert (labels[4000], labels[7]) == ((1 << 3) | (1 << 70), 1 << 127)
    assert {f.zone for f in ours} >= {9} and any(f.nat_src or f.reply.dst != f.orig.src
                                                 for f in ours)
    assert sum(1 for f in ours if f.master is not None) == 1
    # "be liberal" in both directions (the kernel reports flags, then mask)
    assert all(f.tcp.flags_orig == (8, 0) and f.tcp.flags_reply == (8, 0)
               for f in ours if f.tcp is not None and f.tcp.state is not None)
    for rig in rigs.values():
        assert all(TIMEOUT - 30 <= t <= TIMEOUT for t in timeouts(rig.ns))
    logs = {k: commit_log(r, before[k]) for k, r in rigs.items()}
    assert logs["C"] == ["[notice] committing all external caches",
                         f"[notice] Committed {n} new entries",
                         "[notice] commit has taken T seconds"]
    assert logs["ours"] == logs["C"]


def test_commit_over_existing_entries(rigs, catalogue) -> None:
    """Entries that exist (one with a shorter timeout, one gone) are replaced: same
    table, same log."""
    n = len(catalogue)
    u = Tuple(src="10.5.0.1", dst="10.5.0.3", proto=17, sport=7, dport=7)
    for rig in rigs.values():
        with rig.ns.enter(), Conntrack() as ct:
            ct.update(Flow(family=2, orig=u, timeout=9))
        rig.ns.conntrack("-D", "-p", "tcp", "--orig-port-src", "1000")  # IPv4 and IPv6
        assert min(timeouts(rig.ns)) <= 9
    changed = {k: table(r.ns) for k, r in rigs.items()}
    assert changed["C"] == changed["ours"] and len(changed["C"]) == n - 2
    before = {k: len(r.log_lines()) for k, r in rigs.items()}
    results = {k: commit(r, "ct") for k, r in rigs.items()}
    assert results["C"] == results["ours"] == (0, "", "")
    tables = {k: table(r.ns) for k, r in rigs.items()}
    assert len(tables["C"]) == n and tables["ours"] == tables["C"]
    for rig in rigs.values():
        assert all(TIMEOUT - 30 <= t <= TIMEOUT for t in timeouts(rig.ns))
    logs = {k: commit_log(r, before[k]) for k, r in rigs.items()}
    assert logs["ours"] == logs["C"]
    assert logs["C"][:2] == ["[notice] committing conntrack cache",
                             f"[notice] Committed {n} new entries"]


@pytest.mark.parametrize("args", [("-c",), ("-c", "ct"), ("-c", "expect")])
def test_client_output_and_status(rigs, args) -> None:
    seen = set()
    for rig in rigs.values():
        for program in ((CONNTRACKD,), OURS):
            r, _ = rig.client(*args, program=program)
            seen.add((r.returncode, r.stdout, r.stderr.replace(OURS[-1], "conntrackd")))
    assert len(seen) == 1, seen


def _workers(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def _state(pid: int) -> str | None:
    """A process's state letter (``T`` stopped, ``Z`` exited, not reaped), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _really_held(pids: list[int]) -> list[int]:
    """The pids that SIGSTOP stopped (a worker that had just exited is a zombie: it no
    longer holds the commit back)."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(_state(p) not in ("T", "t", "Z", None)
                                              for p in pids):
        time.sleep(0.01)
    return [p for p in pids if _state(p) in ("T", "t")]


def test_a_flush_waits_for_the_end_of_a_commit() -> None:
    """Ours: a flush is refused while the commit runs, accepted after it, and a second
    commit meanwhile returns at once (``commit already in progress, skipping``). The
    commit's worker processes are held (SIGSTOP) so that the requests surely arrive
    meanwhile; they are listed by ``-s process`` (type ``commit``) until they end."""
    from benchmarks.bench_conntrackd_commit import messages

    n = 60000
    with CommitRig(True) as rig:
        rig.start(datagrams(messages(n)), n)
        daemon = rig.proc.pid  # ``ip netns exec`` execs the daemon
        for _ in range(5):
            rig.ns.run("conntrack", "-F")
            proc = rig.ns.popen(CONNTRACKD, "-C", rig.config, "-c", stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
            deadline = time.monotonic() + 60
            held = []
            while proc.poll() is None and not held and time.monotonic() < deadline:
                for pid in _workers(daemon):
                    try:
                        os.kill(pid, signal.SIGSTOP)
                        held.append(pid)
                    except ProcessLookupError:
                        pass
            held = _really_held(held)
            if not held:
                proc.communicate(timeout=60)
                continue  # the commit was over before its workers could be held: again
            mark = len(rig.log_lines())
            request(rig.ctl, ALL_FLUSH_CACHE)
            request(rig.ctl, 34)  # -f external
            assert request(rig.ctl, 18, timeout=5) == b""  # -c ct: refused at once
            assert proc.poll() is None  # the client still waits
            assert rig.external_count() == n
            listing = request(rig.ctl, 35).decode()  # -s process
            assert all(f"PID={pid} type=commit\n" in listing for pid in held)
            for pid in held:
                os.kill(pid, signal.SIGCONT)
            out, err = proc.communicate(timeout=60)
            assert (proc.returncode, out, err) == (0, b"", b"")
            lines = [line for line in rig.log_lines()[mark:] if "buffer size" not in line]
            assert lines[:4] == ["[ERROR] ignoring flush command, commit still in progress"] * 2 \
                + ["[notice] committing conntrack cache",
                   "[notice] commit already in progress, skipping"]
            assert lines[4] == f"[notice] Committed {n} new entries"
            assert int(rig.ns.run("conntrack", "-C").stdout) == n
            deadline = time.monotonic() + 10
            while request(rig.ctl, 35) and time.monotonic() < deadline:
                time.sleep(0.05)  # SIGCHLD reaps the workers
            assert request(rig.ctl, 35) == b""
            break
        else:
            raise AssertionError("no commit lasted long enough to hold its workers")
        assert rig.external_count() == n
        request(rig.ctl, ALL_FLUSH_CACHE)
        assert rig.log_lines()[-1] == "[notice] flushing caches"
        assert rig.external_count() == 0


def test_small_hash_size_flush_after_commit(catalogue) -> None:
    """1.4.7 with HashSize <= 8192 refuses every flush after a commit (its commit ends in
    the step that started it and never clears the client descriptor); ours does not."""
    got = {}
    for name, ours in (("C", False), ("ours", True)):
        with CommitRig(ours, hashsize=8192) as rig:
            rig.start(datagrams(catalogue), len(catalogue))
            assert commit(rig)[0] == 0
            request(rig.ctl, ALL_FLUSH_CACHE)
            got[name] = (rig.log_lines()[-1], rig.external_count())
    assert got["C"] == ("[ERROR] ignoring flush command, commit still in progress",
                        len(catalogue))
    assert got["ours"] == ("[notice] flushing caches", 0)


def test_workers_and_steps_give_the_same_table() -> None:
    """A large cache is committed by worker processes: the table equals the C daemon's."""
    from benchmarks.bench_conntrackd_commit import messages

    n = 20000
    grams = datagrams(messages(n))
    tables = {}
    for name, ours in (("C", False), ("ours", True)):
        with CommitRig(ours) as rig:
            rig.start(grams, n)
            assert commit(rig) == (0, "", "")
            tables[name] = table(rig.ns)
            if ours:
                assert f"[notice] Committed {n} new entries" in rig.log_lines()
    assert len(tables["C"]) == n and tables["ours"] == tables["C"]


@pytest.mark.parametrize("sync, mode", [
    ("\tOptions {\n\t\tExpectationSync On\n\t}\n", ""),  # -c: conntracks, then expectations
    ("", "DisableExternalCache on"),                      # nothing to commit
])
def test_commit_requests_log_alike(sync: str, mode: str) -> None:
    from benchmarks.bench_conntrackd_commit import messages

    got = {}
    for name, ours in (("C", False), ("ours", True)):
        with CommitRig(ours, sync=sync, mode=mode) as rig:
            rig.start([] if mode else datagrams(messages(5)), 5)
            mark = len(rig.log_lines())
            replies = [commit(rig, *args) for args in ((), ("ct",), ("expect",))]
            got[name] = (replies, commit_log(rig, mark))
    assert got["ours"] == got["C"]
    assert got["C"][0] == [(0, "", "")] * 3


def test_a_refused_entry_logs_alike() -> None:
    """An entry the kernel refuses (an unknown helper): the same error line, flow line
    (without a reply tuple: 1.4.7's object comes from a sync message) and counts."""
    from conntrack_tools.conntrackd.wire.codec import flow_message

    o = Tuple(src="10.6.0.1", dst="10.6.0.2", proto=6, sport=5000, dport=21)
    bad = Flow(family=2, orig=o, reply=o.reversed(), status=0xE, timeout=300,
               tcp=TcpInfo(state=3), helper="nosuch", mark=3)
    o2 = Tuple(src="10.6.0.1", dst="10.6.0.2", proto=17, sport=5001, dport=53)
    good = Flow(family=2, orig=o2, reply=o2.reversed(), status=0x8, timeout=300)
    msgs = [flow_message(0, bad, 1), flow_message(0, good, 2)]
    stamp = re.compile(r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\t")
    got = {}
    for name, ours in (("C", False), ("ours", True)):
        with CommitRig(ours) as rig:
            rig.start(datagrams(msgs), 2)
            mark = len(rig.log_lines())
            assert commit(rig) == (0, "", "")
            got[name] = [stamp.sub("STAMP\t", line) for line in commit_log(rig, mark)]
    assert got["ours"] == got["C"]
    assert got["C"][1:3] == [
        "[ERROR] commit-create: Operation not supported",
        "STAMP\ttcp      6 300 ESTABLISHED src=10.6.0.1 dst=10.6.0.2 sport=5000 dport=21 "
        "[ASSURED] mark=3 helper=nosuch"]
    assert got["C"][3:5] == ["[notice] Committed 1 new entries",
                             "[notice] 1 entries can't be committed"]


def test_window_tracking_on(catalogue) -> None:
    """``TCPWindowTracking On``: no "be liberal" flags; the same entries field by field
    (TCP flags and window scales included; SCTP as received on both sides now)."""
    views = {}
    for name, ours in (("C", False), ("ours", True)):
        with CommitRig(ours, sync="\tOptions {\n\t\tTCPWindowTracking On\n\t}\n") as rig:
            rig.start(datagrams(catalogue), len(catalogue))
            enable_labels(rig.ns)
            assert commit(rig) == (0, "", "")
            views[name] = sorted(map(repr, library_view(rig.ns)))
    assert len(views["C"]) == len(catalogue) and views["ours"] == views["C"]
    tcp = [v for v in views["C"] if "TcpInfo(state=" in v]
    assert tcp and all("flags_orig=(0, 0), flags_reply=(0, 0)" in v for v in tcp)


def ftp_messages() -> tuple[list[bytes], int]:
    """CT NEW messages of a table with an FTP control connection (helper ``ftp``) and one
    EXP NEW message of the expectation the helper created (IPv4 and IPv6)."""
    import socket as S

    from conntrack_tools.conntrackd.wire.codec import SyncMessage, encode_message
    from helpers.ftp import FtpServer, enable_ftp_helper, enable_tracking

    out = []
    with NetNS("commit") as ns:
        enable_tracking(ns)
        enable_ftp_helper(ns)
        with ns.enter():
            server = FtpServer()
            try:
                server.session(S.AF_INET, "PORT")
                server.session(S.AF_INET6, "EPSV")
                with Conntrack() as ct:
                    for seq, (buf, off, ln) in enumerate(ct.dump_raw(0)):
                        out.append(sync_message(buf, off, ln, 0, seq))
                    exps = list(ct.dump_expect(0))
            finally:
                server.close()
    assert len(exps) == 2
    for exp in exps:
        out.append(encode_message(SyncMessage(3, 0, len(out), exp)))
    return out, len(out) - len(exps)


def test_expectations_committed_alike() -> None:
    """With ExpectationSync: the masters (helper ``ftp``) and their expectations, which
    1.4.7 was only seen failing to commit (spec §6.7): the same tables, the same log."""
    msgs, n = ftp_messages()
    got = {}
    for name, ours in (("C", False), ("ours", True)):
        with CommitRig(ours, sync="\tOptions {\n\t\tExpectationSync On\n\t}\n") as rig:
            rig.start(datagrams(msgs), n)
            mark = len(rig.log_lines())
            assert commit(rig) == (0, "", "")
            expect = rig.ns.conntrack("-L", "expect").stdout + \
                rig.ns.conntrack("-L", "expect", "-f", "ipv6").stdout
            got[name] = (table(rig.ns), sorted(re.sub(r"^\d+ ", "T ", line)
                                               for line in expect.splitlines()),
                         commit_log(rig, mark))
    assert got["ours"] == got["C"]
    tables, expects, log = got["C"]
    assert len(tables) == n and len(expects) == 2 and all("helper=ftp" in e for e in expects)
    assert log[-2:] == ["[notice] Committed 2 new expectations",
                        "[notice] commit has taken T seconds"]
