"""conntrackd's process shell without a kernel: the loop, the control socket framing,
log lines, sd_notify, children, the runtime statistics text."""
from __future__ import annotations

import os
import signal
import socket
import struct
import threading

import pytest

from conntrack_tools.conntrackd import control, daemon, log, loop, process


# --- loop -------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_timers_run_in_time_order_and_cancel():
    clock = FakeClock()
    lp = loop.Loop(clock)
    seen = []
    lp.call_later(3, seen.append, "c")
    lp.call_later(1, seen.append, "a")
    t = lp.call_later(2, seen.append, "never")
    lp.call_later(2, seen.append, "b")
    t.cancel()
    lp.call_later(4, lp.stop)
    lp.running = True
    for _ in range(6):
        clock.now += 1
        lp._run_timers()
    assert seen == ["a", "b", "c"] and not lp.running


def test_readers_are_served_in_registration_order_and_errors_do_not_stop_the_loop():
    lp = loop.Loop()
    errors = []
    lp.on_error = errors.append
    order = []
    pipes = [os.pipe() for _ in range(3)]
    try:
        for i, (r, _) in reversed(list(enumerate(pipes))):
            def cb(i=i, r=r):
                os.read(r, 10)
                order.append(i)
                if i == 1:
                    raise ValueError("bad datagram")
            lp.add_reader(r, cb)
        for _, w in pipes:
            os.write(w, b"x")
        lp.call_later(0.05, lp.stop)
        lp.run()
        assert order == [2, 1, 0]  # registered 2, 1, 0
        assert [str(e) for e in errors] == ["bad datagram"]
        lp.remove_reader(pipes[0][0])
        assert pipes[0][0] not in lp.entries
    finally:
        lp.close()
        for r, w in pipes:
            os.close(r)
            os.close(w)


def test_signals_run_inside_the_loop():
    lp = loop.Loop()
    got = []
    old = signal.getsignal(signal.SIGUSR1)
    try:
        lp.add_signal(signal.SIGUSR1, lambda s: (got.append(s), lp.stop()))
        lp.call_later(0.01, os.kill, os.getpid(), signal.SIGUSR1)
        lp.call_later(5, lp.stop)
        lp.run()
        assert got == [signal.SIGUSR1]
    finally:
        lp.close()
        signal.signal(signal.SIGUSR1, old)


def test_a_loop_with_nothing_to_wait_for_returns():
    lp = loop.Loop()
    lp.run()
    assert not lp.running


# --- control socket -----------------------------------------------------------------------

@pytest.fixture
def server(tmp_path):
    lp = loop.Loop()
    srv = control.ControlServer(str(tmp_path / "ctl"), lp)
    srv.open()
    th = None

    def start():
        nonlocal th
        th = threading.Thread(target=lp.run)
        th.start()

    yield srv, start
    lp.stop()
    if th is not None:
        try:  # wake the loop so that it sees the stop
            c = socket.socket(socket.AF_UNIX)
            c.connect(str(tmp_path / "ctl"))
            c.close()
        except OSError:
            pass
        th.join(10)
    srv.close()
    lp.close()


def ask(path: str, payload: bytes) -> bytes:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    s.sendall(payload)
    out = b""
    while chunk := s.recv(4096):
        out += chunk
    s.close()
    return out


def test_server_framing_and_handler_chain(server, tmp_path):
    srv, start = server
    calls = []

    def first(code, conn):
        calls.append(("first", code))
        if code == 20:
            return True
        if code == 30:
            conn.write("runtime\n")
        return None

    def second(code, conn):
        calls.append(("second", code))
        if code == 16:
            conn.write(b"x" * 5000)
        if code == 99:
            raise RuntimeError("handler bug")

    errors = []
    srv.on_error = errors.append
    srv.add_handler(first)
    srv.add_handler(second)
    start()
    path = str(tmp_path / "ctl")
    assert ask(path, struct.pack("=i", 30)) == b"runtime\n"
    assert ask(path, struct.pack("=i", 16)) == b"x" * 5000
    assert ask(path, struct.pack("=i", 20)) == b""
    assert ask(path, struct.pack("=i", 99)) == b""
    assert ask(path, b"\x01") == b""  # short: ignored
    assert ask(path, struct.pack("=i", 30)) == b"runtime\n"  # still serving
    assert calls == [("first", 30), ("second", 30), ("first", 16), ("second", 16),
                     ("first", 20), ("first", 99), ("second", 99), ("first", 30),
                     ("second", 30)]
    assert [str(e) for e in errors] == ["handler bug"]


def test_silent_clients_are_dropped(server, tmp_path, monkeypatch):
    monkeypatch.setattr(control, "READ_TIMEOUT", 0.05)
    srv, start = server
    srv.add_handler(lambda code, conn: conn.write("ok"))
    start()
    path = str(tmp_path / "ctl")
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(path)
    try:
        assert ask(path, struct.pack("=i", 1)) == b"ok"  # not blocked by the silent one
        silent.settimeout(10)
        assert silent.recv(10) == b""  # dropped
    finally:
        silent.close()
    assert srv.stats.read_failed == 1


def test_detached_connections_stay_open(server, tmp_path):
    srv, start = server
    kept = []
    srv.add_handler(lambda code, conn: kept.append(conn.detach()))
    start()
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(str(tmp_path / "ctl"))
    s.sendall(struct.pack("=i", 18))
    for _ in range(500):
        if kept:
            break
        threading.Event().wait(0.01)
    kept[0].sendall(b"done")
    kept[0].close()
    assert s.recv(10) == b"done" and s.recv(10) == b""
    s.close()


