"""A keepalived + conntrackd firewall pair in private namespaces, for failover tests.

Namespaces (names prefixed ``ha-``): a switch ``sw`` holding two bridges, a client
``cli``, a server ``srv`` and two routers ``r1`` (primary) and ``r2`` (backup)::

    cli 10.90.1.10 ─┐ bridge lan            bridge wan ┌─ srv 10.90.2.10
                    ├── r1 lan 10.90.1.2   r1 wan 10.90.20.2 ──┤
                    └── r2 lan 10.90.1.3   r2 wan 10.90.20.3 ──┘
                         r1 sync 10.90.99.2 ─── r2 sync 10.90.99.3   (veth)

keepalived on each router (VRRP in the namespace, own config and pid files) moves two
virtual addresses: ``10.90.1.1/24`` on ``lan`` (the client's gateway) and
``10.90.2.1/24`` on ``wan`` (the server's subnet is only reachable through it). The
routers masquerade towards ``wan``; since their own ``wan`` addresses are in another
subnet, masquerade picks the VIP, so the NAT mapping is valid on whichever router holds
it. On both routers ``nf_conntrack_tcp_loose=0`` and ``ct state invalid drop`` in the
forward chain: a connection the backup did not learn really dies on failover.

Each router runs a conntrackd (``"c"``: /usr/sbin/conntrackd; ``"ours"``:
``python -m conntrack_tools.conntrackd`` through a wrapper script; ``None``: none) with
its own config, lock file, log and control socket in a temporary directory, FTFW over UDP
on the sync link; keepalived's ``vrrp_sync_group`` drives ``contrib/primary-backup.sh``
with ``CONNTRACKD_BIN``/``CONNTRACKD_CONFIG``/``CONNTRACKD_LOCK`` set through ``env``.
A router without conntrackd gets keepalived without notify scripts (the negative
control: the script's ``backup`` transition would otherwise start a daemon).

:meth:`HATopo.close` always SIGKILLs every process it started by pid, then every
process still inside one of its namespaces (``ip netns pids``: a daemon the script
started with ``-d``), and deletes the namespaces.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .netns import NetNS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "contrib", "primary-backup.sh")
ECHO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "haecho.py")
C_CONNTRACKD = "/usr/sbin/conntrackd"
KEEPALIVED = "/usr/sbin/keepalived"

CLIENT = "10.90.1.10"
SERVER = "10.90.2.10"
VIP_LAN = "10.90.1.1"
VIP_WAN = "10.90.2.1"
PORT = 7777
ROUTERS = {"r1": {"lan": "10.90.1.2", "wan": "10.90.20.2", "sync": "10.90.99.2", "prio": 150},
           "r2": {"lan": "10.90.1.3", "wan": "10.90.20.3", "sync": "10.90.99.3", "prio": 100}}

RULESET = """
table inet ha {
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state invalid counter drop
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade
    }
}
"""


def wait_for(cond: Callable[[], object], timeout: float, what: str, every: float = 0.02):
    """Poll ``cond`` until truthy (returned) or raise TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(every)


def conntrackd_config(d: str, me: str, peer: str, extra_sync: str = "") -> str:
    ignore = [ROUTERS[me]["lan"], ROUTERS[me]["wan"], ROUTERS[me]["sync"],
              ROUTERS[peer]["sync"], VIP_LAN, VIP_WAN]
    addrs = "".join(f"\t\t\tIPv4_address {a}\n" for a in ["127.0.0.1", *ignore])
    return (f"Sync {{\n\tMode FTFW {{\n{extra_sync}\t}}\n"
            f"\tUDP {{\n\t\tIPv4_address {ROUTERS[me]['sync']}\n"
            f"\t\tIPv4_Destination_Address {ROUTERS[peer]['sync']}\n"
            f"\t\tPort 3780\n\t\tInterface sync\n\t\tChecksum on\n\t}}\n}}\n"
            f"General {{\n\tLogFile {d}/conntrackd.log\n\tLockFile {d}/conntrackd.lock\n"
            f"\tUNIX {{\n\t\tPath {d}/conntrackd.ctl\n\t}}\n\tSystemd off\n"
            f"\tFilter From Userspace {{\n\t\tProtocol Accept {{\n\t\t\tTCP\n\t\t}}\n"
            f"\t\tAddress Ignore {{\n{addrs}\t\t}}\n\t}}\n}}\n")


