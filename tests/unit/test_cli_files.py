"""The files around a ``conntrack`` run (no kernel: the errors come before any socket, and
a working capture records a replayed conversation): ``--capture FILE`` and the library's
``NFNL_PCAP`` / ``NFNL_REPLAY`` variables name the file and the reason when the file
cannot be used, never a socket failure; ``-R`` of an endless file stops at its first
line under a memory limit."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile

import pytest

from conntrack_tools.conntrack.main import main
from nfnl.message import build_message, build_nfnl
from nfnl.pcap import PcapWriter, read_pcap
from nfnl.replay import installed

PREFIX = "conntrack v1.4.7 (conntrack-tools): "
TRY = "Try `conntrack -h' or 'conntrack --help' for more information.\n"
CT_DELETE = 0x102


def run(argv: list[str]) -> tuple[int, str, str]:
    err = io.StringIO()
    with tempfile.TemporaryFile() as out:
        status = main(["conntrack", *argv], stdout_fd=out.fileno(), stderr=err)
        out.seek(0)
        return status, out.read().decode(), err.getvalue()


def flush_conversation() -> list[tuple[str, bytes]]:
    request = build_nfnl(CT_DELETE, 0x5, 0, b"", seq=1)
    return [("sent", request), ("received", build_message(2, 0x100, bytes(4) + request[:16], 1, 9))]


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("NFNL_PCAP", "NFNL_REPLAY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("path,reason", [
    ("/nonexistent/x.pcap", "No such file or directory"),
    ("/", "Is a directory"),
    ("/dev/full", "No space left on device"),
    ("", "No such file or directory"),
])
@pytest.mark.parametrize("form", ["separate", "joined"])
def test_capture_file_that_cannot_be_written(clean_env, path: str, reason: str, form: str) -> None:
    argv = ["--capture", path] if form == "separate" else [f"--capture={path}"]
    status, out, err = run(["-F", *argv])
    assert (status, out) == (2, "")
    assert err == f"{PREFIX}Failed to open file {path} for writing: {reason}\n{TRY}"
    assert "NFNL_PCAP" not in os.environ


def test_capture_without_its_file(clean_env) -> None:
    assert run(["-L", "--capture"]) == (2, "", f"{PREFIX}option `--capture' requires an argument\n{TRY}")


@pytest.mark.parametrize("content,reason", [
    (None, "Failed to open file {path} for reading: No such file or directory"),
    (b"", "Failed to read file {path}: not a capture file: only 0 bytes"),
    (b"\xd4\xc3\xb2\xa1" + bytes(10), "Failed to read file {path}: truncated capture"),
])
def test_replay_file_that_cannot_be_read(clean_env, monkeypatch, tmp_path, content, reason) -> None:
    path = tmp_path / "r.pcap"
    if content is not None:
        path.write_bytes(content)
    monkeypatch.setenv("NFNL_REPLAY", str(path))
    status, out, err = run(["-F"])
    assert (status, out) == (1, "")
    assert err.startswith(f"{PREFIX}NFNL_REPLAY: {reason.format(path=path)}") and err.count("\n") == 1


def test_nfnl_pcap_that_cannot_be_written(clean_env, monkeypatch) -> None:
    monkeypatch.setenv("NFNL_PCAP", "/nonexistent/y.pcap")
    assert run(["-F"]) == (1, "", f"{PREFIX}NFNL_PCAP: Failed to open file /nonexistent/y.pcap "
                                  "for writing: No such file or directory\n")
    assert os.environ["NFNL_PCAP"] == "/nonexistent/y.pcap"


def test_each_run_captures_to_its_own_file(clean_env, tmp_path) -> None:
    """Two runs in one process, each with its --capture: two complete recordings, and
    the environment as it was."""
    for name in ("a.pcap", "b.pcap"):
        with installed(flush_conversation()):
            status, _, err = run(["-F", "--capture", str(tmp_path / name)])
        assert status == 0 and err.endswith("has been emptied.\n")
    for name in ("a.pcap", "b.pcap"):
        packets = list(read_pcap(tmp_path / name))
        assert [p.direction for p in packets] == ["sent", "received"]
    assert "NFNL_PCAP" not in os.environ


def test_real_start_up_path(tmp_path) -> None:
    """``python -m conntrack_tools.conntrack`` with NFNL_REPLAY of a missing file."""
    env = {**os.environ, "NFNL_REPLAY": str(tmp_path / "missing.pcap")}
    r = subprocess.run([sys.executable, "-m", "conntrack_tools.conntrack", "-L"], env=env,
                       capture_output=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.decode() == (f"{PREFIX}NFNL_REPLAY: Failed to open file {tmp_path}/missing.pcap "
                                 "for reading: No such file or directory\n")


def test_endless_batch_file_under_a_memory_limit(tmp_path) -> None:
    """``-R /dev/zero`` reads one line's worth and refuses it; before, the whole file was
    read into memory (an address-space limit of 512 MiB ended it with MemoryError)."""
    import resource

    limit = 512 << 20
    empty = tmp_path / "empty.pcap"
    with PcapWriter(str(empty)):
        pass
    r = subprocess.run([sys.executable, "-m", "conntrack_tools.conntrack", "-R", "/dev/zero"],
                       env={**os.environ, "NFNL_REPLAY": str(empty)}, capture_output=True,
                       timeout=60, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS,
                                                                         (limit, limit)))
    assert (r.returncode, r.stdout) == (2, b"")
    assert r.stderr.decode() == f"{PREFIX}line 1 of /dev/zero is longer than 10239 bytes\n{TRY}"
