"""Two sync daemons (ours or the C 1.4.7 one, in any combination) on a dedicated sync link
between two private namespaces: a primary ``a`` and a backup ``b``.

:class:`SyncPair` creates the namespaces (:class:`~.synclinks.SyncLinks`, link ``s0``),
writes each side's config (mode, one transport block, a Filter ignoring the sync link's
own flows) and starts the daemons with :class:`~.cdaemon.CDaemon` (own LockFile, UNIX
path and log in a temp dir, killed by pid). Flows are created in the primary's
namespace with the library (:func:`make_flows`); :meth:`SyncPair.wait_external` polls the
backup's ``-e`` until it lists them. Nothing runs in the host namespace.
"""
from __future__ import annotations

import re
import socket
import time
from typing import Callable

from conntrack_tools.conntrackd import handlers as H

from .cdaemon import CONNTRACKD, OURS, CDaemon
from .synclinks import SyncLinks, channel_config

PROGRAMS = {"ours": OURS, "c": (CONNTRACKD,)}
MODES = {"ftfw": "FTFW", "notrack": "NOTRACK", "alarm": "ALARM"}
FILTER = """\tFilter From Userspace {
\t\tAddress Ignore {
\t\t\tIPv4_address 127.0.0.1
\t\t\tIPv6_address ::1
\t\t\tIPv4_address 10.231.0.0/16
\t\t\tIPv6_address fd00:231::/32
\t\t}
\t}
"""
ACTIVE = re.compile(r" \[active since -?\d+s\]| \[expires in -?\d+s\]")


def sync_config(kind: str, side: str, mode: str = "ftfw", mode_opts: str = "",
                extra: str = "", port: int = 3780, second: str | None = None) -> str:
    """The ``Sync`` section of one side (one channel on link ``s0``; ``second``: another
    one on ``s1``, ``s0``'s being the Default)."""
    block = channel_config(kind, side, 0, port=port, default=second is not None)
    if second is not None:
        block += channel_config(second, side, 1, port=port + 1)
    return f"Sync {{\n\tMode {MODES[mode]} {{\n{mode_opts}\t}}\n{block}{extra}}}\n"


class SyncPair:
    """Primary ``a`` and backup ``b`` (see the module docstring)."""

    def __init__(self, primary: str = "ours", backup: str = "ours", *, mode: str = "ftfw",
                 kind: str = "udp4", mode_opts: str = "", extra: str = "",
                 general: str = "", second: str | None = None, filter: str = FILTER,
                 prefix: str = "repl", lossy: bool = False) -> None:
        self.links = SyncLinks(2 if second else 1, prefix=prefix)
        self.lossy = lossy  # 20% loss both ways on the sync link before the daemons start
        self.second = second
        self.filter = filter
        self.kinds = {"a": primary, "b": backup}
        self.mode = mode
        self.kind = kind
        self.mode_opts = mode_opts
        self.extra = extra
        self.general = general
        self.daemons: dict[str, CDaemon] = {}

    def __enter__(self) -> "SyncPair":
        self.links.create()
        try:
            if self.lossy:
                for side in "ab":
                    nft_loss(self.ns(side))
            for side in "ab":
                self.start(side)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def a(self) -> CDaemon:
        return self.daemons["a"]

    @property
    def b(self) -> CDaemon:
        return self.daemons["b"]

    def ns(self, side: str):
        return self.links.ns(side)

    def start(self, side: str) -> CDaemon:
        sync = sync_config(self.kind, side, self.mode, self.mode_opts, self.extra,
                           second=self.second)
        d = CDaemon(self.ns(side), sync, general=self.filter + self.general,
                    program=PROGRAMS[self.kinds[side]])
        try:
            d.start()
        except BaseException:
            d.close()
            raise
        self.daemons[side] = d
        return d

    def stop(self, side: str, kill: bool = False) -> None:
        d = self.daemons.pop(side, None)
        if d is None:
            return
        if kill and d.proc is not None:
            d.proc.kill()
            d.proc.wait()
            d.proc = None
        d.close()

    def close(self) -> None:
        for side in list(self.daemons):
            self.stop(side)
        self.links.delete()

    # --- reading the daemons -------------------------------------------------------------------
    def external(self, side: str = "b") -> list[str]:
        """The backup's ``-e`` lines, the times masked, sorted."""
        out = self.daemons[side].request(H.CT_DUMP_EXTERNAL).decode()
        return sorted(ACTIVE.sub("", line) for line in out.splitlines() if line)

    def internal(self, side: str = "a") -> list[str]:
        out = self.daemons[side].request(H.CT_DUMP_INTERNAL).decode()
        return sorted(ACTIVE.sub("", line) for line in out.splitlines() if line)

    def client_external(self, side: str = "b", program: str = "ours") -> list[str]:
        """``conntrackd -e`` through a client (ours or the C one)."""
        d = self.daemons[side]
        r = d.client("-e", program=PROGRAMS[program])
        return sorted(ACTIVE.sub("", line) for line in r.stdout.splitlines() if line)

    def wait(self, cond: Callable[[], bool], timeout: float = 30.0, step: float = 0.1) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(step)
        return cond()

    def wait_external(self, n: int, side: str = "b", timeout: float = 30.0) -> bool:
        return self.wait(lambda: len(self.external(side)) >= n, timeout)

    def stats(self, side: str, code: int = H.STATS) -> str:
        return self.daemons[side].request(code).decode()


def make_flows(ns, n: int, *, family: int = socket.AF_INET, base: int = 0, proto: int = 17,
               timeout: int = 600) -> None:
    """``n`` flows in ``ns`` with the library (batched): 10.99.x.y (fd00:99::/64) clients
    to one server, UDP by default (TCP: ESTABLISHED)."""
    from ctnetlink.client import Conntrack
    from ctnetlink.model import Flow, TcpInfo, Tuple

    flows = []
    for i in range(base, base + n):
        if family == socket.AF_INET:
            src, dst = f"10.99.{(i >> 8) & 255}.{i & 255}", "10.98.0.1"
        else:
            src, dst = f"fd00:99::{i + 1:x}", "fd00:98::1"
        t = Tuple(src=src, dst=dst, proto=proto, sport=10000 + (i % 50000), dport=53 if proto == 17 else 80)
        kw = {"tcp": TcpInfo(state=3)} if proto == 6 else {}
        flows.append(Flow(family=family, orig=t, timeout=timeout, mark=i & 0xff, **kw))
    with ns.enter():
        with Conntrack() as ct:
            for chunk in range(0, len(flows), 1000):
                errs = ct.create_many(flows[chunk:chunk + 1000])
                bad = [e for e in errs if e is not None]
                if bad:
                    raise bad[0]


def conntrack_insert(ns, *args: str) -> None:
    """``conntrack -I`` of the reference tool in ``ns``."""
    ns.conntrack("-I", *args)


def nft_loss(ns, iface: str = "s0") -> None:
    """Drop 20% of the packets entering and leaving ``iface`` (numgen random)."""
    ns.nft(f"""table inet repl_loss {{
  chain lossin {{ type filter hook input priority -300; iifname "{iface}" numgen random mod 5 == 0 drop; }}
  chain lossout {{ type filter hook output priority -300; oifname "{iface}" numgen random mod 5 == 0 drop; }}
}}""")


__all__ = ["SyncPair", "make_flows", "conntrack_insert", "nft_loss", "sync_config"]