def keepalived_config(name: str, notify: str | None, advert_int: int) -> str:
    r = ROUTERS[name]
    state = "MASTER" if name == "r1" else "BACKUP"
    lines = ""
    if notify:
        lines = "".join(f'  notify_{k} "{notify} {v}"\n'
                        for k, v in (("master", "primary"), ("backup", "backup"), ("fault", "fault")))
    inst = ""
    for i, (ifname, vip) in enumerate((("lan", VIP_LAN), ("wan", VIP_WAN)), 1):
        inst += (f"vrrp_instance VI_{i} {{\n  interface {ifname}\n  state {state}\n"
                 f"  virtual_router_id {60 + i}\n  priority {r['prio']}\n"
                 f"  advert_int {advert_int}\n"
                 f"  authentication {{\n    auth_type PASS\n    auth_pass ctsync01\n  }}\n"
                 f"  virtual_ipaddress {{\n    {vip}/24\n  }}\n}}\n")
    return (f"global_defs {{\n  router_id ha-{name}\n  script_user root\n"
            f"  vrrp_garp_master_delay 1\n  vrrp_garp_master_repeat 3\n}}\n"
            f"vrrp_sync_group G1 {{\n  group {{\n    VI_1\n    VI_2\n  }}\n{lines}}}\n{inst}")


