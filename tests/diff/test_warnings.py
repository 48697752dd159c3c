"""Ours under Python's development mode and with warnings made errors prints exactly what
the reference prints: every socket and file is closed (no ``ResourceWarning``, no
``Exception ignored in ...`` on stderr). Ours runs as ``python3 -m conntrack_tools.conntrack``
(the interpreter reads ``PYTHONDEVMODE``/``PYTHONWARNINGS`` at start-up)."""
from __future__ import annotations

import shlex
import signal

import pytest

from harness import assert_same

ENVIRONMENTS = {"dev mode": {"PYTHONDEVMODE": "1"}, "warnings are errors": {"PYTHONWARNINGS": "error"}}
LINES = ["-L", "-L -o xml", "-L -p tcp", "-C", "-S", "-L expect", "-G -s 10.9.0.1 -d 10.9.0.2 "
         "-p tcp --sport 1 --dport 2", "-D -s 10.9.9.9", "-U -s 10.9.0.3 -m 1", "-x", "-V", "-h",
         "-R /dev/null", "-F expect"]
CREATE = [["-I", "-s", "10.9.0.1", "-d", "10.9.0.2", "-p", "tcp", "--sport", "1", "--dport", "2",
           "--state", "ESTABLISHED", "-t", "300"],
          ["-I", "-s", "10.9.0.3", "-d", "10.9.0.4", "-p", "udp", "--sport", "3", "--dport", "4",
           "-t", "300"]]


@pytest.fixture(scope="module")
def table(module_ns):
    _, runner = module_ns
    for args in CREATE:
        runner.ref(*args, check=True)
    return runner


CASES = [(line, "dev mode") for line in LINES] + [
    (line, "warnings are errors") for line in ("-L", "-x", "-U -s 10.9.0.3 -m 1", "-R /dev/null")]


@pytest.mark.parametrize("line,env", CASES)
def test_nothing_left_open(table, line: str, env: str) -> None:
    args = shlex.split(line)
    results = []
    for which, kw in (("ref", {}), ("ours", {"env": ENVIRONMENTS[env], "exec_ours": True})):
        if args[0] == "-U":  # the same change for both
            table.ref("-U", "-s", "10.9.0.3", "-m", "0")  # exit 1 when already 0
        results.append(table.run(which, args, **kw))
    assert_same(*results)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_event_listener(table, env: str) -> None:
    procs = [table.spawn("ref", ["-E"]),
             table.spawn("ours", ["-E"], env=ENVIRONMENTS[env], exec_ours=True)]
    for p in procs:
        p.wait_listening(0x7)
        p.signal(signal.SIGINT)
    ref, ours = (p.wait() for p in procs)
    assert_same(ref, ours)