def test_client_request_and_reply_chunks(tmp_path):
    path = str(tmp_path / "c.ctl")
    ls = socket.socket(socket.AF_UNIX)
    ls.bind(path)
    ls.listen(1)
    got = []

    def serve():
        c, _ = ls.accept()
        got.append(c.recv(4))
        c.sendall(b"abc\0hidden" + b"y" * 2000)
        c.close()

    th = threading.Thread(target=serve)
    th.start()
    out = []
    control.request(path, control.STATS_RUNTIME, out.append)
    th.join(10)
    ls.close()
    assert got == [struct.pack("=i", 30)]
    # 1023-byte chunks, each printed up to its first NUL (printf("%s"))
    assert out == [b"abc", b"y" * (2000 - (control.CHUNK - 10))]
    with pytest.raises(control.ConnectError):
        control.request(str(tmp_path / "none"), 21, out.append)
    with pytest.raises(control.ConnectError):
        control.request("", 21, out.append)


def test_request_code_names():
    assert control.NAMES[16] == "CT_DUMP_INTERNAL" and control.NAMES[48] == "EXP_DUMP_EXT_XML"
    assert len({v for v in control.NAMES}) == 35


# --- log ---------------------------------------------------------------------------------

def test_log_line_format(utc):
    assert log.line(log.NOTICE, "initialization completed", pid=7, t=1796576473) == \
        "[Sun Dec  6 17:01:13 2026] (pid=7) [notice] initialization completed\n"
    assert log.line(2, "x", pid=1, t=0) == "[Thu Jan  1 00:00:00 1970] (pid=1) [?] x\n"
    assert log.ctime(1796576473) == "Sun Dec  6 17:01:13 2026"


def test_logger_destinations(tmp_path, capsys):
    lg = log.Logger()
    lg.warning("before")
    lg.open(str(tmp_path / "l"), str(tmp_path / "s"), None, None)
    lg.console = False
    lg.notice("after")
    lg.flow("udp 17 src=1.1.1.1")
    lg.close()
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err.endswith("[warning] before\n")
    assert (tmp_path / "l").read_text().endswith("[notice] after\n")
    assert (tmp_path / "s").read_text().endswith("\tudp 17 src=1.1.1.1\n")
    with pytest.raises(log.LogOpenError) as e:
        log.Logger().open(str(tmp_path / "no" / "x"), None, None, None)
    assert str(e.value) == (f"ERROR: can't open logfile `{tmp_path}/no/x'.Reason: "
                            "No such file or directory")


# --- process ------------------------------------------------------------------------------

def test_lock_file(tmp_path):
    p = str(tmp_path / "lock")
    process.create_lock(p)
    assert os.stat(p).st_mode & 0o777 == 0o600 & ~os.umask(os.umask(0))
    with pytest.raises(process.LockError) as e:
        process.create_lock(p)
    assert str(e.value) == f"lockfile `{p}' exists, perhaps conntrackd already running?"


@pytest.mark.parametrize("abstract", [False, True])
def test_sd_notify(tmp_path, abstract):
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"ctd-test-{os.getpid()}"
    rx.bind(b"\0" + name.encode() if abstract else str(tmp_path / "n"))
    rx.settimeout(5)
    env = {"NOTIFY_SOCKET": "@" + name if abstract else str(tmp_path / "n"),
           "WATCHDOG_USEC": "20000", "WATCHDOG_PID": str(os.getpid())}
    n = process.Notifier(True, env)
    n.ready()
    n.mainpid(42)
    lp = loop.Loop()
    n.start_watchdog(lp)
    lp.call_later(0.05, lp.stop)
    lp.run()
    lp.close()
    n.stopping()
    msgs = []
    rx.settimeout(0.2)
    try:
        while True:
            msgs.append(rx.recv(100).decode())
    except socket.timeout:
        pass
    rx.close()
    assert msgs[:2] == ["READY=1", "MAINPID=42"] and msgs[-1] == "STOPPING=1"
    assert msgs[2:-1] and set(msgs[2:-1]) == {"WATCHDOG=1"}
    assert not process.Notifier(False, env).notify("READY=1")
    assert process.Notifier(True, {**env, "WATCHDOG_PID": "1"}).watchdog_usec == 0


def test_children_listing_and_reaping():
    msgs = []

    class L:
        def error(self, m):
            msgs.append(("ERROR", m))

        def notice(self, m):
            msgs.append(("notice", m))

    ch = process.Children(L())
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGTERM)
        os._exit(0)
    done = []
    ch.add(pid, "flush", lambda p, st: done.append(p))
    assert ch.listing() == f"PID={pid} type=flush\n"
    for _ in range(500):
        ch.reap()
        if done:
            break
        threading.Event().wait(0.01)
    assert done == [pid] and ch.listing() == ""
    assert (ch.failed, ch.termsig) == (1, 1)
    assert msgs == [("ERROR", f"child process (pid={pid}) has aborted, received termination "
                              "signal (15)")]


def test_uptime_text():
    assert daemon.uptime_text(59) == "0 min"
    assert daemon.uptime_text(61) == "1 min"
    assert daemon.uptime_text(3600 * 2 + 60 * 5) == "2 h 5 min"
    assert daemon.uptime_text(86400 + 60) == "1 day 1 min"
    assert daemon.uptime_text(86400 * 3 + 3600) == "3 days 1 h 0 min"
