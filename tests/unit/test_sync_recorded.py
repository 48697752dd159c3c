"""The sync protocol machines on the recorded conversations of C conntrackd 1.4.7 pairs.

``fixtures/sync`` holds what two C daemons sent each other (FTFW over multicast with a
HELLO start-up, a resync bulk, a loss window with NACK and resend; FTFW over UDP/IPv6
with a simultaneous start and ``-B``; NOTRACK over UDP with ``-n`` and ``-B``; ALARM).

* The model of the C FTFW logic (``tests/helpers/cftfw.py``), driven by the peer's
  recorded datagrams, its own local events and its timers, sends exactly what the C
  node sent, message for message (type, flags, sequence number, range, object); a
  model with one rule changed does not.
* Our NOTRACK machine sends exactly what the C nodes sent.
* Our FTFW backup, fed the C primary's datagrams, applies every state message, NACKs
  the loss window as the C backup did and never acknowledges what it did not receive.
* The C model backup, fed what our FTFW primary sends for the same local events, ends
  with the external cache the C backup had.
* Our ALARM backup, fed the C primary's datagrams, holds at commit time exactly the
  entries the C backup committed (refreshes and ``CacheTimeout`` expiry).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from conntrack_tools.conntrackd.sync.alarm import AlarmMachine
from conntrack_tools.conntrackd.sync.common import CacheOp
from conntrack_tools.conntrackd.sync.ftfw import FtfwMachine
from conntrack_tools.conntrackd.sync.notrack import NotrackMachine
from conntrack_tools.conntrackd.wire import constants as K
from conntrack_tools.conntrackd.wire.codec import decode_datagram
from ctnetlink.decode import decode_flow

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import syncreplay as R  # noqa: E402
from helpers.cftfw import CFtfw  # noqa: E402
from helpers.syncsim import flow_key  # noqa: E402
from helpers.syncwire import sidecar  # noqa: E402

FTFW = {"ftfw-multicast": {"window": 5, "b_resync": True},
        "ftfw-udp6": {"window": 20, "b_resync": False}}


def first_seq(name: str, node: str) -> int:
    return R.headers(R.conversation(name)[node][:1])[0][2]


def backup_model(name: str, model=CFtfw):
    """A model of node B and its run: B starts with its first message (StartupResync)
    or a second before its first alive timer."""
    conv = R.conversation(name)
    rec = conv["B"]
    opts = FTFW[name]
    start = rec[0][0] if opts["b_resync"] else rec[0][0] - 1
    m = model(None, seq=first_seq(name, "B"), start=start, window=opts["window"],
              startup_resync=opts["b_resync"])
    events = [(t, lambda mm, now: mm.request_resync())
              for t in R.requests(name, "B", K.NET_F_RESYNC)[1 if opts["b_resync"] else 0:]]
    inputs = [x for x in conv["A"] if x[0] >= start]
    return m, inputs, events, rec, start


@pytest.mark.parametrize("name", FTFW)
def test_the_c_model_backup_sends_what_the_c_backup_sent(name: str) -> None:
    m, inputs, events, rec, start = backup_model(name)
    got = R.replay_matching(m, inputs, events, rec, until=R.capture_end(name), start=start)
    assert got is not None, R.replay_matching.closest
    assert len(R.headers(rec)) >= 7


@pytest.mark.parametrize("name", FTFW)
def test_the_c_model_primary_sends_what_the_c_primary_sent(name: str) -> None:
    conv = R.conversation(name)
    src, events, drop = R.primary_script(name)
    start = conv["A"][0][0] - 1  # its first ALIVE|HELLO comes from the alive timer
    m = CFtfw(src, seq=first_seq(name, "A"), start=start, window=FTFW[name]["window"])
    inputs = [x for x in conv["B"] if x[0] >= start]
    got = R.replay_matching(m, inputs, events, conv["A"], until=R.capture_end(name),
                            start=start, drop=drop)
    assert got is not None, R.replay_matching.closest
    kinds = {(h[0], h[1]) for h in R.headers(conv["A"])}
    assert len(kinds) >= 5  # data, ACK, ALIVE, HELLO variants


class _WindowResetByAlive(CFtfw):
    """A plausible misreading of the C code: the alive ACK also resets the window."""

    def tick(self, now: float) -> list:
        acked = now >= self.alive_at and self.ack_from_set
        out = super().tick(now)
        if acked:
            self.window = self.window_size
        return out


def test_the_replay_tells_a_wrong_model() -> None:
    m, inputs, events, rec, start = backup_model("ftfw-multicast", _WindowResetByAlive)
    assert R.replay_matching(m, inputs, events, rec, until=R.capture_end("ftfw-multicast"),
                             start=start) is None


# --- NOTRACK: ours is the reference's, message for message ---------------------------------

def test_our_notrack_backup_sends_what_the_c_backup_sent() -> None:
    name = "notrack-udp"
    conv = R.conversation(name)
    rec = conv["B"]
    start = rec[0][0] - 1
    m = NotrackMachine(None, seq=first_seq(name, "B"))
    m.tick(start)
    events = [(t, lambda mm, now: mm.request_resync())
              for t in R.requests(name, "B", K.NET_F_RESYNC)]
    got = R.replay_matching(m, [x for x in conv["A"] if x[0] >= start], events, rec,
                            until=R.capture_end(name), start=start)
    assert got is not None, R.replay_matching.closest
    _, actions = got
    data = [m for _, d in conv["A"] if _ >= start for m in decode_datagram(d) if m.type <= 5]
    ops = [a for a in actions if type(a) is CacheOp]
    assert [(a.op, flow_key(a.obj)) for a in ops] == [
        (("new", "update", "delete")[m.type % 3], flow_key(m.payload)) for m in data]
    assert m.stats.lost == 0 and m.stats.malformed == 0


def test_our_notrack_primary_sends_what_the_c_primary_sent() -> None:
    name = "notrack-udp"
    conv = R.conversation(name)
    src, events, drop = R.primary_script(name)
    start = conv["A"][0][0] - 1
    m = NotrackMachine(src, seq=first_seq(name, "A"))
    m.tick(start)
    got = R.replay_matching(m, [x for x in conv["B"] if x[0] >= start], events, conv["A"],
                            until=R.capture_end(name), start=start, drop=drop)
    assert got is not None, R.replay_matching.closest


# --- our FTFW machine against the C daemons ---------------------------------------------------

def test_our_ftfw_backup_on_the_c_primarys_datagrams() -> None:
    name = "ftfw-multicast"
    conv = R.conversation(name)
    rec_b = conv["B"]
    start = rec_b[0][0]
    m = FtfwMachine(None, seq=first_seq(name, "B"), window=5, startup_resync=True)
    inputs = [x for x in conv["A"] if x[0] >= start]
    sent, actions = R.replay(m, inputs, [], until=R.capture_end(name), start=start)
    received = [msg for _, d in inputs for msg in decode_datagram(d)]
    data = [msg for msg in received if msg.type <= 5]
    ops = [a for a in actions if type(a) is CacheOp]
    # every state message applied once, in order, with the C receiver's semantics
    assert [(a.op, a.expect, a.obj) for a in ops] == [
        (("new", "update", "delete")[msg.type % 3], msg.type >= 3, msg.payload) for msg in data]
    assert not any(a.inject for a in ops)
    ours = R.headers(sent)
    seqs = {msg.seq for msg in received}
    acks = [(h[3], h[4]) for h in ours if h[0] == 10 and h[1] & K.NET_F_ACK]
    nacks = [(h[3], h[4]) for h in ours if h[0] == 10 and h[1] & K.NET_F_NACK]
    assert acks
    for frm, to in acks:  # never acknowledges what did not arrive
        assert all(s in seqs for s in range(frm, to + 1)), (frm, to)
    lost = [n for n in range(min(seqs), max(seqs)) if n not in seqs]
    assert lost and nacks == [(lost[0], lost[-1])]  # the C backup's NACK 95491-95496
    assert (lost[0] % 100000, lost[-1] % 100000) == (95491, 95496)
    theirs = R.headers(rec_b)
    assert ("NACK", nacks[0]) in [("NACK", (h[3], h[4])) for h in theirs if h[1] & K.NET_F_NACK]
    assert m.stats.lost == len(lost) + 2  # the reference's count (two too many)
    # HELLO only on ALIVE; the held StartupResync left after the HELLO_BACK
    hello = [h for h in ours if h[1] & K.NET_F_HELLO]
    assert hello and all(h[0] == 10 and h[1] & K.NET_F_ALIVE for h in hello)
    assert any(h[0] == 10 and h[1] & K.NET_F_RESYNC and not h[1] & K.NET_F_HELLO for h in ours)


def _external_keys(text: str) -> set:
    keys = set()
    for line in text.splitlines():
        m = re.search(r"^\S+\s+(\d+) .*?src=(\S+) dst=(\S+)(?: sport=(\d+) dport=(\d+))?", line)
        if m:
            keys.add((int(m.group(1)), m.group(2), m.group(3), m.group(4), m.group(5)))
    return keys


def _flow_keys(flows) -> set:
    out = set()
    for f in flows:
        o = f.orig
        ports = (str(o.sport), str(o.dport)) if o.sport is not None and o.proto != 47 else (None, None)
        out.add((o.proto, str(o.src), str(o.dst), *ports))
    return out


def test_the_c_model_backup_takes_our_primarys_messages() -> None:
    """Our primary, doing what the C primary did (same cache, events, loss window),
    paired with the C model backup: the backup ends with the C backup's cache."""
    name = "ftfw-multicast"
    sc = sidecar(name)
    conv = R.conversation(name)
    src, events, drop = R.primary_script(name)
    a = FtfwMachine(src, seq=first_seq(name, "A"), window=5)
    b_start = conv["B"][0][0]
    b = CFtfw(None, seq=first_seq(name, "B"), window=5, startup_resync=True, start=b_start)
    external: dict = {}
    t, ia, ib = conv["A"][0][0] - 1, 0, 0
    queue: list = []  # (time, receiver, datagram)
    schedule = sorted(events + [(tt, "resync") for tt in R.requests(name, "B", K.NET_F_RESYNC)[1:]],
                      key=lambda x: x[0])
    end = R.capture_end(name) + 5
    counters = {"a": 0, "b": 0}
    while t < end:
        nxt = [x for x in (a.next_deadline(), b.next_deadline() if t >= b_start else b_start,
                           queue[0][0] if queue else None,
                           schedule[0][0] if schedule else None) if x is not None]
        t = max(t, min(nxt))
        if schedule and schedule[0][0] <= t:
            _, fn = schedule.pop(0)
            if fn == "resync":
                b.request_resync()
            else:
                fn(a, t)
        elif queue and queue[0][0] <= t:
            _, who, d = queue.pop(0)
            if who == "b" and t >= b_start:
                for act in b.receive(d, t):
                    if type(act) is CacheOp and not act.expect:
                        if act.op == "delete":
                            external.pop(flow_key(act.obj), None)
                        else:
                            external[flow_key(act.obj)] = act.obj
            elif who == "a":
                a.receive(d, t)
        else:
            if a.next_deadline() <= t:
                a.tick(t)
            if t >= b_start and b.next_deadline() <= t:
                b.tick(t)
        for who, m, peer in (("a", a, "b"), ("b", b, "a")):
            if who == "b" and t < b_start:
                continue
            for d in m.flush(t):
                counters[who] += 1
                if who == "a" and any(x <= t <= y for x, y in drop):
                    continue
                queue.append((t + 0.0001, peer, d))
        queue.sort(key=lambda x: x[0])
    assert _flow_keys(external.values()) == _external_keys(sc["backup_external"])
    assert b.stats.malformed == 0


