"""``-E`` and ``-E expect``: the reference and ours listen side by side to the same load.

For a group of option sets, one reference listener and one of ours per option set are
started in the same namespace; once every listener is bound to its multicast groups and
asleep in its receive call, the load runs: entries created, updated and deleted through
our library from this test process (so the ``[USERSPACE] portid=… progname=…`` suffix
names a process that is still alive for both listeners), real UDP and ICMP traffic over
lo (events without that suffix), and a flush. When every listener's socket queue is empty
and it sleeps in its receive call again, all get SIGINT. Their stdout, stderr (summary
line) and exit status must be equal up to event timestamps; the XML ``<when>`` and the
``[SEC.USEC]`` prefix keep their layout.

``-E expect`` listeners watch FTP control connections through the kernel's ftp helper
(each PORT/EPSV command makes the helper create, replace and re-create an expectation)
and an expectation flush.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import time

import pytest

from harness import Proc, assert_same

FLOW_OPTIONS = [
    [], ["-o", "xml"], ["-o", "timestamp"], ["-o", "save"], ["-o", "extended,id"],
    ["-o", "ktimestamp"], ["-o", "xml,timestamp"], ["-o", "labels"], ["-o", "userspace"],
    ["-o", "xml,extended,id,ktimestamp,labels"],
    ["-e", "NEW"], ["-e", "UPDATES"], ["-e", "DESTROY"], ["-e", "NEW,DESTROY"], ["-e", "ALL"],
    ["-e", "n,u"], ["-e", "DESTROY", "-o", "id,extended"], ["-e", "NEW", "-o", "xml"],
    ["-s", "10.1.0.1"], ["-d", "2001:db8:1::2"], ["-p", "udp"], ["-p", "tcp", "--dport", "80"],
    ["-p", "icmp"], ["-p", "icmpv6", "-o", "save"], ["-m", "7"], ["-m", "0x10/0x10"],
    ["-f", "ipv6"], ["-f", "ipv4", "-o", "save"], ["-w", "9"],
    ["--orig-zone", "4"], ["--reply-zone", "6"], ["-n"], ["-g"], ["-j"], ["-l", "eth0-in"],
    ["-c", "5"], ["-s", "10.0.0.0/8"], ["-s", "10.1.0.1", "--mask-src", "255.255.0.0"],
    ["-r", "127.0.0.1", "-p", "udp"], ["-p", "sctp", "--state", "ESTABLISHED"],
    ["-b", "100000"], ["-o", "labels", "-e", "UPDATES"], ["-g", "127.0.0.1:9001"],
    ["-j", "-o", "save"], ["-d", "127.0.0.5", "-o", "xml"], ["-n", "-g"],
]
EXPECT_OPTIONS = [[], ["-o", "xml"], ["-o", "timestamp"], ["-o", "xml,timestamp"],
                  ["-o", "extended,id"], ["-o", "save"]]
GROUP = 12
"""Listener pairs running at the same time (each of ours is a forked test process)."""


# --- waiting for the listeners ----------------------------------------------------------------

def _event_socket(pid: int, groups: int) -> tuple[int, int] | None:
    """(Rmem, inode) of the process's NETLINK_NETFILTER socket bound to ``groups``."""
    from harness import _socket_inodes

    inodes = _socket_inodes(pid)
    try:
        with open(f"/proc/{pid}/net/netlink") as f:
            next(f)
            for line in f:
                p = line.split()
                if p[1] == "12" and int(p[3], 16) == groups and int(p[9]) in inodes:
                    return int(p[4]), int(p[9])
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return None


def _idle(proc: Proc, groups: int) -> bool:
    from harness import _blocked_in_recv

    sock = _event_socket(proc.pid, groups)
    return sock is not None and sock[0] == 0 and _blocked_in_recv(proc.pid)


