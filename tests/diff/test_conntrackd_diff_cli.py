"""conntrackd command line: ours against the 1.4.7 binary, byte for byte.

Every command line starts with ``-C FILE``: a file with a syntax error (so whatever the
words say, both programs stop after reading it: nothing can start) or a valid file
whose control socket does not exist, used only for command lines that hold a client
command (they end in ``can't connect``). No word's second character is ``C``, so no
case can name another configuration. Ours runs in-process (``main.run``) with the
reference's ``argv[0]``; stdout, stderr (times and pids removed) and the exit status
must be identical. The command lines: every word alone, every pair of words, and
random longer ones (fixed seed).

The deliberate differences (``-C`` as the last word, ``-C ''``) are checked on both
sides in :func:`test_deliberate_differences`.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import random
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.conntrackd_ref import ENV, REFERENCE_CONNTRACKD, strip_prefixes  # noqa: E402
from helpers.netns import NetNS  # noqa: E402

from conntrack_tools.conntrackd import daemon, main  # noqa: E402

WORDS = ["-d", "-c", "-i", "-e", "-F", "-f", "-R", "-B", "-t", "-k", "-s", "-n", "-x", "-v",
         "-h", "-S", "-z", "-", "ct", "expect", "e", "c", "", "x", "internal", "ext", "n", "r",
         "m", "multicast", "link", "p", "process", "q", "queue", "foo", "-ifoo", "xi", "xs",
         "--", "-ct", "-s ", "cache", "rsqueue"]
PAIR_WORDS = ["-d", "-c", "-i", "-e", "-F", "-f", "-s", "-x", "-v", "-h", "-k", "-z", "ct",
              "expect", "e", "", "x", "internal", "m", "p", "foo", "xi", "--"]
CLIENT = {"-c", "-i", "-e", "-F", "-f", "-R", "-B", "-t", "-k", "-s", "-n", "-ifoo", "xi",
          "xs", "-ct", "-s "}


def command_lines() -> list[list[str]]:
    cases = [[]] + [[w] for w in WORDS]
    cases += [list(p) for p in itertools.product(PAIR_WORDS, repeat=2)]
    rnd = random.Random(20261206)
    cases += [[rnd.choice(WORDS) for _ in range(rnd.randint(3, 5))] for _ in range(150)]
    assert not any(len(w) > 1 and w[1] == "C" for c in cases for w in c)
    return cases


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("ctdcli")
    bad = d / "bad.conf"
    bad.write_text("General {\n")
    good = d / "good.conf"
    good.write_text(f"General {{ UNIX {{ Path {d}/none.ctl }} LockFile {d}/lock "
                    "Systemd off }\n")
    with NetNS(prefix="ctdcli") as ns, ns.enter():
        yield bad, good


def reference(argv: list[str]) -> tuple[int, bytes, bytes]:
    r = subprocess.run([REFERENCE_CONNTRACKD, *argv], capture_output=True, env=ENV, timeout=20)
    return r.returncode, r.stdout, strip_prefixes(r.stderr)


def ours(argv: list[str], monkeypatch) -> tuple[int, bytes, bytes]:
    monkeypatch.setattr(main, "_environ_first_char", lambda: ENV and "P")  # PATH= first

    def no_daemon(self):
        raise AssertionError("a daemon would start")

    monkeypatch.setattr(daemon.Daemon, "start", no_daemon)
    out, err = io.BytesIO(), io.BytesIO()
    tout = io.TextIOWrapper(out, write_through=True)
    terr = io.TextIOWrapper(err, write_through=True)
    with contextlib.redirect_stdout(tout), contextlib.redirect_stderr(terr):
        status = main.run([REFERENCE_CONNTRACKD, *argv])
    return status, out.getvalue(), strip_prefixes(err.getvalue())


def test_command_lines(setup, monkeypatch):
    bad, good = setup
    mismatches = []
    for words in command_lines():
        confs = [bad] + ([good] if CLIENT & set(words) and "-d" not in words else [])
        for conf in confs:
            argv = ["-C", str(conf), *words]
            ref = reference(argv)
            if conf == good and ref[2].startswith(b"[ERROR] parsing"):
                continue
            mine = ours(argv, monkeypatch)
            if ref != mine:
                mismatches.append((argv, ref, mine))
    assert not mismatches, "\n".join(f"{a}\n  ref:  {r}\n  ours: {o}"
                                     for a, r, o in mismatches[:5])


def test_long_config_path(setup, monkeypatch):
    long = "/" + "a" * 4100
    for argv in (["-C", long, "-s"], ["-C", "/" + "b" * 4095, "-s"]):
        assert ours(argv, monkeypatch) == reference(argv)


def test_deliberate_differences(setup, monkeypatch):
    bad, good = setup
    # -C as the last word: 1.4.7 warns and goes on with the default configuration
    # (here a client command, so it only tries /etc/conntrackd's socket); ours stops.
    # (this host's default file names a socket where no daemon listens)
    ref = reference(["-s", "-C"])
    assert ref[0] == 1 and ref[2].startswith(b"[ERROR] Missing config filename\n")
    assert ref[2].endswith(b"[ERROR] can't connect: is conntrackd running? appropriate "
                           b"permissions?\n")
    status, out, err = ours(["-s", "-C"], monkeypatch)
    assert (status, err) == (1, b"[ERROR] Missing config filename\n")
    assert out == ref[1]  # the same usage text
    # -C '': the reference uses the default configuration, ours refuses
    status, out, err = ours(["-C", "", "-s"], monkeypatch)
    assert (status, out, err) == (1, b"", b"[ERROR] can't open config file `'\n")
