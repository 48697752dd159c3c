"""Where ours deliberately differs from conntrack 1.4.7 (docs/compatibility.md).

Each test checks both sides: the reference still behaves as documented (so the
documentation stays true for the binary at hand) and ours does what the user meant — the
1.4.8 behaviour where 1.4.8 fixed the bug. Tables are built as in test_mutating.py and
compared after the command wherever the kernel state must end up the same.
"""
from __future__ import annotations

import pytest

from harness import PREFIX, assert_same, same_output
from test_mutating import A4, B4, T, Case, run_both

ENTRIES4 = [f"-I -s {A4} -d {B4} -p tcp --sport {i} --dport 2 --state ESTABLISHED {T}"
            for i in range(1, 5)]
ZONED = [f"-I -s {A4} -d {B4} -p udp --sport 1 --dport 2 {T} -w 5"]
SCTP = [f"-I -s {A4} -d {B4} -p sctp --sport 30 --dport 40 --state ESTABLISHED --orig-vtag 1 "
        f"--reply-vtag 2 {T}"]


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines()


def test_update_without_family(module_ns) -> None:
    """1.4.7 sends -U's NEW/GET with the command family (0): EOPNOTSUPP for every entry;
    1.4.8 and ours use the entry's family and update it."""
    ns, runner = module_ns
    case = Case("-U -p tcp --sport 1 -m 14", table=ENTRIES4)
    ref, ref_table, ours, our_table = run_both(ns, runner, case)
    assert ref.status == 1 and ref.out == b""
    assert ref.err == (b"Operation failed: Operation not supported\n" + PREFIX +
                       b"Operation failed: Operation not supported\n")
    assert ours.status == 0
    assert _lines(ours.out)[0].startswith(b"tcp      6 ") and b" sport=1 " in ours.out
    assert b"mark=14 " in ours.out and len(_lines(ours.out)) == 1
    assert ours.err == PREFIX + b"1 flow entries have been updated.\n"
    assert any("sport=1 " in line and "mark=14 " in line for line in our_table)


def test_update_many_prints_every_entry(module_ns) -> None:
    """1.4.7 reads one datagram per GET sent with ACK: from the second entry on, printed
    lines lag behind or are lost. Every entry is updated either way; ours prints each."""
    ns, runner = module_ns
    case = Case(f"-U -s {A4} -p tcp -m 3", table=ENTRIES4)
    ref, ref_table, ours, our_table = run_both(ns, runner, case)
    assert our_table == ref_table
    assert ref.status == ours.status == 0
    assert ref.err == ours.err == PREFIX + b"4 flow entries have been updated.\n"
    assert len(_lines(ref.out)) < 4
    assert len(_lines(ours.out)) == 4
    assert {line.split(b" sport=")[1][:1] for line in _lines(ours.out)} == {b"1", b"2", b"3", b"4"}
    for line in _lines(ref.out):  # what the reference did print, ours printed too
        assert any(same_output(line, mine) for mine in _lines(ours.out))


def test_update_zoned_entry(module_ns) -> None:
    """The update carries the original tuple without its zone: the kernel answers ENOENT.
    1.4.7 prints the error without prefix; 1.4.8 and ours skip the entry silently."""
    ns, runner = module_ns
    case = Case(f"-U -s {A4} -p udp -m 3", table=ZONED)
    ref, ref_table, ours, our_table = run_both(ns, runner, case)
    assert our_table == ref_table
    assert ref.status == ours.status == 1
    assert ref.err == b"Operation failed: No such file or directory\n" + \
        PREFIX + b"0 flow entries have been updated.\n"
    assert ours.err == PREFIX + b"0 flow entries have been updated.\n"
    assert ref.out == ours.out == b""


def test_update_failure_is_fatal(module_ns) -> None:
    """A failing update: 1.4.7 prints ``Operation failed`` without prefix and goes on
    (prints the unchanged entry, counts it); 1.4.8 and ours stop with the prefixed error."""
    ns, runner = module_ns
    case = Case(f"-U -s {A4} -p sctp --state SHUTDOWN_SENT", table=SCTP)
    ref, ref_table, ours, our_table = run_both(ns, runner, case)
    assert our_table == ref_table
    assert ref.status == 0
    assert ref.err == b"Operation failed: invalid parameters\n" + \
        PREFIX + b"1 flow entries have been updated.\n"
    assert ours.status == 1 and ours.out == b""
    assert ours.err == PREFIX + b"Operation failed: invalid parameters\n"


