"""The batched receive path (FTFW ``batch_states`` + ``source.apply_batch``) against the
general one (one CacheOp per message + ``source.apply``): the same protocol effects,
counters, answers, cache contents and stale-rule bookkeeping, message for message."""
from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conntrack_tools.conntrackd.cache import Cache
from conntrack_tools.conntrackd.entry import parse
from conntrack_tools.conntrackd.sync.common import CacheOp, Heard, StateBatch
from conntrack_tools.conntrackd.sync.ftfw import FtfwMachine
from conntrack_tools.conntrackd.sync.source import apply, apply_batch
from conntrack_tools.conntrackd.wire import constants as K
from conntrack_tools.conntrackd.wire.codec import decode_datagram

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.syncsim import ctl, data  # noqa: E402
from helpers.syncwire import SCENARIOS, sidecar  # noqa: E402

from conntrack_tools.conntrackd.sync.entries import render  # noqa: E402

PEER = 0x10000000
HELLO, HELLO_BACK, ACK, NACK, ALIVE = (
    K.NET_F_HELLO, K.NET_F_HELLO_BACK, K.NET_F_ACK, K.NET_F_NACK, K.NET_F_ALIVE)


def ready(batched: bool) -> FtfwMachine:
    m = FtfwMachine(None, seq=1000, window=5, bulk_on_start=False)
    m.batch_states = batched
    m.tick(0.0)
    hello = decode_datagram(m.flush(0.0)[0])[0]
    m.receive(ctl(ACK | HELLO_BACK, PEER, hello.seq, hello.seq), 0.1)
    m.flush(0.1)
    return m


def flat(actions: list) -> list:
    out = []
    for a in actions:
        out += a.ops() if type(a) is StateBatch else [a]
    return out


def state(m: FtfwMachine) -> tuple:
    return (m.stats.as_dict(), m.tracker.last, m.tracker.set, m.window, m.ack_from,
            m.ack_from_set, m.peer_hello, m.peer_episode, m.resync_wanted, m.fence)


def sent(m: FtfwMachine, now: float) -> list:
    return [(x.type, x.flags, x.seq, x.from_seq, x.to_seq) for d in m.flush(now)
            for x in decode_datagram(d)]


# one message of the peer's stream: what happens to the sequence number, and what it is
_MESSAGE = st.tuples(
    st.sampled_from(["next"] * 6 + ["gap", "dup", "old"]),
    st.sampled_from(["data"] * 6 + ["hello", "hello_back", "alive", "ack", "bad_payload",
                                    "bad_version", "exp_type"]),
    st.integers(0, 40), st.integers(0, 2))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_MESSAGE, min_size=1, max_size=8), max_size=12),
       st.integers(0, 3))
def test_batched_receive_does_what_the_general_path_does(datagrams, cut) -> None:
    a, b = ready(False), ready(True)
    seq = PEER
    t = 1.0
    for msgs in datagrams:
        buf = b""
        for how, kind, flow, mtype in msgs:
            seq = {"next": seq + 1, "gap": seq + 3, "dup": seq, "old": seq - 5}[how]
            if kind == "data":
                m = data(flow, seq, 0, mtype)
            elif kind == "hello":
                m = data(flow, seq, HELLO, mtype)
            elif kind == "hello_back":
                m = data(flow, seq, HELLO_BACK, mtype)
            elif kind == "alive":
                m = ctl(ALIVE, seq)
            elif kind == "ack":
                m = ctl(ACK, seq, 1000, 1001)
            elif kind == "bad_payload":
                good = data(flow, seq, 0, mtype)
                m = good[:8] + struct.pack(">HH", 10, 0) + good[12:]
            elif kind == "bad_version":
                m = b"\x20" + data(flow, seq)[1:]
            else:
                m = b"\x13" + data(flow, seq)[1:]
            buf += m
        if cut:  # a truncated tail
            buf = buf[:len(buf) - cut]
        t += 0.1
        ra, rb = a.receive(buf, t), b.receive(buf, t)
        assert flat(rb) == ra
        assert state(b) == state(a)
        assert sent(b, t) == sent(a, t)
        a.tick(t + 1.0), b.tick(t + 1.0)
        assert sent(b, t + 1.0) == sent(a, t + 1.0)


def test_a_run_of_data_messages_is_one_batch() -> None:
    m = ready(True)
    buf = b"".join(data(i, PEER + 1 + i, 0, i % 3) for i in range(6))
    acts = m.receive(buf + ctl(ALIVE, PEER + 7), 1.0)
    assert [type(x) for x in acts] == [StateBatch, Heard]
    assert [op.op for op in acts[0].ops()] == ["new", "update", "delete"] * 2
    assert m.tracker.last == PEER + 7


def test_disable_external_cache_keeps_one_cacheop_per_message() -> None:
    m = FtfwMachine(None, seq=1000, window=5, bulk_on_start=False,
                    disable_external_cache=True)
    m.batch_states = True
    m.receive(ctl(ALIVE, PEER), 0.5)
    acts = m.receive(data(1, PEER + 1) + data(2, PEER + 2), 1.0)
    assert [type(x) for x in acts] == [CacheOp, CacheOp, Heard]
    assert acts[0].inject


def _messages() -> list[tuple[int, bytes]]:
    """(type, payload) of sync messages for every recorded primary entry (NAT, IPv6,
    helpers, ICMP, SCTP...), as our primary renders them."""
    out = []
    for name in SCENARIOS:
        for h in sidecar(name)["primary_table"]["conntrack"]:
            raw = bytes.fromhex(h)
            p = parse(raw, 0, len(raw))
            c = Cache("x")
            c.add(p)
            for key in c:
                msg = render(key, c.get(key), 0, 1)
                out.append(msg[8:])
    return out


def test_apply_batch_equals_apply_message_by_message() -> None:
    payloads = _messages()
    assert len(payloads) > 20
    rng = random.Random(7)
    m = ready(False)
    items = []
    for _ in range(2000):
        body = rng.choice(payloads)
        mtype = rng.choice((0, 1, 1, 1, 2))
        items += [(op_type, op.payload, op.shape, op.values)
                  for op_type, op in [(mtype, x) for x in m.receive(
                      struct.pack(">BBHI", 0x10 | mtype, 0, 8 + len(body), m.tracker.last + 1)
                      + body, 1.0) if type(x) is CacheOp]]
    assert len(items) == 2000
    assert len({t for t, *_ in items}) == 3
    now = [1000.0]
    one = Cache("external", limit=8, clock=lambda: now[0])
    many = Cache("external", limit=8, clock=lambda: now[0])
    for i in range(0, len(items), 17):
        now[0] += 1.5
        chunk = items[i:i + 17]
        for mtype, body, shape, values in chunk:
            apply(CacheOp(("new", "update", "delete")[mtype], False, False, body, shape,
                          values), one)
        apply_batch(chunk, many)
    assert many._d == one._d
    assert many.stats.as_dict() == one.stats.as_dict()
    assert (many.active, many.stats.add_fail_enospc > 0) == (one.active, True)
