"""Capture real kernel messages and the reference tool's output for the format tests.

Run as root: ``python3 tests/helpers/capture_formats.py``.
Everything happens in a private network namespace ``fmtcap``: entries are created with
the reference ``conntrack -I``, real traffic runs over ``lo`` (UDP, TCP, ICMP and an
FTP-style PASV reply for an expectation), then the table is dumped twice: once with our
raw netlink socket (messages kept as hex) and once by ``/usr/sbin/conntrack`` with each
output option. Events are recorded the same way. The result is written to
``tests/unit/data/formats_kernel.json`` which ``test_formats_kernel.py`` replays without
root. The label map used is stored in the file as well.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "unit" / "data" / "formats_kernel.json"
NETNS = "fmtcap"
CONNTRACK = "/usr/sbin/conntrack"
LABEL_CONF = Path("/etc/xtables/connlabel.conf")
LABELS = "0 eth0-in\n1 eth1-in\n2 web\n5 high\n"

LIST_OPTIONS = ["", "extended", "id", "extended,id", "ktimestamp", "labels", "xml",
                "xml,ktimestamp", "xml,labels", "save", "extended,id,ktimestamp,labels"]
EVENT_OPTIONS = ["", "extended,id", "ktimestamp", "xml", "save", "labels"]

CREATE = [
    "-I -s 1.1.1.1 -d 2.2.2.2 -p tcp --sport 10 --dport 20 --state ESTABLISHED -u SEEN_REPLY,ASSURED -t 500 -m 16",
    "-I -s 2001:db8::1 -d 2001:db8::2 -p udp --sport 10 --dport 20 -t 500 -w 9",
    "-I -s 10.9.9.1 -d 10.9.9.2 -p udp --sport 1 --dport 2 -t 300 --reply-zone 5",
    "-I -s 10.9.9.3 -d 10.9.9.2 -p udp --sport 1 --dport 2 -t 300 --orig-zone 6",
    "-I -s 1.1.1.9 -d 2.2.2.2 -p tcp --sport 10 --dport 20 --state SYN_SENT2 -u SEEN_REPLY -t 500 --dst-nat 3.3.3.3:80",
    "-I -s 1.1.1.2 -d 2.2.2.2 -p udp --sport 10 --dport 20 -t 500 --src-nat 4.4.4.4 -m 7 -w 3",
    "-I -s 2001:db8::1 -d 2001:db8::2 -p tcp --sport 10 --dport 20 --state ESTABLISHED -u SEEN_REPLY,ASSURED -t 500 --dst-nat [2001:db8::3]:8080",
    "-I -s 1.1.1.1 -d 2.2.2.2 -p icmp --icmp-type 8 --icmp-code 0 --icmp-id 1226 -t 500 -w 10 -u SEEN_REPLY",
    "-I -s 2001:db8::1 -d 2001:db8::2 -p icmpv6 --icmpv6-type 128 --icmpv6-code 0 --icmpv6-id 77 -t 500",
    "-I -s 1.1.1.1 -d 2.2.2.2 -p sctp --sport 100 --dport 200 --state ESTABLISHED --orig-vtag 1234 --reply-vtag 5678 -t 500",
    "-I -s 1.1.1.1 -d 2.2.2.2 -p gre --srckey 16 --dstkey 32 -t 500",
    "-I -s 1.1.1.1 -d 2.2.2.2 -p dccp --sport 1 --dport 2 --state OPEN --role client -t 500",
    "-I -s 2001::9 -d 2001::2 -p 200 -t 500 -w 10",
    "-I -s 0.0.0.0 -d 224.0.0.22 -p 2 -t 500 -w 10",
    "-I -s 1.1.1.3 -d 2.2.2.3 -p udplite --sport 5 --dport 6 -t 500 -m 4294967295",
    "-I -s 1.1.1.2 -d 2.2.2.2 -p tcp --sport 10 --dport 20 --state TIME_WAIT -t 500 --label-add eth0-in,high",
    "-I -s 1.1.1.4 -d 2.2.2.2 -p tcp --sport 10 --dport 20 --state CLOSE_WAIT -t 500 --label-add web -m 66",
    "-I -s ::ffff:1.2.3.4 -d ::ffff:5.6.7.8 -p udp --sport 7 --dport 8 -t 500",
    "-I -s ::1.2.3.4 -d fe80::1:2 -p tcp --sport 7 --dport 8 --state SYN_RECV -t 500",
    "-I -s 2001:db8:0:1:0:0:0:1 -d 2001:0:0:1::1 -p udp --sport 7 --dport 8 -t 500",
]

TRAFFIC = r'''
import socket, struct, threading, time
# UDP request/response on 127.0.0.1 and ::1
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    srv = socket.socket(fam, socket.SOCK_DGRAM); srv.bind((host, 6671))
    cli = socket.socket(fam, socket.SOCK_DGRAM); cli.sendto(b"hello", (host, 6671))
    data, peer = srv.recvfrom(100); srv.sendto(b"world!", peer); cli.recvfrom(100)
    cli.sendto(b"x", (host, 6672))   # unreplied
# TCP connection left open
lst = socket.socket(); lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("127.0.0.1", 2222)); lst.listen()
c = socket.create_connection(("127.0.0.1", 2222)); s, _ = lst.accept()
c.sendall(b"abc"); s.recv(10); s.sendall(b"defg"); c.recv(10)
# ICMP echo (raw socket)
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
pkt = struct.pack("!BBHHH", 8, 0, 0, 4660, 1) + b"12345678"
pkt = pkt[:2] + struct.pack("!H", csum(pkt)) + pkt[4:]
r.sendto(pkt, ("127.0.0.1", 0)); r.settimeout(1)
try:
    r.recv(100); r.recv(100)
except OSError:
    pass
# FTP-style PASV reply through the ftp helper (port 2121): makes an expectation
fl = socket.socket(); fl.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
fl.bind(("127.0.0.1", 2121)); fl.listen()
fc = socket.create_connection(("127.0.0.1", 2121)); fs, _ = fl.accept()
fs.sendall(b"220 hi\r\n"); fc.recv(100)
fc.sendall(b"PASV\r\n"); fs.recv(100)
fs.sendall(b"227 Entering Passive Mode (127,0,0,1,200,10).\r\n"); fc.recv(100)
f6l = socket.socket(socket.AF_INET6); f6l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
f6l.bind(("::1", 2121)); f6l.listen()
f6c = socket.create_connection(("::1", 2121)); f6s, _ = f6l.accept()
f6s.sendall(b"220 hi\r\n"); f6c.recv(100)
f6c.sendall(b"EPSV\r\n"); f6s.recv(100)
f6s.sendall(b"229 Entering Extended Passive Mode (|||51210|)\r\n"); f6c.recv(100)
time.sleep(0.3)
'''

NFT = '''
table inet fmtcap {
  ct helper ftp-std { type "ftp" protocol tcp; }
  chain out { type filter hook output priority 0; policy accept;
    tcp dport 2121 ct helper set "ftp-std"
    udp dport 6671 ct label set 10
    ct label 60 counter
    ct state new,established,related counter accept
  }
  chain in { type filter hook input priority 0; policy accept;
    ct state new,established,related counter accept
  }
}
'''

INNER = r'''
import json, sys, time
sys.path.insert(0, sys.argv[1])
from nfnl.socket import NetlinkSocket
from nfnl.message import build_nfnl
mode = sys.argv[2]
NLM_F_REQUEST, NLM_F_DUMP = 1, 0x300
def dump(mtype, family=0):
    with NetlinkSocket() as s:
        out = []
        for buf, off, ln in s.dump(build_nfnl(mtype, NLM_F_REQUEST | NLM_F_DUMP, family, b"", s.next_seq())):
            out.append(bytes(buf[off:off + ln]).hex())
        return out
if mode == "dump":
    print(json.dumps({"ct": dump(0x101), "exp4": dump(0x201, 2), "exp6": dump(0x201, 10),
                      "stats": dump(0x104), "expstats": dump(0x203)}))
elif mode == "count":
    with NetlinkSocket() as s:
        s.send(build_nfnl(0x105, NLM_F_REQUEST, 0, b"", s.next_seq()))
        print(json.dumps([bytes(s.recv()).hex()]))
elif mode == "events":
    import select
    s = NetlinkSocket(groups=0x7)
    s.settimeout(0.2)
    deadline = time.time() + float(sys.argv[3])
    out = []
    while time.time() < deadline:
        try:
            d = s.recv()
        except OSError:
            continue
        if d:
            out.append(bytes(d).hex())
    print(json.dumps(out))
'''


def sh(cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, shell=True, check=check, capture_output=True, text=True, **kw)


def ns(cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return sh(f"ip netns exec {NETNS} {cmd}", check=check, **kw)


def ref(args: str) -> str:
    r = ns(f"{CONNTRACK} {args}", check=False)
    return r.stdout


def capture(out_path: Path) -> dict:
    """Build the namespace, create entries and traffic, record everything (root only)."""
    created_label_conf = False
    if not LABEL_CONF.exists():
        LABEL_CONF.parent.mkdir(parents=True, exist_ok=True)
        LABEL_CONF.write_text(LABELS)
        created_label_conf = True
    labels = {}
    for line in LABEL_CONF.read_text().splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and not line.startswith("#"):
            labels.setdefault(int(parts[0], 0), parts[1].strip())
    sh(f"ip netns del {NETNS}", check=False)
    sh(f"ip netns add {NETNS}")
    inner = Path(tempfile.mkdtemp()) / "inner.py"
    inner.write_text(INNER)
    traffic = inner.with_name("traffic.py")
    traffic.write_text(TRAFFIC)
    try:
        ns("ip link set lo up")
        ns("sysctl -qw net.netfilter.nf_conntrack_acct=1 net.netfilter.nf_conntrack_timestamp=1")
        ns("nft -f -", input=NFT)
        notes = []
        for c in CREATE:
            r = ns(f"{CONNTRACK} {c}", check=False)
            if r.returncode:
                notes.append(f"{c}: {r.stderr.strip()}")
        ns(f"python3 {traffic}")
        time.sleep(1.1)   # let delta-time move away from 0 for some entries
        data: dict = {"labels": {str(k): v for k, v in labels.items()}, "tz": "UTC", "notes": notes,
                      "kernel": os.uname().release}
        dumped = json.loads(ns(f"python3 {inner} {ROOT} dump").stdout)
        data["list"] = {"messages": dumped["ct"], "outputs": {}}
        for opt in LIST_OPTIONS:
            o = f"-o {opt}" if opt else ""
            data["list"]["outputs"][opt] = ns(f"env TZ=UTC {CONNTRACK} -L {o}", check=False).stdout
        data["expect"] = {"messages4": dumped["exp4"], "messages6": dumped["exp6"], "outputs": {
            "": ref("-L expect"), "xml": ref("-L expect -o xml"),
            "ipv6": ref("-L expect -f ipv6"), "ipv6,xml": ref("-L expect -f ipv6 -o xml")}}
        data["stats"] = {"messages": dumped["stats"], "output": ref("-S"),
                         "exp_messages": dumped["expstats"], "exp_output": ref("-S expect"),
                         "count_messages": json.loads(ns(f"python3 {inner} {ROOT} count").stdout),
                         "count_output": ref("-C"),
                         "proc": ns("cat /proc/net/stat/nf_conntrack").stdout,
                         "proc_output": ns(f"setpriv --reuid 65534 --regid 65534 --clear-groups "
                                           f"{CONNTRACK} -S", check=False).stdout}
        # events: reference monitors and our socket listen while the table changes
        procs = {}
        for opt in EVENT_OPTIONS:
            o = f"-o {opt}" if opt else ""
            procs[opt] = subprocess.Popen(
                f"exec ip netns exec {NETNS} env TZ=UTC {CONNTRACK} -E {o}", shell=True,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ours = subprocess.Popen(f"exec ip netns exec {NETNS} python3 {inner} {ROOT} events 4",
                                shell=True, stdout=subprocess.PIPE, text=True)
        time.sleep(0.7)
        for c in ("-I -s 5.5.5.5 -d 6.6.6.6 -p tcp --sport 10 --dport 20 --state ESTABLISHED -t 500 -m 3",
                  "-U -s 5.5.5.5 -m 5",
                  "-I -s 2001:db8::5 -d 2001:db8::6 -p udp --sport 1 --dport 2 -t 500 --label-add web",
                  "-D -s 5.5.5.5", "-D -s 2001:db8::5"):
            ns(f"{CONNTRACK} {c}", check=False)
        ns(f"python3 -c \"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
           f"s.sendto(b'x', ('127.0.0.1', 6690))\"")
        time.sleep(0.5)
        ns(f"{CONNTRACK} -D -p udp --dport 6690", check=False)
        time.sleep(0.5)
        data["events"] = {"datagrams": json.loads(ours.communicate()[0]), "outputs": {}}
        for opt, p in procs.items():
            p.send_signal(signal.SIGINT)
            data["events"]["outputs"][opt] = p.communicate(timeout=5)[0]
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(data, indent=1) + "\n")
        return data
    finally:
        sh(f"ip netns del {NETNS}", check=False)
        if created_label_conf:
            print(f"note: created {LABEL_CONF} (left in place for later captures)", file=sys.stderr)


if __name__ == "__main__":
    d = capture(DATA)
    print(f"wrote {DATA}: {len(d['list']['messages'])} entries, notes: {d['notes']}")