def test_batch_update_uses_its_own_line(module_ns) -> None:
    """In the reference's -R, every -U line applies the changes (mark, ...) of the file's
    last line (selection still uses its own); ours applies each line's own changes."""
    ns, runner = module_ns
    batch = (f"-U -s {A4} -p tcp --sport 1 -m 11\n-U -s {A4} -p tcp --sport 3 -m 12\n").encode()
    case = Case("-R -", table=ENTRIES4, stdin=batch)
    ref, ref_table, ours, our_table = run_both(ns, runner, case)
    marks = {line.split("sport=")[1].split()[0]: line.split("mark=")[1].split()[0]
             for line in ref_table}
    assert marks == {"1": "12", "2": "0", "3": "12", "4": "0"}
    marks = {line.split("sport=")[1].split()[0]: line.split("mark=")[1].split()[0]
             for line in our_table}
    assert marks == {"1": "11", "2": "0", "3": "12", "4": "0"}
    assert ours.status == 0 and ours.err == b""
    assert [b"mark=11 " in line for line in _lines(ours.out)] == [True, False]


def test_batch_with_labels_does_not_crash(module_ns) -> None:
    """The reference's -R dies with SIGSEGV at exit (after running every line, losing its
    buffered stdout) when the label map was loaded and the file has several lines."""
    ns, runner = module_ns
    batch = (f"-I -s {A4} -d {B4} -p tcp --sport 9 --dport 2 --state ESTABLISHED {T} "
             f"--label-add web\n-D -p tcp --sport 1 -o save\n").encode()
    case = Case("-R -", table=ENTRIES4, stdin=batch)
    ref, ref_table, ours, our_table = run_both(ns, runner, case)
    assert ref.status == -11 and ref.out == b"" and ref.err == b""
    assert our_table == ref_table
    assert ours.status == 0 and ours.err == b""
    assert ours.out.startswith(b"-D -t ") and b" --sport 1 " in ours.out


def test_listing_by_family_with_kernel_filter(rich) -> None:
    """Without a family, our kernel-side pre-filter dumps IPv4 then IPv6; the reference
    dumps both in hash order. Same lines, possibly in another order."""
    _, runner, _ = rich
    args = ["-L", "-p", "tcp", "--dport", "80"]
    ref, ours = runner.ref(*args), runner.ours(*args)
    assert_same(ref, ours, unordered=True)
    fams = [b"src=2001:" in line for line in _lines(ours.out)]
    assert fams == sorted(fams)


def test_buffer_size_notice(rich) -> None:
    """-b: both print the NOTICE with what the kernel granted (2 x SIZE); the reference
    sized its command socket, ours the event socket."""
    _, runner, _ = rich
    procs = [runner.spawn(w, ["-E", "-b", "300000"]) for w in ("ref", "ours")]
    for p in procs:
        p.wait_listening(0x7)
        p.signal()
    ref, ours = (p.wait() for p in procs)
    assert_same(ref, ours)
    assert ours.err.startswith(b"NOTICE: Netlink socket buffer size has been set to 600000 bytes.\n")



def test_capture_changes_nothing_else(rich, workdir) -> None:
    """``--capture FILE`` (ours only): the same output as without, and the file holds
    the whole netlink conversation."""
    from nfnl.pcap import read_pcap

    _, runner, _ = rich
    path = workdir / "capture.pcap"
    plain = runner.ours("-L", "-p", "udp", "-o", "extended")
    captured = runner.ours("-L", "-p", "udp", "--capture", str(path), "-o", "extended")
    assert_same(plain, captured)
    assert same_output(runner.ref("-L", "-p", "udp", "-o", "extended").out, captured.out,
                       unordered=True)
    packets = list(read_pcap(str(path)))
    assert {p.direction for p in packets} == {"sent", "received"}
    assert len(packets) >= 3


def test_version_names_the_implementation(rich) -> None:
    _, runner, _ = rich
    ref = runner.ref("-V")
    assert_same(ref, runner.ours("-V"))
    named = runner.run("ours", ["-V"], env={"CONNTRACK_IMPLEMENTATION": "1"})
    assert named.out.startswith(ref.out) and named.out.count(b"\n") == 2


def test_update_with_nat_is_fatal(module_ns) -> None:
    """-U of a NAT'ed entry with -g ADDR (a filter that also puts CTA_NAT_DST into the
    update): the kernel refuses (EOPNOTSUPP). 1.4.7 goes on as above; ours stops."""
    ns, runner = module_ns
    table = [f"-I -s {A4} -d {B4} -p tcp --sport 13 --dport 80 --state ESTABLISHED {T} "
             f"--dst-nat 10.3.9.9:8080"]
    case = Case(f"-U -s {A4} -p tcp --sport 13 -g 10.3.9.9 -m 4", table=table)
    ref, ref_table, ours, our_table = run_both(ns, runner, case)
    assert our_table == ref_table
    assert ref.status == 0 and b"sport=13 " in ref.out and b"mark=0 " in ref.out
    assert ref.err == b"Operation failed: Operation not supported\n" + \
        PREFIX + b"1 flow entries have been updated.\n"
    assert ours.status == 1 and ours.out == b""
    assert ours.err == PREFIX + b"Operation failed: Operation not supported\n"


