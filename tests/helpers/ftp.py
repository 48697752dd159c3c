"""Expectations from the kernel's FTP helper, driven by a tiny FTP conversation over lo.

:func:`enable_ftp_helper` loads an nftables ruleset that attaches the ``ftp`` helper to
locally generated connections to port 21. :class:`FtpServer` listens on 127.0.0.1:21 and
[::1]:21 (create it while the thread is inside the namespace); each call of
:meth:`FtpServer.session` opens one control connection and sends one ``PORT``/``EPRT``
command or answers one ``PASV``/``EPSV`` command, so the helper creates exactly one
expectation on behalf of that connection (the ftp helper keeps at most one per master).
Everything is synchronous: the helper has seen a packet when the ``send`` that carried it
returned, because loopback delivery runs the netfilter hooks in the sender's context.

Two kernel details shape the conversation: the helper ignores the first data packet of
each direction (it only learns where lines start), so a greeting and a ``USER`` command
come first; and on loopback it sees every packet twice (POSTROUTING, then LOCAL_IN), so
each command that creates an expectation creates it, replaces it (a DESTROY event) and
creates it again (a second NEW event with a new id).
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field

FTP_HELPER_RULESET = """
table inet pyct_ftp {
    ct helper ftp-standard {
        type "ftp" protocol tcp
    }
    chain out {
        type filter hook output priority filter; policy accept;
        tcp dport 21 ct helper set "ftp-standard"
    }
}
"""

LABELS_RULESET = """
table inet pyct_labels {
    chain pre {
        type filter hook prerouting priority filter; policy accept;
        meta mark 0x7fffffff ct label set 127
    }
}
"""
"""A rule that never matches but makes the kernel attach the label extension to new
entries (``nf_connlabels_get``): without it labels sent at creation are dropped and
label updates fail with ENOSPC."""


TRACKING_RULESET = """
table inet pyct_track {
    chain pre {
        type filter hook prerouting priority filter; policy accept;
        ct state new counter
    }
    chain out {
        type filter hook output priority filter; policy accept;
        ct state new counter
    }
}
"""
"""Conntrack only sees packets in a namespace once a rule needs it: any ``ct``
expression registers the hooks (IPv4 and IPv6 for an ``inet`` table)."""


def enable_tracking(ns) -> None:
    ns.nft(TRACKING_RULESET)


def enable_ftp_helper(ns) -> None:
    ns.nft(FTP_HELPER_RULESET)


def enable_labels(ns) -> None:
    ns.nft(LABELS_RULESET)


LOOPBACK = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}


@dataclass
class Session:
    """One FTP control connection and the data port the helper now expects."""

    family: int
    client: socket.socket
    server: socket.socket
    mode: str
    data_port: int
    expected_src: str
    expected_dst: str

    @property
    def client_port(self) -> int:
        return self.client.getsockname()[1]

    def close(self) -> None:
        self.client.close()
        self.server.close()


@dataclass
class FtpServer:
    listeners: dict[int, socket.socket] = field(default_factory=dict)
    sessions: list[Session] = field(default_factory=list)
    next_port: int = 50000

    def __post_init__(self) -> None:
        for fam, addr in LOOPBACK.items():
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, 21))
            s.listen(16)
            self.listeners[fam] = s

    def session(self, family: int = socket.AF_INET, mode: str | None = None) -> Session:
        """Open a control connection and make the helper expect one data connection.

        ``mode``: ``PORT``/``EPRT`` (the client announces a port: the server will connect
        to the client) or ``PASV``/``EPSV`` (the server announces a port). Default: PORT
        for IPv4, EPSV for IPv6.
        """
        mode = mode or ("PORT" if family == socket.AF_INET else "EPSV")
        addr = LOOPBACK[family]
        client = socket.create_connection((addr, 21), timeout=5)
        server, _ = self.listeners[family].accept()
        server.settimeout(5)
        port = self.next_port
        self.next_port += 1
        _say(server, client, b"220 pyct test server\r\n")
        _say(client, server, b"USER anonymous\r\n")
        _say(server, client, b"331 any password\r\n")
        hi, lo = divmod(port, 256)
        if mode == "PORT":
            _say(client, server, f"PORT 127,0,0,1,{hi},{lo}\r\n".encode())
            _say(server, client, b"200 PORT command successful\r\n")
        elif mode == "EPRT":
            af = 1 if family == socket.AF_INET else 2
            _say(client, server, f"EPRT |{af}|{addr}|{port}|\r\n".encode())
            _say(server, client, b"200 EPRT command successful\r\n")
        elif mode == "PASV":
            _say(client, server, b"PASV\r\n")
            _say(server, client, f"227 Entering Passive Mode (127,0,0,1,{hi},{lo})\r\n".encode())
        elif mode == "EPSV":
            _say(client, server, b"EPSV\r\n")
            _say(server, client, f"229 Entering Extended Passive Mode (|||{port}|)\r\n".encode())
        else:
            raise ValueError(mode)
        # PORT/EPRT: the server connects back to the client; PASV/EPSV: the client connects
        # to the server. Either way both addresses are the loopback address.
        sess = Session(family, client, server, mode, port, addr, addr)
        self.sessions.append(sess)
        return sess

    def close(self) -> None:
        for s in self.sessions:
            s.close()
        for s in self.listeners.values():
            s.close()


def _say(src: socket.socket, dst: socket.socket, data: bytes) -> None:
    src.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = dst.recv(len(data) - len(got))
        if not chunk:
            raise ConnectionError("FTP peer closed")
        got += chunk
    assert got == data