def wait_idle(procs: list[tuple[Proc, int]], timeout: float = 20) -> None:
    """Until every listener has read everything queued and sleeps in recv again (seen
    twice in a row, a few milliseconds apart)."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < 2:
        if all(_idle(p, g) for p, g in procs):
            streak += 1
        else:
            streak = 0
        if time.monotonic() > deadline:
            busy = [p.args for p, g in procs if not _idle(p, g)]
            raise TimeoutError(f"listeners still busy: {busy}")
        time.sleep(0.005)


def groups_of(args: list[str], expect: bool) -> int:
    if expect:
        return 0x38
    if "-e" not in args:
        return 0x7
    mask = args[args.index("-e") + 1].upper()
    bits = 0
    for tok in mask.split(","):
        for name, bit in (("ALL", 7), ("NEW", 1), ("UPDATES", 2), ("DESTROY", 4)):
            if name.startswith(tok):
                bits |= bit
                break
    return bits


def run_group(runner, option_sets: list[list[str]], load, expect: bool = False):
    """Start a reference and an own listener per option set, run ``load()``, stop them;
    returns {index: (reference Result, our Result)}."""
    base = ["-E", "expect"] if expect else ["-E"]
    procs: list[tuple[int, str, Proc, int]] = []
    try:
        for i, opts in enumerate(option_sets):
            g = groups_of(opts, expect)
            for which in ("ref", "ours"):
                procs.append((i, which, runner.spawn(which, base + opts), g))
        for _, _, p, g in procs:
            p.wait_listening(g)
        with load():  # the loader's socket stays open until every event was printed
            wait_idle([(p, g) for _, _, p, g in procs])
        for _, _, p, _ in procs:
            p.signal()
        results: dict[int, dict[str, object]] = {}
        for i, which, p, _ in procs:
            results.setdefault(i, {})[which] = p.wait()
        return {i: (r["ref"], r["ours"]) for i, r in results.items()}
    finally:
        for _, _, p, _ in procs:
            p.kill()


# --- the load -----------------------------------------------------------------------------------

@contextlib.contextmanager
def flow_load(ns):
    """Creates, updates, deletes, real traffic and a flush, from this process; the
    netlink socket that made the changes stays open until the block ends, so both
    listeners find its owner (``progname=``)."""
    from ctnetlink.client import Conntrack
    from helpers.flows import all_cases

    cases = all_cases(net=1)
    with ns.enter():
        ct = Conntrack()
    with ct:
        for c in cases:
            ct.create(c.flow)
        for c in cases[:6]:
            ct.update(c.flow.copy(mark=7, timeout=400))
        for c in cases[6:9]:
            ct.delete(c.flow)
        with ns.enter():
            _udp_and_ping()
        ct.flush()
        yield


def _udp_and_ping() -> None:
    # through the DNAT rule of richtable.RULESET: 127.0.0.5:9000 -> 127.0.0.1:9001
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 9001))
    cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cli.settimeout(5)
    srv.settimeout(5)
    cli.sendto(b"nat", ("127.0.0.5", 9000))
    _, peer = srv.recvfrom(100)
    srv.sendto(b"tan", peer)
    cli.recvfrom(100)
    srv.close()
    cli.close()
    for fam, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        srv = socket.socket(fam, socket.SOCK_DGRAM)
        srv.bind((addr, 0))
        cli = socket.socket(fam, socket.SOCK_DGRAM)
        cli.settimeout(5)
        srv.settimeout(5)
        cli.sendto(b"ping", srv.getsockname()[:2])
        _, peer = srv.recvfrom(100)
        srv.sendto(b"pong", peer)
        cli.recvfrom(100)
        srv.close()
        cli.close()
        proto = socket.IPPROTO_ICMP if fam == socket.AF_INET else socket.IPPROTO_ICMPV6
        s = socket.socket(fam, socket.SOCK_DGRAM, proto)
        s.settimeout(5)
        typ = 8 if fam == socket.AF_INET else 128
        s.sendto(bytes([typ, 0, 0, 0, 0, 0, 0, 1]) + b"abcdefgh", (addr, 0))
        s.recv(100)
        s.close()


@contextlib.contextmanager
def expect_load(ns):
    from ctnetlink.client import Conntrack
    from helpers.ftp import FtpServer

    with ns.enter():
        server = FtpServer(next_port=51000)
        try:
            server.session(socket.AF_INET, "PORT")
            server.session(socket.AF_INET6, "EPSV")
            server.session(socket.AF_INET, "PASV")
            with Conntrack() as ct:
                ct.flush_expect(socket.AF_INET)
                ct.flush_expect(socket.AF_INET6)
        finally:
            server.close()
    yield


# --- the tests -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flow_results(module_ns):
    ns, runner = module_ns
    out: dict[int, tuple] = {}
    for start in range(0, len(FLOW_OPTIONS), GROUP):
        chunk = FLOW_OPTIONS[start:start + GROUP]
        res = run_group(runner, chunk, lambda: flow_load(ns))
        out.update({start + i: r for i, r in res.items()})
    return out


@pytest.fixture(scope="module")
def expect_results(module_ns):
    ns, runner = module_ns
    return run_group(runner, EXPECT_OPTIONS, lambda: expect_load(ns), expect=True)


@pytest.mark.parametrize("index", range(len(FLOW_OPTIONS)),
                         ids=[" ".join(["-E", *o]) for o in FLOW_OPTIONS])
def test_flow_events(flow_results, index: int) -> None:
    ref, ours = flow_results[index]
    assert_same(ref, ours)
    assert ref.status == 0


@pytest.mark.parametrize("index", range(len(EXPECT_OPTIONS)),
                         ids=[" ".join(["-E", "expect", *o]) for o in EXPECT_OPTIONS])
def test_expect_events(expect_results, index: int) -> None:
    ref, ours = expect_results[index]
    assert_same(ref, ours)
    assert ref.status == 0 and ref.out.count(b"\n") >= 6


def test_events_were_seen(flow_results) -> None:
    ref, ours = flow_results[0]
    lines = ours.out.decode().splitlines()
    assert len(lines) >= 40
    assert any("[USERSPACE] portid=" in line and f"progname=" in line for line in lines)
    assert any(line.startswith("    [NEW] udp") and "USERSPACE" not in line for line in lines)
    assert os.getpid()


def _json_text(obj: dict) -> str:
    from test_roundtrip import json_to_text

    line = json_to_text({k: v for k, v in obj.items() if k not in ("portid", "progname")})
    if "portid" in obj:
        line += f" [USERSPACE] portid={obj['portid']}"
        if "progname" in obj:
            line += f" progname={obj['progname']}"
    return line


def test_json_events(module_ns) -> None:
    """Our ``-E -o json`` lines: valid against the schema, and the values of the
    reference's ``-E -o extended,id,labels`` lines (same load, side by side)."""
    import json

    from ctnetlink.formats.json import validate

    ns, runner = module_ns
    procs = [runner.spawn("ref", ["-E", "-o", "extended,id,labels"]),
             runner.spawn("ours", ["-E", "-o", "json,labels"])]
    try:
        for p in procs:
            p.wait_listening(0x7)
        with flow_load(ns):
            wait_idle([(p, 0x7) for p in procs])
        for p in procs:
            p.signal()
        ref, ours = (p.wait() for p in procs)
    finally:
        for p in procs:
            p.kill()
    assert ours.err == ref.err and ours.status == ref.status == 0
    objs = [json.loads(line) for line in ours.out.decode().splitlines()]
    for obj in objs:
        validate(obj)
    made = "".join(_json_text(o) + "\n" for o in objs).encode()
    assert_same(ref, type(ref)(ref.status, made, ref.err))