def test_label_update_without_label_extension(xtables, workdir) -> None:
    """Without a ruleset using labels, entries have no label extension and adding a label
    fails with ENOSPC: 1.4.7 prints the unprefixed error, prints the entry and counts it;
    1.4.8+git and ours skip it."""
    from harness import Namespace
    from helpers.netns import NetNS

    with NetNS("pyct-nolabels") as ns:
        runner = Namespace(ns.path, cwd=str(workdir), xtables=xtables)
        try:
            case = Case(f"-U -s {A4} -p tcp --sport 1 --label-add web", table=ENTRIES4)
            ref, ref_table, ours, our_table = run_both(ns, runner, case)
        finally:
            runner.close()
    assert our_table == ref_table
    assert ref.status == 0 and b" sport=1 " in ref.out
    assert ref.err == b"Operation failed: No space left on device\n" + \
        PREFIX + b"1 flow entries have been updated.\n"
    assert ours.status == 1 and ours.out == b""
    assert ours.err == PREFIX + b"0 flow entries have been updated.\n"


JSON_REFUSED = ["xml", "extended", "timestamp", "id", "ktimestamp", "save"]


def _json_for_save(result):
    return result.status, result.out, result.err.replace(b"save", b"json")


@pytest.mark.parametrize("words", [["-o", "json,{}"], ["-o", "{},json"], ["-o", "json", "-o", "{}"]],
                         ids=["json,T", "T,json", "-o json -o T"])
@pytest.mark.parametrize("other", JSON_REFUSED)
def test_json_takes_the_rule_of_save(module_ns, other: str, words: list[str]) -> None:
    """-o json (ours) combines with other output types as -o save does in the reference:
    refused with the same message and exit status 1 (-o labels aside, see below)."""
    _, runner = module_ns
    ours = runner.ours("-L", *(w.format(other) for w in words))
    if other == "save":  # the reference's own rule for save then speaks first or ours does
        assert ours.status == 1 and ours.out == b"" and b"cannot combine " in ours.err
        return
    ref = runner.ref("-L", *(w.replace("json", "save").format(other) for w in words))
    assert ref.err == PREFIX + b"cannot combine save output with any other output type, use -o save only\n"
    assert (ours.status, ours.out, ours.err) == _json_for_save(ref)


@pytest.mark.parametrize("other", ["userspace", "labels"])
def test_json_with_userspace_or_labels(module_ns, other: str) -> None:
    """userspace goes with json as with save; labels (refused with save) loads the label
    map: the JSON objects then carry label names."""
    _, runner = module_ns
    ours = runner.ours("-L", "-o", f"json,{other}")
    assert ours.status == 0 and ours.err.endswith(b" flow entries have been shown.\n")
    assert all(line.startswith(b"{") for line in ours.out.splitlines())
    ref = runner.ref("-L", "-o", f"save,{other}")
    assert ref.status == (0 if other == "userspace" else 1)


TRY = b"Try `conntrack -h' or 'conntrack --help' for more information.\n"
LONG_LINES = [  # (file, what the reference makes of the second piece of its cut line)
    (b" " * 10239 + b"-X\n", b"unknown option `-X'"),
    (b"-D -s 1.1.1.1" + b" " * 10226 + b"x\n", b"Cannot use command `unknown' with --load-file"),
]


@pytest.mark.parametrize("data,ref_message", LONG_LINES, ids=["-X", "x"])
def test_batch_line_longer_than_the_buffer(module_ns, workdir, data: bytes, ref_message: bytes) -> None:
    """A -R line of more than 10239 bytes: the reference cuts it into fgets pieces and
    parses each as a line of its own; ours refuses the line."""
    _, runner = module_ns
    path = workdir / "long-line.txt"
    path.write_bytes(data)
    ref = runner.ref("-R", str(path))
    assert (ref.status, ref.out, ref.err) == (2, b"", PREFIX + ref_message + b"\n" + TRY)
    ours = runner.ours("-R", str(path))
    assert (ours.status, ours.out) == (2, b"")
    assert ours.err == PREFIX + f"line 1 of {path} is longer than 10239 bytes\n".encode() + TRY


@pytest.mark.parametrize("which", ["directory", "read error"])
def test_batch_file_that_cannot_be_read(module_ns, workdir, which: str) -> None:
    """-R DIRECTORY: the reference's fopen succeeds and its first fgets fails, so it runs
    an empty batch (nothing printed, exit 0), as for a read error (``/proc/self/mem``
    fails at offset 0); ours says it cannot open or read the file."""
    _, runner = module_ns
    path = str(workdir) if which == "directory" else "/proc/self/mem"
    ref = runner.ref("-R", path)
    assert (ref.status, ref.out, ref.err) == (0, b"", b"")
    ours = runner.ours("-R", path)
    assert (ours.status, ours.out) == (2, b"")
    message = (f"Failed to open file {path} for reading" if which == "directory"
               else f"Failed to read file {path}: Input/output error")
    assert ours.err == PREFIX + message.encode() + b"\n" + TRY
