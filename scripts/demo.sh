#!/usr/bin/env bash
# Demo on real data (as root): a private network namespace with real TCP, UDP and ICMP
# traffic, then our `conntrack -L` (plain and -o extended), the events our `conntrack -E`
# saw while the traffic ran, and our `conntrackd` in statistics mode (its cache, `-s`, and
# the destroyed-flow log after `conntrack -F`). Installs what is missing (iproute2 and nftables with apt; this
# project into .venv in the checkout, see scripts/_setup.sh) and leaves nothing behind: the
# namespace is deleted and no command outside the checkout changes.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_setup.sh
need_root
apt_install iproute2 nftables
project_venv

NS=pyconntrack-demo-$$
PY=.venv/bin/python
CT=(.venv/bin/conntrack)
ip netns add "$NS"
EVPID=
DPID=
events=$(mktemp)
dir=$(mktemp -d)
cleanup() {
    [ -n "$EVPID" ] && kill -INT "$EVPID" 2>/dev/null && wait "$EVPID" 2>/dev/null || true
    [ -n "$DPID" ] && kill -TERM "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$events" "$dir"
}
trap cleanup EXIT
ip netns exec "$NS" ip link set lo up
# The kernel tracks a namespace's packets (and sends events) only once a rule there uses
# conntrack: without it both `conntrack -L` (ours and the C tool) show nothing.
ip netns exec "$NS" nft -f - <<'NFT'
table inet demo {
    chain out { type filter hook output priority 0; ct state new counter; }
}
NFT
ip netns exec "$NS" sysctl -qw net.netfilter.nf_conntrack_acct=1  # packet and byte counters

ip netns exec "$NS" "${CT[@]}" -E -o timestamp >"$events" 2>&1 &
EVPID=$!
# wait until the listener has joined its multicast groups (no fixed sleep)
for _ in $(seq 200); do
    ip netns exec "$NS" awk '$2 == 12 && $4 == "00000007" {f = 1} END {exit !f}' /proc/net/netlink && break
    sleep 0.05
done

# our conntrackd in statistics mode, with its own configuration, lock, control socket and
# logs in a temporary directory (never /etc/conntrackd/conntrackd.conf)
cat >"$dir/conntrackd.conf" <<EOF
General {
	LockFile $dir/lock
	UNIX { Path $dir/ctl }
	LogFile $dir/conntrackd.log
	Syslog off
}
Stats {
	LogFile $dir/stats.log
}
EOF
CTD=(.venv/bin/conntrackd -C "$dir/conntrackd.conf")
ip netns exec "$NS" "${CTD[@]}" >/dev/null &
DPID=$!
for _ in $(seq 200); do [ -S "$dir/ctl" ] && break; sleep 0.05; done

ip netns exec "$NS" "$PY" - <<'PYEOF'
import socket, struct, threading
# TCP: a tiny server and a client exchanging a line over loopback
srv = socket.create_server(("127.0.0.1", 8080))
def serve():
    c, _ = srv.accept(); c.sendall(c.recv(100).upper()); c.close()
t = threading.Thread(target=serve); t.start()
with socket.create_connection(("127.0.0.1", 8080)) as c:
    c.sendall(b"hello conntrack\n"); c.recv(100)
t.join(); srv.close()
# UDP: a DNS-looking datagram and its answer
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(("127.0.0.1", 5353))
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.sendto(b"query", ("127.0.0.1", 5353))
data, peer = a.recvfrom(100); a.sendto(b"answer", peer); b.recvfrom(100)
a.close(); b.close()
# ICMP echo over IPv4 and IPv6
for fam, addr, typ in ((socket.AF_INET, "127.0.0.1", 8), (socket.AF_INET6, "::1", 128)):
    s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_ICMP if fam == socket.AF_INET else socket.IPPROTO_ICMPV6)
    body = struct.pack("!BBHHH", typ, 0, 0, 0x1234, 1) + b"ping"
    if fam == socket.AF_INET:
        csum = sum(struct.unpack("!%dH" % (len(body) // 2), body)); csum = (csum >> 16) + (csum & 0xffff)
        body = body[:2] + struct.pack("!H", ~(csum + (csum >> 16)) & 0xffff) + body[4:]
    s.sendto(body, (addr, 0)); s.close()
PYEOF

echo "### conntrack -L   (ours: .venv/bin/conntrack, in namespace $NS)"
ip netns exec "$NS" "${CT[@]}" -L
echo
echo "### conntrack -L -o extended"
ip netns exec "$NS" "${CT[@]}" -L -o extended
echo
kill -INT "$EVPID"; wait "$EVPID" || true; EVPID=
echo "### conntrack -E -o timestamp   (what the listener saw while the traffic ran)"
cat "$events"
echo
echo "### conntrackd -s   (ours, statistics mode, watching the same namespace)"
ip netns exec "$NS" "${CTD[@]}" -s
echo "### conntrackd -i   (its cache)"
ip netns exec "$NS" "${CTD[@]}" -i
echo
echo "### conntrack -F, then conntrackd's destroyed-flow log (Stats { LogFile })"
ip netns exec "$NS" "${CT[@]}" -F
want=$(ip netns exec "$NS" "${CTD[@]}" -i | wc -l)
for _ in $(seq 100); do [ "$(cat "$dir/stats.log" 2>/dev/null | wc -l)" -ge "$want" ] && break; sleep 0.05; done
cat "$dir/stats.log"
echo "### conntrackd -s   (the destroyed flows' counters are in the traffic totals)"
ip netns exec "$NS" "${CTD[@]}" -s
ip netns exec "$NS" "${CTD[@]}" -k
wait "$DPID" || true; DPID=