def test_overrun_warning(module_ns) -> None:
    """A burst larger than the receive buffer: both print the ENOBUFS warning and go on;
    ours adds how many events were lost (docs/compatibility.md). Ours gets the small
    buffer through -b (ours applies it to the event socket; the reference's default
    buffer is small anyway)."""
    from ctnetlink.client import Conntrack
    from ctnetlink.model import Flow, Tuple

    ns, runner = module_ns
    procs = [runner.spawn("ref", ["-E", "-e", "NEW"]),
             runner.spawn("ours", ["-E", "-e", "NEW", "-b", "50000"])]
    try:
        for p in procs:
            p.wait_listening(0x1)
        tuples = [Tuple(src=f"10.9.{i // 250}.{i % 250 + 1}", dst="10.8.0.1", proto=17, sport=1000 + i, dport=53)
                  for i in range(5000)]
        flows = [Flow(family=2, orig=t, reply=t.reversed(), timeout=60) for t in tuples]
        with ns.enter():
            ct = Conntrack()
        with ct:
            for p in procs:  # not reading while the burst comes: the overrun is certain
                p.signal(signal.SIGSTOP)
            errors = ct.create_many(flows)
            for p in procs:
                p.signal(signal.SIGCONT)
            assert not any(errors)
            wait_idle([(p, 0x1) for p in procs])
            ct.flush()
        for p in procs:
            p.signal()
        ref, ours = (p.wait() for p in procs)
    finally:
        for p in procs:
            p.kill()
    warning = (b"WARNING: We have hit ENOBUFS! We are losing events.\n"
               b"This message means that the current netlink socket buffer size is too small.\n"
               b"Please, check --buffer-size in conntrack(8) manpage.\n")
    for r in (ref, ours):
        assert r.status == 0 and warning in r.err
        shown = int(r.err.rsplit(b"): ", 1)[1].split()[0])
        assert shown == len(r.out.splitlines()) < 5000
    assert ours.err.startswith(b"NOTICE: Netlink socket buffer size has been set to 100000 bytes.\n"
                               + warning + b"WARNING: ")
    assert b" events have been lost.\n" in ours.err


