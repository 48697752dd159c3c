"""The sync machines on the daemon's caches: the primary's internal cache (entries as the
kernel reported them) replicated into the backup's external cache through two FTFW
machines over a lossy simulated link, with the adapters of ``sync/source.py``."""
from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

from conntrack_tools.conntrackd.cache import DEAD, Cache, ExpectCache, parse_expect
from conntrack_tools.conntrackd.entry import parse
from conntrack_tools.conntrackd.sync.common import CacheOp
from conntrack_tools.conntrackd.sync.ftfw import FtfwMachine
from conntrack_tools.conntrackd.sync.source import CacheSource, apply
from conntrack_tools.conntrackd.wire.codec import decode_datagram
from ctnetlink.encode import encode_expect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.syncwire import SCENARIOS, sidecar, streams  # noqa: E402


def internal_caches() -> tuple[Cache, ExpectCache]:
    ct, exp = Cache("internal"), ExpectCache("internal")
    for name in SCENARIOS:
        for h in sidecar(name)["primary_table"]["conntrack"]:
            raw = bytes.fromhex(h)
            p = parse(raw, 0, len(raw))
            if p.key not in ct:
                ct.add(p)
    for d in streams("ftfw-multicast"):  # the expectation the C primary sent
        for m in decode_datagram(d):
            if m.type == 3:
                body = encode_expect(m.payload)
                raw = struct.pack("=IHHIIBBH", 20 + len(body), 0x200, 0, 0, 0, 2, 0, 0) + body
                p = parse_expect(raw, 0, len(raw))
                if p.key not in exp:
                    exp.add(p)
    return ct, exp


def origin(f) -> tuple:
    o = f.orig
    keys = (None, None) if o.proto == 47 else (o.sport, o.dport)
    return (str(o.src), str(o.dst), o.proto, *keys, o.icmp_type, o.icmp_code, o.icmp_id)


def run(a: FtfwMachine, b: FtfwMachine, ext: Cache, ext_exp: ExpectCache, until: float,
        loss: float = 0.0, seed: int = 1, start: float = 0.0) -> list:
    """Exchange datagrams (each lost with ``loss``) and timers until ``until``."""
    rng = random.Random(seed)
    sent: list = []

    def deliver(src: FtfwMachine, dst: FtfwMachine, now: float) -> None:
        for d in src.flush(now):
            if src is a:
                sent.append(d)
            if rng.random() < loss:
                continue
            for act in dst.receive(d, now):
                if type(act) is CacheOp:
                    apply(act, ext, ext_exp)

    t = start
    while t < until:
        for m in (a, b):
            if m.next_deadline() <= t:
                m.tick(t)
        for _ in range(3):  # answers to answers within the step
            deliver(a, b, t)
            deliver(b, a, t)
        t += 0.05
    return sent


def test_internal_cache_replicated_into_the_external_cache() -> None:
    ct, exp = internal_caches()
    assert len(ct) >= 20 and len(exp) >= 1
    a = FtfwMachine(CacheSource(ct, exp), seq=100, window=20)
    b = FtfwMachine(None, seq=9000, window=20)
    ext, ext_exp = Cache("external"), ExpectCache("external")
    sent = run(a, b, ext, ext_exp, 30.0, loss=0.2)
    # the same flows (GRE keys do not travel: the C sender has no builder for them)
    assert sorted(map(origin, (ct.flow(k) for k in ct))) == sorted(
        map(origin, (ext.flow(k) for k in ext)))
    assert len(ext_exp) == len(exp)
    msgs = [m for d in sent for m in decode_datagram(d) if m.type <= 2]
    for key in ext:  # the backup holds what the messages said (what sync carries)
        got = ext.flow(key)
        last = [m.payload for m in msgs if m.payload.orig == got.orig][-1]
        assert got == last
    # a destroyed entry: its DEL reaches the backup, the cache lets it go once acknowledged
    key = next(iter(ct))
    assert len(ext) == len(ct)
    ct.hold(key)
    ct.mark_dead(key)
    a.enqueue(CacheSource(ct).ref(ct, key))
    ct.put(key)
    assert key in ct  # still referenced by the transmit queue
    run(a, b, ext, ext_exp, 40.0, start=30.0)
    assert key not in ct  # acknowledged: released
    assert len(ext) == len(ct)  # and deleted on the backup
    assert all(ct.status(k) != DEAD for k in ct)
