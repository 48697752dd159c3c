"""Long-lived TCP connections for the HA failover tests: an echo server and a client
driven over stdin/stdout, each run as a script inside a namespace
(``ip netns exec NS python haecho.py server|client ...``).

The client reads one JSON command per line and answers one JSON line:

* ``{"cmd": "open", "n": N}`` — open N connections (TCP_NODELAY) and pass a first echo
  on each: ``{"open": N}``.
* ``{"cmd": "probe", "timeout": T}`` — send a fresh token on every connection; which
  echoed it back within T seconds: ``{"alive": [bool, ...]}``.
* ``{"cmd": "watch", "timeout": T, "every": E}`` — send a token every E seconds on each
  connection until one of that connection's tokens comes back; the CLOCK_MONOTONIC time
  of that first echo (``null`` if none within T): ``{"times": [...]}``. The clock is
  the host's, so the test compares it with its own ``time.monotonic()``.

Tokens are unique lines; stale echoes (of tokens sent before a probe) are skipped. A
connection that fails (RST, timeout) counts as not passing data.
"""
from __future__ import annotations

import json
import selectors
import socket
import sys
import time


def serve(addr: str, port: int) -> None:
    sel = selectors.DefaultSelector()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(1024)
    ls.setblocking(False)
    sel.register(ls, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            if s is ls:
                try:
                    c, _ = ls.accept()
                except OSError:
                    continue
                c.setblocking(False)
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sel.register(c, selectors.EVENT_READ)
                continue
            try:
                data = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                s.close()
                continue
            try:
                s.sendall(data)  # tiny lines: the send buffer never fills
            except OSError:
                sel.unregister(s)
                s.close()


class Conn:
    def __init__(self, i: int, sock: socket.socket) -> None:
        self.i = i
        self.sock = sock
        self.buf = b""
        self.dead = False
        self.seq = 0

    def send_token(self, tag: str) -> bytes:
        self.seq += 1
        tok = f"{tag}-{self.i}-{self.seq}".encode()
        try:
            self.sock.send(tok + b"\n")
        except OSError:
            self.dead = True
        return tok

    def lines(self) -> list[bytes]:
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            data = b""
        if not data:
            self.dead = True
            return []
        self.buf += data
        *out, self.buf = self.buf.split(b"\n")
        return out


class Client:
    def __init__(self, addr: str, port: int) -> None:
        self.addr = addr
        self.port = port
        self.conns: list[Conn] = []
        self.sel = selectors.DefaultSelector()

    def open(self, n: int, timeout: float = 10.0) -> int:
        for _ in range(n):
            s = socket.create_connection((self.addr, self.port), timeout=timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            c = Conn(len(self.conns), s)
            self.conns.append(c)
            self.sel.register(s, selectors.EVENT_READ, c)
        return sum(self.probe(timeout))

    def _wait(self, pending: dict[Conn, set[bytes]], deadline: float, result: dict[Conn, float],
              resend=None) -> None:
        """Read until every connection in ``pending`` got one of its tokens back."""
        while pending and time.monotonic() < deadline:
            if resend is not None:
                resend(pending)
            for key, _ in self.sel.select(0.005 if resend else max(0.0, deadline - time.monotonic())):
                c = key.data
                got = c.lines()
                if c in pending and pending[c].intersection(got):
                    result[c] = time.monotonic()
                    del pending[c]
            for c in [c for c in pending if c.dead]:
                del pending[c]

    def probe(self, timeout: float) -> list[bool]:
        pending = {c: {c.send_token("p")} for c in self.conns if not c.dead}
        result: dict[Conn, float] = {}
        self._wait(pending, time.monotonic() + timeout, result)
        return [c in result for c in self.conns]

    def watch(self, timeout: float, every: float) -> list[float | None]:
        pending = {c: set() for c in self.conns if not c.dead}
        last = {c: 0.0 for c in pending}

        def resend(pend: dict[Conn, set[bytes]]) -> None:
            now = time.monotonic()
            for c, toks in pend.items():
                if now - last[c] >= every:
                    toks.add(c.send_token("w"))
                    last[c] = now

        result: dict[Conn, float] = {}
        self._wait(pending, time.monotonic() + timeout, result, resend)
        return [result.get(c) for c in self.conns]


def client(addr: str, port: int) -> None:
    cl = Client(addr, port)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "open":
            out = {"open": cl.open(cmd["n"], cmd.get("timeout", 10.0))}
        elif cmd["cmd"] == "probe":
            out = {"alive": cl.probe(cmd["timeout"])}
        elif cmd["cmd"] == "watch":
            out = {"times": cl.watch(cmd["timeout"], cmd.get("every", 0.02))}
        else:
            out = {"error": f"unknown command {cmd['cmd']!r}"}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    role, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    serve(addr, port) if role == "server" else client(addr, port)