OWNER = r"""
import socket, sys
from ctnetlink.client import Conntrack
from ctnetlink.model import Flow, Tuple
from nfnl.socket import NetlinkSocket
name, portid, i = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open("/proc/self/comm", "w") as f:
    f.write(name)
raw = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
raw.bind((portid, 0))
o = Tuple(src="10.77.0.1", dst="10.77.0.2", proto=17, sport=1000 + i, dport=53)
Conntrack(NetlinkSocket(sock=raw)).create(Flow(family=2, orig=o, reply=o.reversed(), timeout=60))
print("created", flush=True)
sys.stdin.read()
"""


def test_progname_of_a_reused_port_id(module_ns) -> None:
    """Process "alpha" binds a port id and creates an entry; once both listeners named
    it, it exits and process "beta" binds the same port id and creates another: both
    must be named right (the progname cache must notice the new owner)."""
    import subprocess
    import sys

    ns, runner = module_ns
    procs = [runner.spawn("ref", ["-E", "-e", "NEW"]), runner.spawn("ours", ["-E", "-e", "NEW"])]
    portid = 0x7E5A0000 | os.getpid() & 0xFFFF
    try:
        for p in procs:
            p.wait_listening(0x1)
        for i, name in enumerate(("alpha", "beta")):
            owner = subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, "-c", OWNER,
                                      name, str(portid), str(i)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            try:
                assert owner.stdout.readline() == b"created\n"
                deadline = time.monotonic() + 10
                while not all(p.out.count(b"\n") > i for p in procs):
                    assert time.monotonic() < deadline, "an event was not printed"
                    time.sleep(0.005)
            finally:
                owner.stdin.close()
                owner.wait()
        for p in procs:
            p.signal()
        ref, ours = (p.wait() for p in procs)
    finally:
        for p in procs:
            p.kill()
    assert_same(ref, ours)
    lines = ours.out.decode().splitlines()
    assert [line.rsplit(" ", 2)[1:] for line in lines] == [
        [f"portid={portid}", "progname=alpha"], [f"portid={portid}", "progname=beta"]]
