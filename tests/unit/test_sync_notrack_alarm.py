"""The NOTRACK and ALARM state machines, case by case (no sockets, no sleeps)."""
from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conntrack_tools.conntrackd.sync.alarm import AlarmMachine
from conntrack_tools.conntrackd.sync.common import CacheOp, Heard, KernelDump, Log
from conntrack_tools.conntrackd.sync.notrack import NotrackMachine
from conntrack_tools.conntrackd.wire import constants as K
from conntrack_tools.conntrackd.wire.codec import decode_datagram, flow_message

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.syncsim import FlowSource, ctl, data, make_flow  # noqa: E402

ACK, ALIVE, HELLO, RESYNC = K.NET_F_ACK, K.NET_F_ALIVE, K.NET_F_HELLO, K.NET_F_RESYNC


def sent(datagrams):
    return [m for d in datagrams for m in decode_datagram(d)]


# --- NOTRACK ------------------------------------------------------------------------------------

def test_notrack_alive_after_a_second_of_silence() -> None:
    src = FlowSource()
    m = NotrackMachine(src, seq=7)
    m.tick(10.0)  # start-up arms the timer
    assert m.next_deadline() == 11.0 and m.flush(10.0) == []
    m.enqueue(src.add(make_flow(1)))
    out = sent(m.flush(10.5))
    assert [(x.type, x.flags, x.seq) for x in out] == [(0, 0, 7)]
    m.tick(11.0)  # re-armed by the run at 10.5
    assert m.flush(11.0) == []
    m.tick(11.5)
    assert [(x.type, x.flags, x.seq) for x in sent(m.flush(11.5))] == [(10, ALIVE, 8)]


def test_notrack_sends_each_object_once_and_releases_it() -> None:
    src = FlowSource()
    m = NotrackMachine(src, seq=1)
    r = src.add(make_flow(1))
    m.enqueue(r)
    m.enqueue(r)  # coalesced
    assert len(sent(m.flush(1.0))) == 1 and r not in src.held
    assert m.flush(1.1) == []


def test_notrack_resync_and_bulk() -> None:
    src = FlowSource()
    for i in range(3):
        src.add(make_flow(i))
    m = NotrackMachine(src, seq=1, startup_resync=True)
    assert m.tick(0.0) == [Log("notice", "resync requested")]
    out = sent(m.flush(0.0))
    assert [(x.type, x.flags, x.from_seq, x.to_seq) for x in out] == [(10, RESYNC, 0, 0)]
    acts = m.receive(ctl(RESYNC, 50), 1.0)
    assert acts == [Log("notice", "resync requested by other node"),
                    Log("notice", "sending bulk update"), Heard()]
    assert [x.type for x in sent(m.flush(1.0))] == [0, 0, 0]
    assert m.send_bulk() == [Log("notice", "sending bulk update")]
    assert len(sent(m.flush(1.1))) == 3


def test_notrack_without_internal_cache_dumps_the_kernel() -> None:
    m = NotrackMachine(None, seq=1, disable_internal_cache=True)
    acts = m.receive(ctl(RESYNC, 50), 1.0)
    assert KernelDump() in acts
    m.enqueue_message(lambda seq, flags: flow_message(0, make_flow(4), seq, flags))
    out = sent(m.flush(1.0))  # at once, not a second later as 1.4.7
    assert [(x.type, x.seq) for x in out] == [(0, 1)] and out[0].payload.orig == make_flow(4).orig


def test_notrack_tracks_sequence_numbers_for_the_statistics_only() -> None:
    m = NotrackMachine(None, seq=1)
    ops = []
    for seq in (100, 101, 105, 103):
        ops += [a for a in m.receive(data(seq, seq), 1.0) if type(a) is CacheOp]
    assert len(ops) == 4  # nothing dropped
    assert (m.stats.lost, m.stats.before) == (5, 1)  # 3 missing, counted +2 as 1.4.7


