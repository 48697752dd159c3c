"""How the process behaves around its output, as the reference does (against the rich table).

* ``2>&1``: stdout is block-buffered when it is not a terminal, stderr is not, so in a
  merged stream the summary line lands inside or after the listing exactly where the C
  tool's buffer flushes put it;
* ``>/dev/full``, ``>&-``, ``2>&-``: write errors are ignored, the exit status does not
  change and nothing else is printed;
* a reader that went away: death by SIGPIPE;
* ``-E`` ended by SIGTERM instead of SIGINT;
* a minimal container without ``/etc/protocols``: ours prints exactly what the reference
  prints on a normal system (it knows the system protocol names itself); the reference
  there no longer knows ``-p igmp`` and calls protocol 2 ``unknown`` in ``-h -p 2``
  (a documented difference).
"""
from __future__ import annotations

import os
import shlex
import signal

import pytest

from harness import assert_same

MERGED = ["-L", "-L -o xml", "-L -o extended,id,ktimestamp", "-L -p tcp -f ipv4", "-L -o save",
          "-L expect -o xml", "-L -o xml -f ipv6", "-L dying -o xml", "-L -o xml,id",
          "-L expect", "-S", "-C", "-h", "-V", "-L -u UNSET", "-G -s 10.1.0.1 -d 10.1.0.2 "
          "-p tcp --sport 1002 --dport 80 -o xml", "-D -s 10.7.7.7", "-x", "-L -o s"]
BROKEN = ["-L", "-L -o xml", "-L -f ipv6", "-S", "-C", "-h", "-L expect", "-V", "-x",
          "-L -p tcp -f ipv6"]
NO_PROTOCOLS = ["-L -p igmp", "-L -p 2", "-L -p 2 -o save", "-L -p ipv6-icmp", "-h -p 2",
                "-h -p 200", "-h -p igmp", "-L -p icmp", "-L -o extended", "-L -p 0x84",
                "-L -p gre -o save"]


@pytest.mark.parametrize("line", MERGED)
def test_merged_streams(rich, line: str) -> None:
    _, runner, _ = rich
    args = shlex.split(line)
    ref = runner.run("ref", args, merge=True)
    ours = runner.run("ours", args, merge=True)
    assert_same(ref, ours, unordered="-p" in args)


@pytest.mark.parametrize("how", ["full", "closed", "broken"])
@pytest.mark.parametrize("stream", ["stdout", "stderr"])
@pytest.mark.parametrize("line", BROKEN)
def test_unwritable(rich, line: str, stream: str, how: str) -> None:
    _, runner, _ = rich
    args = shlex.split(line)
    ref = runner.run("ref", args, **{stream: how})
    ours = runner.run("ours", args, **{stream: how})
    assert_same(ref, ours, unordered="-p" in args)
    if how == "broken" and stream == "stdout" and ref.status < 0:
        assert ref.status == -signal.SIGPIPE


@pytest.mark.parametrize("opts", [[], ["-o", "xml"], ["expect"], ["expect", "-o", "xml"]])
def test_events_end_on_sigterm(rich, opts) -> None:
    _, runner, _ = rich
    groups = 0x38 if "expect" in opts else 0x7
    procs = [runner.spawn(w, ["-E", *opts]) for w in ("ref", "ours")]
    for p in procs:
        p.wait_listening(groups)
        p.signal(signal.SIGTERM)
    ref, ours = (p.wait() for p in procs)
    assert_same(ref, ours)
    assert ref.status == 0 and ref.err.endswith(b"have been shown.\n")


@pytest.fixture(scope="module")
def no_protocols(workdir):
    d = workdir / "no-protocols"
    d.mkdir(exist_ok=True)
    return str(d)


@pytest.mark.parametrize("line", NO_PROTOCOLS)
def test_without_etc_protocols(rich, no_protocols: str, line: str) -> None:
    _, runner, _ = rich
    args = shlex.split(line)
    ref = runner.run("ref", args)
    ours = runner.run("ours", args, hide_protocols=no_protocols)
    assert_same(ref, ours, unordered="-p" in args)


def test_reference_without_etc_protocols(rich, no_protocols: str) -> None:
    """The documented difference: the reference depends on the file."""
    _, runner, _ = rich
    ref = runner.run("ref", ["-L", "-p", "igmp"], hide_protocols=no_protocols)
    assert ref.status == 2
    assert ref.err.startswith(b"conntrack v1.4.7 (conntrack-tools): `igmp' unsupported protocol\n")
    ref = runner.run("ref", ["-h", "-p", "2"], hide_protocols=no_protocols)
    assert b"Proto `unknown' help:" in ref.out
    assert os.path.exists("/etc/protocols")
