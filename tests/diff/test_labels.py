"""Label maps other than the suite's: none at all, one without a valid label, and one
naming all 128 bits the kernel keeps with long names — lines then outgrow the
reference's fixed line buffers (4096 bytes for ``-L``/``-G``, 1024 for ``-D``/``-U``/
``-E``) and are cut exactly where the C tool cuts them.
"""
from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

import pytest

from harness import Namespace, assert_same
from test_events import wait_idle

NAMES = [f"label-{i:03d}-abcdefghijklmnopqrstu" for i in range(128)]
LONG_MAP = "".join(f"{i} {name}\n" for i, name in enumerate(NAMES))
MAPS = {"none": None, "invalid": "# nothing valid here\n999999 too-big\nx y\n", "long": LONG_MAP}


@pytest.fixture(scope="module")
def label_ns(module_ns, workdir):
    """Runners of one namespace, each showing another label map as /etc/xtables."""
    ns, _ = module_ns
    runners = {}
    for key, text in MAPS.items():
        d = Path(tempfile.mkdtemp(prefix=f"xtables-{key}-", dir=workdir))
        d.chmod(0o755)
        if text is not None:
            (d / "connlabel.conf").write_text(text)
        runners[key] = Namespace(ns.path, cwd=str(workdir), xtables=str(d))
    long = runners["long"]
    long.ref("-F")
    for i, names in enumerate((NAMES, NAMES[::3], NAMES[100:])):
        r = long.ref("-I", "-s", "10.7.0.1", "-d", "10.7.0.2", "-p", "tcp", "--sport", str(i + 1),
                     "--dport", "80", "--state", "ESTABLISHED", "-t", "900",
                     "--label-add", ",".join(names))
        assert r.status == 0, r.text()
    long.ref("-I", "-s", "10.7.0.1", "-d", "10.7.0.2", "-p", "udp", "--sport", "1", "--dport", "53",
             "-t", "900", check=True)
    yield runners
    for r in runners.values():
        r.close()


CASES = {
    "none": ["-L", "-L -o labels", "-L -o xml,labels", "-L -l web", "-E -o labels -e NEW"],
    "invalid": ["-L", "-L -o labels", "-L -l web", "-L -o xml,labels"],
    "long": ["-L", "-L -o labels", "-L -o xml,labels", "-L -o extended,id,labels,ktimestamp",
             "-L -l label-000-abcdefghijklmnopqrstu", "-L -l label-127-abcdefghijklmnopqrstu -o labels",
             "-G -s 10.7.0.1 -d 10.7.0.2 -p tcp --sport 1 --dport 80 -o labels",
             "-G -s 10.7.0.1 -d 10.7.0.2 -p tcp --sport 1 --dport 80 -o xml,labels"],
}


@pytest.mark.parametrize("key,line", [(k, line) for k, lines in CASES.items() for line in lines
                                      if not line.startswith("-E")])
def test_label_maps(label_ns, key: str, line: str) -> None:
    runner = label_ns[key]
    args = shlex.split(line)
    assert_same(runner.ref(*args), runner.ours(*args))


@pytest.mark.parametrize("line", ["-D -p tcp --sport 1 -o labels", "-D -p tcp -o xml",
                                  "-U -s 10.7.0.1 -p tcp --sport 2 -m 5",
                                  "-U -s 10.7.0.1 -p tcp --sport 3 -m 5 -o xml,labels",
                                  "-U -s 10.7.0.1 -p udp --label-add label-127-abcdefghijklmnopqrstu"])
def test_long_lines_of_changes(label_ns, line: str) -> None:
    """-D and -U print through 1024-byte buffers."""
    runner = label_ns["long"]
    args = shlex.split(line)
    saved = runner.ref("-L", "-o", "save").out
    # both programs meet a table created just before they run (timeouts and
    # delta-time then agree however long the earlier tests of the module took)
    runner.ref("-F")
    _rebuild(runner, saved)
    ref = runner.run("ref", args)
    after = runner.ref("-L", "-o", "extended,labels").out
    runner.ref("-F")
    _rebuild(runner, saved)
    ours = runner.run("ours", args)
    assert runner.ref("-L", "-o", "extended,labels").out.count(b"\n") == after.count(b"\n")
    runner.ref("-F")
    _rebuild(runner, saved)
    assert_same(ref, ours, ids=True)


def _rebuild(runner, saved: bytes) -> None:
    """The module's table again (labels are not in -o save: re-add them)."""
    for i, names in enumerate((NAMES, NAMES[::3], NAMES[100:])):
        runner.ref("-I", "-s", "10.7.0.1", "-d", "10.7.0.2", "-p", "tcp", "--sport", str(i + 1),
                   "--dport", "80", "--state", "ESTABLISHED", "-t", "900",
                   "--label-add", ",".join(names))
    runner.ref("-I", "-s", "10.7.0.1", "-d", "10.7.0.2", "-p", "udp", "--sport", "1",
               "--dport", "53", "-t", "900")


@pytest.mark.parametrize("key", ["none", "long"])
def test_label_events(label_ns, key: str) -> None:
    """-E -o labels: no map (a warning, no labels=), and 1024-byte event lines."""
    runner = label_ns[key]
    long = label_ns["long"]
    procs = [runner.spawn(w, ["-E", "-o", "labels"]) for w in ("ref", "ours")]
    try:
        for p in procs:
            p.wait_listening(0x7)
        long.ref("-U", "-s", "10.7.0.1", "-p", "tcp", "--sport", "1", "-m", "77")
        long.ref("-U", "-s", "10.7.0.1", "-p", "tcp", "--sport", "1", "-m", "0")
        wait_idle([(p, 0x7) for p in procs])
        for p in procs:
            p.signal()
        ref, ours = (p.wait() for p in procs)
    finally:
        for p in procs:
            p.kill()
    assert ref.out.count(b"\n") == 2
    assert_same(ref, ours, progname=True)
