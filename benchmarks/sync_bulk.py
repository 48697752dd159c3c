"""The bulk resync inside one process: render every internal cache entry, receive and store.

``python benchmarks/sync_bulk.py [--flows 100000] [--profile send|receive]`` fills an
internal cache (the stored form of the daemon, :mod:`conntrack_tools.conntrackd.cache`)
with ``--flows`` entries shaped like the kernel's (the UDP flows of
``benchmarks/bench_conntrackd_sync.py``: 10.99.x.y clients to one server, mark, timeout;
``--mix`` takes the layouts of the recorded primaries' tables instead: TCP, UDP, ICMP,
SCTP, GRE, IPv6, NAT, helpers), then runs what a bulk (``-n`` answered by the peer)
costs each side without sockets:

* **send**: an FTFW machine on the cache (:class:`~..sync.source.CacheSource`) sends its
  bulk: every entry rendered to a sync message and packed into datagrams;
* **receive**: a second FTFW machine receives the datagrams, and every state message is
  applied to an external cache (:func:`~..sync.source.apply`);
* **ACKs**: the sender processes the receiver's acknowledgements (its resend queue
  emptied, the cache references released).

Printed: CPU µs per message of each side (best of ``--repeat`` runs; process time, which
other processes on a shared machine disturb less than wall time) and the total for the
bulk. ``--profile`` runs one side under cProfile instead. The C pair needs 0.10-0.16 s
for the same 100,000-flow resync over a veth link (``bench_conntrackd_sync.py``).
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
from pathlib import Path

from conntrack_tools.conntrackd.cache import Cache
from conntrack_tools.conntrackd.entry import parse
from conntrack_tools.conntrackd.kernel import DROP_ALWAYS
from conntrack_tools.conntrackd.sync.common import CacheOp, StateBatch
from conntrack_tools.conntrackd.sync.ftfw import DONE, FtfwMachine
from conntrack_tools.conntrackd.sync.source import CacheSource, apply, apply_batch

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ("ftfw-multicast", "ftfw-udp6", "notrack-udp", "alarm-multicast")


def kernel_messages() -> list[bytes]:
    """The conntrack messages of the recorded primaries' tables (kernel encoding)."""
    out = []
    for name in SCENARIOS:
        sc = json.loads((ROOT / "fixtures" / "sync" / f"{name}.json").read_text())
        out += [bytes.fromhex(h) for h in sc["primary_table"]["conntrack"]]
    return out


def _vary(key: bytes, i: int) -> bytes:
    """``key`` (a tuple's field values) with the first 4 bytes after the template id and
    the two before the last field changed: another client address and port."""
    return key[:1] + (0x0A630000 + i).to_bytes(4, "big") + key[5:]


def fill(cache: Cache, n: int, mix: bool) -> None:
    """``n`` entries in ``cache``, derived from kernel messages by changing the source
    address of the original tuple (the reply tuple follows when it is mirrored)."""
    msgs = kernel_messages()
    if not mix:  # the UDP/IPv4 flows of bench_conntrackd_sync.py: orig, reply, status,
        # timeout, mark, use, id
        msgs = [m for m in msgs if len(m) == 164 and m[16] == 2][:1]
    protos = []
    for raw in msgs:
        p = parse(raw, 0, len(raw))
        if p.template is not None:
            protos.append(p)
    i = 0
    while len(cache) < n:
        p = protos[i % len(protos)]
        p.key = _vary(p.key, i)
        p.attrs = dict(p.attrs)
        cache.add(p)
        i += 1


def handshake(a: FtfwMachine, b: FtfwMachine) -> None:
    t = 0.0
    while not (a.hello == DONE and b.hello == DONE):
        for x, y in ((a, b), (b, a)):
            if x.next_deadline() is not None and x.next_deadline() <= t:
                x.tick(t)
            for d in x.flush(t):
                y.receive(d, t)
        t += 0.1
        assert t < 10


def send(a: FtfwMachine) -> list[bytes]:
    a.send_bulk()
    return a.flush(20.0)


def receive(b: FtfwMachine, datagrams: list[bytes], ext: Cache) -> None:
    """What the daemon does (``replication._actions``): batches applied."""
    for d in datagrams:
        for act in b.receive(d, 20.0):
            t = type(act)
            if t is StateBatch:
                apply_batch(act.items, ext)
            elif t is CacheOp:
                apply(act, ext)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=100000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mix", action="store_true")
    ap.add_argument("--unbatched", action="store_true",
                    help="receive one CacheOp per message (the general pipeline)")
    ap.add_argument("--profile", choices=("send", "receive"))
    a = ap.parse_args()
    internal = Cache("internal", drop=DROP_ALWAYS, limit=1 << 22)
    fill(internal, a.flows, a.mix)
    best_send = best_recv = best_ack = float("inf")
    for _ in range(a.repeat):
        m_a = FtfwMachine(CacheSource(internal), seq=1, window=300, bulk_on_start=False)
        m_b = FtfwMachine(None, seq=1 << 20, window=300, bulk_on_start=False)
        m_b.batch_states = not a.unbatched
        handshake(m_a, m_b)
        ext = Cache("external", drop=DROP_ALWAYS, limit=1 << 22)
        if a.profile == "send":
            cProfile.runctx("send(m_a)", globals(), {"send": send, "m_a": m_a},
                            "/tmp/sync_bulk.prof")
            pstats.Stats("/tmp/sync_bulk.prof").sort_stats("tottime").print_stats(25)
            return
        t = time.process_time()
        dgrams = send(m_a)
        best_send = min(best_send, time.process_time() - t)
        if a.profile == "receive":
            cProfile.runctx("receive(m_b, d, ext)", globals(),
                            {"receive": receive, "m_b": m_b, "d": dgrams, "ext": ext},
                            "/tmp/sync_bulk.prof")
            pstats.Stats("/tmp/sync_bulk.prof").sort_stats("tottime").print_stats(25)
            return
        t = time.process_time()
        receive(m_b, dgrams, ext)
        best_recv = min(best_recv, time.process_time() - t)
        assert len(ext) == len(internal), (len(ext), len(internal))
        acks = m_b.flush(20.0)
        t = time.process_time()
        for d in acks:
            m_a.receive(d, 20.0)
        best_ack = min(best_ack, time.process_time() - t)
        assert len(m_a.rsq) < 300, len(m_a.rsq)  # the last window: the alive timer ACKs it
    n = len(internal)
    print(f"{n} flows, {len(dgrams)} datagrams")
    print(f"send (render + pack):     {best_send * 1e6 / n:6.2f} us/msg  {best_send:6.3f} s")
    print(f"sender: the peer's ACKs:  {best_ack * 1e6 / n:6.2f} us/msg  {best_ack:6.3f} s")
    print(f"receive (decode + store): {best_recv * 1e6 / n:6.2f} us/msg  {best_recv:6.3f} s")


if __name__ == "__main__":
    main()