def test_notrack_refuses_ftfw_control_messages() -> None:
    m = NotrackMachine(None, seq=1, disable_external_cache=True)
    assert m.receive(ctl(ACK, 5, 1, 2), 1.0) == []
    assert (m.stats.malformed, m.stats.bad_header) == (1, 1)
    acts = m.receive(data(1, 6, HELLO), 1.0)  # FTFW data with HELLO is data
    assert [(a.op, a.inject) for a in acts if type(a) is CacheOp] == [("new", True)]


# --- ALARM --------------------------------------------------------------------------------------

def test_alarm_refresh_delays_follow_the_c_formula() -> None:
    m = AlarmMachine(None, refresh_time=5, rng=random.Random(1))
    delays = [m.delay() for _ in range(2000)]
    assert min(delays) >= 1.199999 and max(delays) <= 6.000000
    assert len({round(d - int(d), 6) for d in delays}) == 5  # 0.2 s steps minus 1 us


def test_alarm_refreshes_every_object_until_it_is_destroyed() -> None:
    src = FlowSource()
    m = AlarmMachine(src, refresh_time=2, rng=random.Random(3))
    r = src.add(make_flow(1))
    m.enqueue(r, 0.0)
    assert [x.type for x in sent(m.flush(0.0))] == [0]
    times = []
    t = 0.0
    while t < 20.0:
        t = m.next_deadline()
        m.tick(t)
        for x in sent(m.flush(t)):
            times.append(t)
            assert x.type == 0 and x.flags == 0  # still NEW: never updated
    gaps = [b - a for a, b in zip([0.0] + times, times)]
    assert len(times) >= 6 and all(1.19 <= g <= 3.0 for g in gaps)
    src.destroy(r)
    m.enqueue(r, t, dead=True)
    assert [x.type for x in sent(m.flush(t))] == [2]
    assert m.next_deadline() is None


def test_alarm_ignores_control_messages_and_counts_bad_types() -> None:
    m = AlarmMachine(None, cache_timeout=6)
    assert m.receive(ctl(ACK, 5, 1, 2), 1.0) == [Heard()]
    assert m.receive(struct.pack(">BBHI", 0x1A, 0, 8, 6), 1.0) == [Heard()]  # flags 0: data
    assert (m.stats.bad_type, m.stats.malformed) == (1, 1)
    m.receive(data(1, 10), 1.0)
    m.receive(data(1, 3), 1.0)
    assert (m.stats.lost, m.stats.before) == (0, 0)  # 1.4.7 never records a seq


def test_alarm_external_entries_expire_after_cache_timeout() -> None:
    m = AlarmMachine(None, cache_timeout=6)
    m.receive(data(1, 1), 1.0)
    m.receive(data(2, 2), 1.0)
    m.receive(data(1, 3, 0, K.NET_T_STATE_CT_UPD), 4.0)  # refreshed
    m.receive(data(3, 4), 2.0)
    m.receive(data(3, 5, 0, K.NET_T_STATE_CT_DEL), 2.5)  # deleted: no expiry
    assert m.next_deadline() == 7.0
    acts = m.tick(7.0)
    assert [(a.op, a.expired, a.obj.orig) for a in acts] == [("delete", True, make_flow(2).orig)]
    assert m.tick(9.9) == []
    assert [a.obj.orig for a in m.tick(10.0)] == [make_flow(1).orig]
    assert m.next_deadline() is None
    assert m.request_resync() == [] and m.send_bulk() == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=100), max_size=5), st.integers(0, 2))
def test_bad_input_never_raises(blobs: list[bytes], which: int) -> None:
    m = (NotrackMachine(None, seq=1), AlarmMachine(None, cache_timeout=1),
         NotrackMachine(None, seq=1, disable_internal_cache=True))[which]
    t = 0.0
    for b in blobs + [data(1, 5)[:-3], b"\x1f" + data(1, 6)[1:], data(1, 4) + b"\x10"]:
        t += 0.5
        for a in m.receive(b, t):
            if type(a) is CacheOp:
                a.obj
        m.tick(t)
        m.flush(t)
    assert m.stats.malformed >= 3
