"""The batched sending path of a bulk: :meth:`CacheSource.render_many`, the FTFW run of
objects (``FtfwMachine._send_objects``), ``enqueue_many``, the batched holds and
releases, the ACK fast path of the resend queue. Each is compared with the per-entry
path it replaces: same datagrams, same resend queue, same cache references."""
from __future__ import annotations

import random
import sys
from pathlib import Path

from conntrack_tools.conntrackd.cache import DEAD, Cache
from conntrack_tools.conntrackd.entry import parse
from conntrack_tools.conntrackd.sync.common import Ctl, Packer, bulk
from conntrack_tools.conntrackd.sync.ftfw import FtfwMachine
from conntrack_tools.conntrackd.sync.notrack import NotrackMachine
from conntrack_tools.conntrackd.sync.source import CacheSource
from conntrack_tools.conntrackd.wire import constants as K

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unit.test_sync_source import internal_caches  # noqa: E402


class PerEntrySource:
    """A :class:`CacheSource` without the batched methods (the machine's fallback)."""

    def __init__(self, inner: CacheSource) -> None:
        self.inner = inner

    def render(self, ref, seq: int, flags: int):
        return self.inner.render(ref, seq, flags)

    def refs(self):
        return self.inner.refs()

    def hold(self, ref) -> None:
        self.inner.hold(ref)

    def release(self, ref) -> None:
        self.inner.release(ref)


def vary(cache: Cache, n: int) -> None:
    """``n`` more entries: copies of the cached ones with another source address."""
    base = [cache.message(k) for k in cache]
    i = 0
    while i < n:
        raw = bytearray(base[i % len(base)])
        p = parse(bytes(raw), 0, len(raw))
        p.key = p.key[:1] + (0x0A630000 + i).to_bytes(4, "big") + p.key[5:]
        cache.add(p)
        i += 1


def test_render_many_is_render_of_each() -> None:
    ct, exp = internal_caches()
    vary(ct, 300)
    src = CacheSource(ct, exp)
    for wt in (False, True):
        for commit in (False, True):
            src.window_tracking, src.commit_timeout = wt, commit
            refs = src.refs()
            rng = random.Random(7)
            rng.shuffle(refs)  # layouts interleaved
            refs.insert(5, (ct, b"\x01gone"))  # not cached
            key = refs[9][1]
            ct.hold(key)
            ct.mark_dead(key)  # a DEL
            seq = 0xFFFFFFF0  # the numbers wrap around
            want = []
            for ref in refs:
                msg = src.render(ref, seq, K.NET_F_HELLO_BACK)
                want.append(msg)
                if msg is not None:
                    seq = (seq + 1) & 0xFFFFFFFF
            assert src.render_many(refs, 0xFFFFFFF0, K.NET_F_HELLO_BACK) == want
            assert want[5] is None and sum(m is None for m in want) == 1
            ct.put(key)


def test_a_broken_entry_is_skipped() -> None:
    ct, _ = internal_caches()
    src = CacheSource(ct)
    refs = src.refs()
    key = refs[3][1]
    ct._d[key] = ct._d[key][:12]  # a value no layout or decoder can read
    out = src.render_many(refs, 10, 0)
    assert out[3] is None
    assert out[:3] == [src.render(r, 10 + i, 0) for i, r in enumerate(refs[:3])]
    assert out[4] == src.render(refs[4], 13, 0)


def setup(batched: bool, rsq_size: int = 1000) -> tuple[FtfwMachine, FtfwMachine, Cache]:
    ct, exp = internal_caches()
    vary(ct, 500)
    src = CacheSource(ct, exp)
    a = FtfwMachine(src if batched else PerEntrySource(src), seq=0xFFFFFF00, window=50,
                    resend_queue_size=rsq_size, bulk_on_start=False)
    b = FtfwMachine(None, seq=77, window=50, bulk_on_start=False)
    t = 0.0
    while not (a.hello == "done" and b.hello == "done"):
        for x, y in ((a, b), (b, a)):
            if x.next_deadline() <= t:
                x.tick(t)
            for d in x.flush(t):
                y.receive(d, t)
        t += 0.1
    return a, b, ct