# --- ALARM ---------------------------------------------------------------------------------------

def test_our_alarm_backup_holds_what_the_c_backup_committed() -> None:
    name = "alarm-multicast"
    sc = sidecar(name)
    conv = R.conversation(name)
    conf = sc["configs"]["B"]
    refresh = int(re.search(r"RefreshTime (\d+)", conf).group(1))
    timeout = int(re.search(r"CacheTimeout (\d+)", conf).group(1))
    m = AlarmMachine(None, refresh_time=refresh, cache_timeout=timeout)
    commit = next(e["time"] for e in sc["timeline"] if "-c" in e["what"])
    external: dict = {}
    expired = []

    def apply(actions) -> None:
        for a in actions:
            if type(a) is CacheOp:
                key = flow_key(a.obj)
                if a.op == "delete":
                    external.pop(key, None)
                    if a.expired:
                        expired.append(key)
                else:
                    external[key] = a.obj

    for t, d in conv["A"]:
        deadline = m.next_deadline()
        while deadline is not None and deadline <= min(t, commit):
            apply(m.tick(deadline))
            deadline = m.next_deadline()
        if t <= commit:
            apply(m.receive(d, t))
    while (d := m.next_deadline()) is not None and d <= commit:
        apply(m.tick(d))
    table = [decode_flow(bytes.fromhex(h), 0, len(h) // 2) for h in sc["backup_table"]["conntrack"]]
    assert table and _flow_keys(external.values()) == _flow_keys(table)
    assert m.stats.lost == 0 and m.stats.malformed == 0
    msgs = [msg for _, d in conv["A"] for msg in decode_datagram(d)]
    assert all(msg.type <= 2 and msg.flags == 0 for msg in msgs)  # ALARM: no control messages