class Router:
    def __init__(self, topo: "HATopo", name: str, impl: str | None) -> None:
        self.topo = topo
        self.name = name
        self.impl = impl
        self.ns = NetNS(f"ha-{name}")
        self.dir = os.path.join(topo.dir, name)
        os.makedirs(self.dir)
        self.config = os.path.join(self.dir, "conntrackd.conf")
        self.lock = os.path.join(self.dir, "conntrackd.lock")
        self.log = os.path.join(self.dir, "conntrackd.log")
        self.kconf = os.path.join(self.dir, "keepalived.conf")
        self.kpid = os.path.join(self.dir, "keepalived.pid")
        self.vpid = os.path.join(self.dir, "vrrp.pid")
        self.klog = os.path.join(self.dir, "keepalived.out")
        self.script_log = os.path.join(self.dir, "script.out")
        self.bin = self._binary()
        self.conntrackd: subprocess.Popen | None = None
        self.keepalived: subprocess.Popen | None = None

    def _binary(self) -> str | None:
        if self.impl is None:
            return None
        if self.impl == "c":
            return C_CONNTRACKD
        if self.impl == "ours":
            path = os.path.join(self.dir, "conntrackd")
            with open(path, "w") as f:
                # the daemon this process would import (keepalived's scripts do not
                # inherit the test's environment)
                pp = os.environ.get("PYTHONPATH")
                env = f"export PYTHONPATH={pp}\n" if pp else ""
                f.write(f'#!/bin/sh\n{env}exec {sys.executable} -m conntrack_tools.conntrackd "$@"\n')
            os.chmod(path, 0o755)
            return path
        raise ValueError(self.impl)

    def notify_command(self) -> str | None:
        if self.bin is None:
            return None
        # a wrapper so the script's output lands in a file (keepalived discards it)
        wrapper = os.path.join(self.dir, "notify.sh")
        with open(wrapper, "w") as f:
            f.write(f'#!/bin/sh\necho "$(date +%s.%N) $1 start" >> {self.script_log}\n'
                    f"CONNTRACKD_BIN={self.bin} CONNTRACKD_CONFIG={self.config} "
                    f"CONNTRACKD_LOCK={self.lock} {SCRIPT} \"$1\" >> {self.script_log} 2>&1\n"
                    f'echo "$(date +%s.%N) $1 exit $?" >> {self.script_log}\n')
        os.chmod(wrapper, 0o755)
        return wrapper

    # --- processes ------------------------------------------------------------------
    def start_conntrackd(self, timeout: float = 30.0) -> None:
        if self.bin is None:
            return
        peer = "r2" if self.name == "r1" else "r1"
        with open(self.config, "w") as f:
            f.write(conntrackd_config(self.dir, self.name, peer, self.topo.extra_sync))
        self.conntrackd = self.ns.popen(self.bin, "-C", self.config,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.conntrackd.poll() is not None or (
            os.path.exists(self.log) and "initialization completed" in open(self.log).read()),
            timeout, f"conntrackd on {self.name} did not start")
        if self.conntrackd.poll() is not None:
            raise RuntimeError(f"conntrackd on {self.name} exited: {self.read(self.log)}")

    def start_keepalived(self) -> None:
        with open(self.kconf, "w") as f:
            f.write(keepalived_config(self.name, self.notify_command(), self.topo.advert_int))
        with open(self.klog, "w") as out:
            self.keepalived = self.ns.popen(
                KEEPALIVED, "-n", "-R", "-P", "-l", "-D", "-G", "-f", self.kconf, "-p", self.kpid,
                "-r", self.vpid, stdout=out, stderr=subprocess.STDOUT)

    def client(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``conntrackd -C cfg ARGS`` with this router's implementation."""
        return self.ns.run(self.bin, "-C", self.config, *args, check=False)

    def external_flows(self) -> int:
        """TCP flows to the server in the external cache (``-e``)."""
        out = self.client("-e").stdout
        return sum(1 for line in out.splitlines() if f"dst={SERVER}" in line
                   and "ESTABLISHED" in line)

    def internal_flows(self) -> int:
        out = self.client("-i").stdout
        return sum(1 for line in out.splitlines() if f"dst={SERVER}" in line
                   and "ESTABLISHED" in line)

    def kernel_flows(self) -> int:
        out = self.ns.conntrack("-L", "-p", "tcp", "--dport", str(PORT), check=False).stdout
        return sum(1 for line in out.splitlines() if "ESTABLISHED" in line)

    def has_vip(self) -> bool:
        out = self.ns.run("ip", "-4", "-o", "addr", "show").stdout
        return f"{VIP_LAN}/24" in out and f"{VIP_WAN}/24" in out

    def invalid_drops(self) -> int:
        out = self.ns.run("nft", "list", "chain", "inet", "ha", "forward").stdout
        for line in out.splitlines():
            if "invalid" in line and "packets" in line:
                return int(line.split("packets")[1].split()[0])
        return 0

    def vrrp_child_pid(self) -> int | None:
        try:
            return int(open(self.vpid).read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def crash(self, links_down: bool = True) -> None:
        """The node dies: SIGKILL keepalived's VRRP process, keepalived and conntrackd
        (nothing gets to release the VIPs or say goodbye), then its links go down."""
        vpid = self.vrrp_child_pid()
        if vpid:
            _kill(vpid)
        for p in (self.keepalived, self.conntrackd):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        if links_down:
            for ifname in ("lan", "wan", "sync"):
                self.ns.run("ip", "link", "set", ifname, "down", check=False)

    def kill_all(self) -> None:
        vpid = self.vrrp_child_pid()
        if vpid:
            _kill(vpid)
        for p in (self.keepalived, self.conntrackd):
            if p is not None:
                if p.poll() is None:
                    p.kill()
                p.wait()

    @staticmethod
    def read(path: str) -> str:
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return ""

    def diagnostics(self) -> str:
        return (f"--- {self.name} ({self.impl}) keepalived:\n{self.read(self.klog)[-3000:]}\n"
                f"--- script:\n{self.read(self.script_log)[-3000:]}\n"
                f"--- conntrackd log:\n{self.read(self.log)[-3000:]}\n")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class VipWatch:
    """``ip monitor address`` in a router's namespace, started before a failover: the
    CLOCK_MONOTONIC time at which both VIPs had appeared there (:attr:`at`)."""

    def __init__(self, r: Router) -> None:
        self.proc = r.ns.popen("ip", "-o", "-4", "monitor", "address", stdout=subprocess.PIPE,
                               text=True)
        self.at: float | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        seen = set()
        for line in self.proc.stdout:
            if line.startswith("Deleted"):
                continue
            for vip in (VIP_LAN, VIP_WAN):
                if f"inet {vip}/24" in line:
                    seen.add(vip)
            if len(seen) == 2:
                self.at = time.monotonic()
                self.done.set()
                return

    def wait(self, timeout: float) -> float:
        if not self.done.wait(timeout):
            raise TimeoutError("the VIPs did not move")
        assert self.at is not None
        return self.at

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.thread.join(5)


@dataclass
class Failover:
    """What a failover did to the connections.

    ``vip_after``: seconds from the crash of the primary until both VIPs were on the
    backup; ``data_after``: per connection, seconds from the VIP move until it passed data
    again (``None``: it did not within the timeout); ``script``: seconds the backup's
    ``primary-backup.sh primary`` took (``None`` without one); ``dropped``: packets the
    backup dropped as invalid."""
    vip_after: float
    data_after: list[float | None]
    script: float | None
    dropped: int

    @property
    def kept(self) -> int:
        return sum(t is not None for t in self.data_after)

    @property
    def all_back_after(self) -> float | None:
        """Seconds from the VIP move until every connection passed data (None if one never did)."""
        if not self.data_after or None in self.data_after:
            return None
        return max(self.data_after)  # type: ignore[type-var]


class EchoClient:
    """The client side of :mod:`haecho` in the client namespace."""

    def __init__(self, ns: NetNS) -> None:
        self.proc = ns.popen(sys.executable, ECHO, "client", SERVER, str(PORT),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}

    def send(self, **cmd) -> None:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("echo client died")
        return json.loads(line)

    def call(self, **cmd) -> dict:
        self.send(**cmd)
        return self.reply()

    def open(self, n: int) -> int:
        return self.call(cmd="open", n=n)["open"]

    def probe(self, timeout: float) -> list[bool]:
        return self.call(cmd="probe", timeout=timeout)["alive"]

    def watch(self, timeout: float, every: float = 0.02) -> list[float | None]:
        return self.call(cmd="watch", timeout=timeout, every=every)["times"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def ours_pairs() -> list[tuple[str, str]]:
    """(primary, backup) pairs with our conntrackd, ours and mixed (the C pair is
    ``("c", "c")``)."""
    return [("ours", "ours"), ("c", "ours"), ("ours", "c")]


class HATopo:
    """The pair (see the module docstring); ``with HATopo("c", "c") as t: ...``."""

    def __init__(self, primary: str | None = "c", backup: str | None = "c", *,
                 advert_int: int = 1, extra_sync: str = "") -> None:
        self.dir = tempfile.mkdtemp(prefix="ha-topo-")
        os.chmod(self.dir, 0o755)
        self.advert_int = advert_int
        self.extra_sync = extra_sync
        self.sw = NetNS("ha-sw")
        self.cli = NetNS("ha-cli")
        self.srv = NetNS("ha-srv")
        self.r1 = Router(self, "r1", primary)
        self.r2 = Router(self, "r2", backup)
        self.routers = (self.r1, self.r2)
        self.server: subprocess.Popen | None = None
        self.client: EchoClient | None = None

    @property
    def namespaces(self) -> list[NetNS]:
        return [self.sw, self.cli, self.srv, self.r1.ns, self.r2.ns]

    # --- building ---------------------------------------------------------------------
    def create(self, timeout: float = 30.0) -> "HATopo":
        try:
            for ns in self.namespaces:
                ns.create()
            self._links()
            self._routers()
            self.server = self.srv.popen(sys.executable, ECHO, "server", SERVER, str(PORT),
                                         stdout=subprocess.PIPE, text=True)
            assert self.server.stdout.readline().strip() == "ready"
            for r in self.routers:
                r.start_conntrackd()
            for r in self.routers:
                r.start_keepalived()
            wait_for(self.r1.has_vip, timeout, "r1 did not become master")
            wait_for(lambda: self._script_done(self.r1, "primary"), timeout,
                     "primary-backup.sh primary did not finish on r1")
            if self.r2.bin is not None:
                wait_for(lambda: self._script_done(self.r2, "backup"), timeout,
                         "primary-backup.sh backup did not finish on r2")
            self.client = EchoClient(self.cli)
        except BaseException:
            self.close()
            raise
        return self

    def _script_done(self, r: Router, state: str) -> bool:
        return f" {state} exit " in r.read(r.script_log)

    def _veth(self, a: NetNS, aname: str, b: NetNS, bname: str) -> None:
        a.run("ip", "link", "add", aname, "type", "veth", "peer", "name", bname,
              "netns", b.name)
        a.run("ip", "link", "set", aname, "up")
        b.run("ip", "link", "set", bname, "up")

    def _links(self) -> None:
        sw = self.sw
        for br in ("brlan", "brwan"):
            sw.run("ip", "link", "add", br, "type", "bridge", "mcast_snooping", "0")
            sw.run("ip", "link", "set", br, "up")
        ports = [(self.cli, "lan", "brlan", "cli"), (self.srv, "wan", "brwan", "srv")]
        for r in self.routers:
            ports += [(r.ns, "lan", "brlan", f"{r.name}l"), (r.ns, "wan", "brwan", f"{r.name}w")]
        for ns, ifname, br, port in ports:
            self._veth(ns, ifname, sw, port)
            sw.run("ip", "link", "set", port, "master", br)
        self._veth(self.r1.ns, "sync", self.r2.ns, "sync")
        self.cli.run("ip", "addr", "add", f"{CLIENT}/24", "dev", "lan")
        self.cli.run("ip", "route", "add", "default", "via", VIP_LAN)
        self.srv.run("ip", "addr", "add", f"{SERVER}/24", "dev", "wan")
        for r in self.routers:
            a = ROUTERS[r.name]
            r.ns.run("ip", "addr", "add", f"{a['lan']}/24", "dev", "lan")
            r.ns.run("ip", "addr", "add", f"{a['wan']}/24", "dev", "wan")
            r.ns.run("ip", "addr", "add", f"{a['sync']}/24", "dev", "sync")

    def _routers(self) -> None:
        for r in self.routers:
            ns = r.ns
            ns.nft(RULESET)
            ns.sysctl("net.ipv4.ip_forward", 1)
            for conf in ("all", "default", "lan", "wan"):
                ns.sysctl(f"net.ipv4.conf.{conf}.rp_filter", 0)
            ns.sysctl("net.netfilter.nf_conntrack_tcp_loose", 0)
            got = ns.run("sysctl", "-n", "net.netfilter.nf_conntrack_tcp_loose").stdout.strip()
            assert got == "0", got

    # --- scenario steps ---------------------------------------------------------------
    def open_connections(self, n: int) -> int:
        assert self.client is not None
        return self.client.open(n)

    def wait_backup_learned(self, n: int, timeout: float = 30.0) -> None:
        """Until the backup's external cache holds the ``n`` established flows."""
        wait_for(lambda: self.r2.external_flows() >= n, timeout,
                 f"backup learned {self.r2.external_flows()} of {n} flows", every=0.1)

    def failover(self, timeout: float = 20.0, every: float = 0.02, busy: bool = False) -> Failover:
        """Crash the primary (:meth:`Router.crash`), wait for the VIPs on the backup, then
        send on every connection (a token each ``every`` s) until each passes data again
        or ``timeout`` s have passed. ``busy``: the connections send from the crash on
        (their lost segments put TCP into retransmission backoff before the VIPs move)
        instead of from the VIP move on."""
        assert self.client is not None
        watch = VipWatch(self.r2)
        try:
            # "ip monitor" subscribes within milliseconds; the VIPs move seconds after the
            # crash (VRRP's master-down interval), so nothing is missed
            crashed = time.monotonic()
            self.r1.crash()
            if busy:  # after the crash: no echo can come back before the VIPs move
                self.client.send(cmd="watch", timeout=timeout, every=every)
            vip = watch.wait(timeout)
        finally:
            watch.close()
        if busy:
            times = self.client.reply()["times"]
        else:
            times = self.client.watch(timeout, every)
        script = None
        if self.r2.bin is not None:
            wait_for(lambda: self._script_done(self.r2, "primary"), timeout,
                     "primary-backup.sh primary did not finish on r2")
            script = self._script_time(self.r2, "primary")
        return Failover(vip - crashed, [None if t is None else t - vip for t in times],
                        script, self.r2.invalid_drops())

    def _script_time(self, r: Router, state: str) -> float:
        start = end = 0.0
        for line in r.read(r.script_log).splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] == state:
                if parts[2] == "start":
                    start = float(parts[0])
                elif parts[2] == "exit":
                    end = float(parts[0])
        return end - start

    def diagnostics(self) -> str:
        return "".join(r.diagnostics() for r in self.routers)

    # --- teardown ---------------------------------------------------------------------
    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.server is not None:
            if self.server.poll() is None:
                self.server.kill()
            self.server.wait()
        for r in self.routers:
            r.kill_all()
        for ns in self.namespaces:
            if not ns.created:
                continue
            # anything else left in our namespaces (e.g. "conntrackd -d" started by the
            # script), by pid
            for _ in range(50):
                pids = subprocess.run(["ip", "netns", "pids", ns.name], capture_output=True,
                                      text=True).stdout.split()
                if not pids:
                    break
                for pid in pids:
                    _kill(int(pid))
                time.sleep(0.02)
            ns.delete()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "HATopo":
        return self.create()

    def __exit__(self, *exc) -> None:
        self.close()