def script(a: FtfwMachine, b: FtfwMachine, ct: Cache) -> list:
    """A bulk with queued and unacknowledged objects, dead and vanished entries, control
    messages in the queue, parts, ACKs, a NACK; what the sender sent and kept."""
    trace: list = []
    keys = list(ct)

    def ref(key):
        return (ct, key)

    def step(now: float, limit: int | None = None, lose: bool = False) -> None:
        out = a.flush(now, limit)
        trace.append(out)
        if not lose:
            for d in out:
                b.receive(d, now)
        for d in b.flush(now):
            a.receive(d, now)
        trace.append(sorted((k[1], v) for k, v in a.rsq.items() if type(k) is not Ctl))
        trace.append(sorted(ct._refs.items()))
        trace.append(len(ct))

    for key in keys[:40]:
        a.enqueue(ref(key))
    step(1.0, lose=True)  # sent, not acknowledged: in the resend queue
    for key in keys[30:60]:
        a.enqueue(ref(key))  # some of them again, some new
    a.tick(2.5)  # an ALIVE in the queue
    ct.hold(keys[70])
    ct.mark_dead(keys[70])  # destroyed, its DEL queued
    a.enqueue(ref(keys[70]), dead=True)
    ct.put(keys[70])
    bulk(a)
    ct.hold(keys[100])
    ct.mark_dead(keys[100])  # dies while the bulk waits
    ct.put(keys[100])
    ct.delete(keys[101])  # vanishes
    for i, t in enumerate((3.0, 3.1, 3.2)):
        step(t, 150)
        for key in keys[200 + 10 * i:205 + 10 * i]:
            a.enqueue(ref(key))  # changed while the bulk goes out
    step(3.3)
    b.tick(4.5)
    step(4.5)
    a.tick(5.0)
    step(5.0)
    b.tick(9.0)
    step(9.0)
    trace.append(a.stats.as_dict())
    trace.append(a.rsq_full)
    trace.append(a.seq)
    return trace


def test_the_batched_bulk_sends_what_the_per_entry_path_sends() -> None:
    for rsq_size in (100000, 64):  # 64: the resend queue overflows
        a, b, ct = setup(True, rsq_size)
        a2, b2, ct2 = setup(False, rsq_size)
        got, want = script(a, b, ct), script(a2, b2, ct2)
        assert got == want
        assert sum(len(x) for x in want[0::4]) > 20  # datagrams went out


def reference_rsq_range(m: FtfwMachine, from_seq: int, to_seq: int, resend: bool) -> None:
    """The walk of the resend queue (what the fast path must equal)."""
    hit = []
    for entry, (seq, _) in m.rsq.items():
        if (seq - from_seq) & 0xFFFFFFFF >= 0x80000000:
            continue
        if (to_seq - seq) & 0xFFFFFFFF >= 0x80000000:
            break
        hit.append(entry)
    for entry in hit:
        del m.rsq[entry]
        if resend:
            m.txq[entry] = None
        elif type(entry) is not Ctl:
            m.source.release(entry)


class Counter:
    def __init__(self) -> None:
        self.released: list = []

    def release(self, ref) -> None:
        self.released.append(ref)

    def hold(self, ref) -> None:
        pass


def test_rsq_range_fast_path_is_the_walk() -> None:
    rng = random.Random(3)
    for _ in range(300):
        ms: list[FtfwMachine] = []
        base = rng.choice((0, 0xFFFFFF80, 5000))
        entries = []
        seq = base
        for i in range(rng.randrange(1, 60)):
            seq = (seq + rng.choice((1, 1, 1, 2, 5))) & 0xFFFFFFFF
            entries.append((Ctl(K.NET_F_ACK) if rng.random() < 0.1 else ("obj", i), seq))
        for _ in range(2):
            m = FtfwMachine(Counter(), seq=1)
            for e, s in entries:
                m.rsq[e] = (s, 0.0)
            ms.append(m)
        lo = entries[rng.randrange(len(entries))][1] if rng.random() < 0.8 else \
            (base + rng.randrange(-3, 80)) & 0xFFFFFFFF
        hi = (lo + rng.randrange(0, 70)) & 0xFFFFFFFF
        resend = rng.random() < 0.3
        ms[0]._rsq_range(lo, hi, resend)
        reference_rsq_range(ms[1], lo, hi, resend)
        assert list(ms[0].rsq.items()) == list(ms[1].rsq.items())
        assert list(ms[0].txq) == list(ms[1].txq)
        assert ms[0].source.released == ms[1].source.released


def test_hold_many_and_put_many_are_hold_and_put_of_each() -> None:
    caches = []
    for _ in range(2):
        ct, _ = internal_caches()
        keys = list(ct)
        ct.hold(keys[0])
        ct.hold(keys[1])
        ct.mark_dead(keys[1])
        caches.append((ct, keys))
    (c1, keys), (c2, _) = caches
    some = keys[:10] + [b"\x01absent"]
    c1.hold_many(some)
    for k in some:
        c2.hold(k)
    assert c1._refs == c2._refs
    c1.put_many(keys[:3])
    for k in keys[:3]:
        c2.put(k)
    assert c1._refs == c2._refs and c1._d == c2._d
    c1.put_many(keys[:3])  # keys[1] was dead: it goes
    for k in keys[:3]:
        c2.put(k)
    assert c1._refs == c2._refs and c1._d == c2._d and keys[1] not in c1
    # into an empty reference table
    c3 = internal_caches()[0]
    keys3 = list(c3)
    c3.hold_many(keys3 + [b"\x01absent"])
    assert c3._refs == dict.fromkeys(keys3, 1)
    assert c3.live_keys() == keys3
    c3.mark_dead(keys3[2])
    assert c3.live_keys() == keys3[:2] + keys3[3:] and c3.status(keys3[2]) == DEAD


def test_packer_add_many_is_add_of_each() -> None:
    rng = random.Random(5)
    for _ in range(200):
        size = rng.choice((100, 300, 1472))
        before = [bytes(rng.randrange(8, 90)) for _ in range(rng.randrange(0, 4))]
        msgs = [bytes([i % 256]) * rng.randrange(8, 120) for i in range(rng.randrange(0, 60))]
        one, many = Packer(size), Packer(size)
        for m in before:
            one.add(m)
            many.add(m)
        for m in msgs:
            one.add(m)
        many.add_many(list(msgs))
        assert (one.out, one.cur, one.used) == (many.out, many.cur, many.used)
        assert one.done() == many.done()


def notrack_script(batched: bool) -> list:
    ct, exp = internal_caches()
    vary(ct, 300)
    src = CacheSource(ct, exp)
    m = NotrackMachine(src if batched else PerEntrySource(src), seq=0xFFFFFF80)
    keys = list(ct)
    trace: list = []
    m.tick(0.0)
    m.enqueue((ct, keys[3]))
    bulk(m)
    m.tick(1.5)  # an ALIVE among the objects
    ct.hold(keys[50])
    ct.mark_dead(keys[50])
    m.enqueue((ct, keys[50]), dead=True)
    ct.put(keys[50])
    ct.delete(keys[60])
    for t, limit in ((2.0, 100), (2.1, 7), (2.2, None)):
        trace.append(m.flush(t, limit))
        trace.append(sorted(ct._refs.items()))
        trace.append(len(ct))
    trace.append(m.seq)
    return trace


def test_the_batched_notrack_bulk_sends_what_the_per_entry_path_sends() -> None:
    got, want = notrack_script(True), notrack_script(False)
    assert got == want
    assert sum(len(d) for d in want[0:9:3]) > 10 and want[-3] == []  # all released
