"""Replaying the recorded sync conversations (``fixtures/sync``) into protocol machines.

:func:`conversation` splits a datagram corpus into what node A and node B sent (time,
bytes). :class:`RecordedSource` is an internal cache made of the objects a recorded
node sent (rendered from their recorded attributes, typed by their current status,
bulk order as recorded). :func:`replay` drives one machine on a virtual clock with the
peer's recorded datagrams, local events and the machine's own timers, grouping what
happens within a millisecond into one loop iteration (one transmit run), as the C
daemon's loop does; it returns what the machine sent. :func:`headers` reduces
datagrams to comparable message tuples.
"""
from __future__ import annotations

import bisect
import copy
import struct
import sys

from conntrack_tools.conntrackd.wire.codec import decode_datagram

from .syncsim import flow_key
from .syncwire import sidecar

EPS = 0.001
_HDR = struct.Struct(">BBHI")
NEW, ALIVE, DEAD = 0, 1, 2


def conversation(name: str) -> dict[str, list[tuple[float, bytes]]]:
    """{"A": [(time, datagram)], "B": [...]} of a datagram scenario."""
    sc = sidecar(name)
    a_addrs = set(sc["nodes"]["A"]["sync"])
    out: dict[str, list] = {"A": [], "B": []}
    for d in sc["datagrams"]:
        out["A" if d["src"] in a_addrs else "B"].append((d["time"], bytes.fromhex(d["payload"])))
    return out


def object_id(msg) -> tuple:
    """The identity of the object a decoded state message is about."""
    p = msg.payload
    if msg.type <= 2:
        return flow_key(p)
    m = p.master
    return ("exp", m.src, m.dst, m.proto, m.sport, m.dport)


def headers(datagrams: list[tuple[float, bytes]]) -> list[tuple]:
    """(type, flags, seq, from, to, object id or None) of every message sent."""
    out = []
    for _, d in datagrams:
        for m in decode_datagram(d):
            out.append((m.type, m.flags, m.seq, m.from_seq, m.to_seq,
                        object_id(m) if m.type <= 5 else None))
    return out


def timed_headers(datagrams: list[tuple[float, bytes]]) -> list[tuple]:
    return [(t, h) for t, d in datagrams for h in headers([(t, d)])]


class RecordedSource:
    """An internal cache of recorded objects: id -> [status, expectation?, payload]."""

    def __init__(self, order: list) -> None:
        self.objects: dict = {}
        self.order = {oid: i for i, oid in enumerate(order)}
        self.released: list = []

    def set(self, oid, status: int, expect: bool, payload: bytes) -> None:
        self.objects[oid] = [status, expect, payload]

    def render(self, ref, seq: int, flags: int) -> bytes | None:
        obj = self.objects.get(ref)
        if obj is None:
            return None
        status, expect, payload = obj
        vt = 0x10 | (status + (3 if expect else 0))
        return _HDR.pack(vt, flags, 8 + len(payload), seq) + payload

    def refs(self):
        alive = [oid for oid, o in self.objects.items() if o[0] != DEAD]
        return sorted(alive, key=lambda oid: self.order.get(oid, len(self.order)))

    def hold(self, ref) -> None:
        pass

    def release(self, ref) -> None:
        self.released.append(ref)


def replay(machine, inputs: list[tuple[float, bytes]], events: list[tuple[float, object]],
           until: float, start: float, drop: list[tuple[float, float]] = (),
           sends: list[float] | None = None) -> tuple[list, list]:
    """Run ``machine`` from ``start`` to ``until`` in time order: ``inputs`` are received
    at their times, ``events`` (``fn(now)``) happen at theirs, timers fire when due,
    and the transmit queue runs after each step. Returns (datagrams sent outside the
    ``drop`` windows as (time, bytes), actions).

    Recorded times are send times and the C loop reads every ready socket before it
    runs its timers and then its transmit queue. With ``sends`` (the recorded send
    times of the node being modelled) the replay follows that order: a datagram sent
    before the node's next transmission is read before it (with a timer that was due
    already, and with the other datagrams of that iteration)."""
    inputs = sorted(inputs, key=lambda x: x[0])
    events = sorted(events, key=lambda x: x[0])
    sent: list = []
    actions: list = []
    i = j = 0
    now = start

    def next_send(t: float) -> float:
        if not sends:
            return t
        k = bisect.bisect_left(sends, t)
        return sends[k] if k < len(sends) else float("inf")

    def run_tx() -> None:
        for d in machine.flush(now):
            if not any(a <= now <= b for a, b in drop):
                sent.append((now, d))

    run_tx()
    steps = 0
    while True:
        steps += 1
        assert steps < 100_000, "the machine does not advance its timers"
        t_in = inputs[i][0] if i < len(inputs) else None
        t_ev = events[j][0] if j < len(events) else None
        deadline = machine.next_deadline()
        cands = [x for x in (t_in, t_ev, deadline) if x is not None]
        if not cands or max(now, min(cands)) > until:
            break
        first_in = t_in is not None and (t_ev is None or t_in <= t_ev) and (
            deadline is None or t_in <= deadline or (sends and t_in < next_send(deadline)))
        if first_in:
            now = max(now, t_in)
            barrier = min(next_send(t_in), t_in + 0.001) if sends else t_in
            while i < len(inputs) and inputs[i][0] <= max(barrier, now):
                if inputs[i][0] > now and inputs[i][0] >= barrier:
                    break
                actions.extend(machine.receive(inputs[i][1], now))
                i += 1
            deadline = machine.next_deadline()
            if deadline is not None and deadline <= now:
                actions.extend(machine.tick(now))
        elif deadline is not None and (t_ev is None or deadline <= t_ev):
            now = max(now, deadline)
            actions.extend(machine.tick(now))
        else:
            now = max(now, t_ev)
            events[j][1](now)
            j += 1
        run_tx()
    return sent, actions


def replay_matching(machine, inputs: list[tuple[float, bytes]],
                    events: list[tuple[float, object]], recorded: list[tuple[float, bytes]],
                    until: float, start: float, drop: list[tuple[float, float]] = (),
                    window: float = 0.001, jitter: float = 0.015) -> tuple[list, list] | None:
    """Like :func:`replay`, but where the recording cannot order two things (a datagram
    and a timer, a local event, or two datagrams read in one loop iteration or not,
    within ``window`` seconds; a timer firing up to ``jitter`` seconds early or late,
    as the C daemon's do) every order is tried, and a run whose messages equal
    ``recorded`` (compared with :func:`headers`) is returned; None if there is none.
    Events are called as ``fn(machine, now)`` (the machine is copied at branches).
    ``until`` is the end of the capture."""
    want = headers(recorded)
    want_t = [t for t, _ in timed_headers(recorded)]
    end = until
    best: list = [0, None, None, None]
    inputs = sorted(inputs, key=lambda x: x[0])
    events = sorted(events, key=lambda x: x[0])

    def tx(st: dict) -> bool:
        """Run the transmit queue and compare with the recording. The run takes the
        recorded time of the message it should produce (the timers then follow the
        recorded node, not the model's approximation of it)."""
        n = st["n"]
        now = st["now"]
        if n < len(want) and abs(want_t[n] - now) <= jitter:
            now = want_t[n]
        for d in st["m"].flush(now):
            if any(a <= now <= b for a, b in drop):
                continue
            st["sent"].append((now, d))
            got = headers([(now, d)])
            n = st["n"]
            if n == len(want) and now >= end - jitter:
                continue  # sent after the capture ended
            if want[n:n + len(got)] != got:
                if n >= best[0]:
                    best[:] = [n, now, got, want[n:n + len(got)]]
                return False
            st["n"] = n + len(got)
        st["budget"][0] -= 1
        return st["budget"][0] > 0

    def step(st: dict, what: str) -> bool:
        m = st["m"]
        if what == "in":
            t, data = inputs[st["i"]]
            st["now"] = max(st["now"], t)
            st["actions"].extend(m.receive(data, st["now"]))
            st["i"] += 1
        elif what == "ev":
            t, fn = events[st["j"]]
            st["now"] = max(st["now"], t)
            fn(m, st["now"])
            st["j"] += 1
        else:
            st["now"] = max(st["now"], m.next_deadline())
            st["actions"].extend(m.tick(st["now"]))
        return True

    def candidates(st: dict) -> list[tuple[float, str]]:
        cands = []
        if st["i"] < len(inputs):
            cands.append((inputs[st["i"]][0], "in"))
        if st["j"] < len(events):
            cands.append((events[st["j"]][0], "ev"))
        d = st["m"].next_deadline()
        if d is not None:
            cands.append((max(d, st["now"]), "timer"))
        return sorted(c for c in cands if c[0] <= until)

    def tolerance(kind: str) -> float:
        return jitter if kind == "timer" else window

    def run(st: dict, pending: bool) -> dict | None:
        """Depth-first over the possible orders; ``pending``: steps since the last
        transmit run (the iteration may go on or end with the run)."""
        while True:
            cands = candidates(st)
            if pending:
                branches = ["tx"] + [k for t, k in cands if t - st["now"] <= tolerance(k)]
            elif not cands:
                return st if st["n"] == len(want) else None
            else:
                t0, k0 = cands[0]
                branches = [k for t, k in cands
                            if t - t0 <= max(tolerance(k), tolerance(k0))]
            if len(branches) == 1:
                k = branches[0]
                if k == "tx":
                    if not tx(st):
                        return None
                    pending = False
                else:
                    step(st, k)
                    pending = True
                continue
            for k in branches:  # ambiguous: try every order
                branch = dict(st, m=copy.deepcopy(st["m"]), sent=list(st["sent"]),
                              actions=list(st["actions"]))
                if k == "tx":
                    if not tx(branch):
                        continue
                    done = run(branch, False)
                else:
                    step(branch, k)
                    done = run(branch, True)
                if done is not None:
                    return done
            return None

    st = {"m": machine, "i": 0, "j": 0, "now": start, "sent": [], "actions": [], "n": 0,
          "budget": [200_000]}
    if not tx(st):
        return None
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    done = run(st, False)
    replay_matching.closest = best  # where the best run went wrong (for messages)
    return None if done is None else (done["sent"], done["actions"])


def capture_end(name: str) -> float:
    conv = conversation(name)
    return max(conv["A"][-1][0], conv["B"][-1][0]) + 0.0005


def requests(name: str, node: str, flag: int) -> list[float]:
    """Times of the control messages with ``flag`` a node sent of its own (``-n``,
    ``StartupResync``): the events that make a model send them."""
    return [t for t, h in timed_headers(conversation(name)[node])
            if h[0] == 10 and h[1] & flag]


def primary_script(name: str) -> tuple[RecordedSource, list, list]:
    """What node A of a recording had and did: its internal cache (the objects of its
    first bulk, in the recorded bulk order), the local events behind the data messages
    it sent on its own (set the object's state, enqueue it), its ``-B`` requests, and
    the events of the window in which its sync output was dropped (from the
    timeline). Returns (source, events ``fn(machine, now)``, drop windows)."""
    import re

    sc = sidecar(name)
    conv = conversation(name)
    rec_a, rec_b = conv["A"], conv["B"]
    trig = [t for t, d in rec_b for m in decode_datagram(d)
            if m.type == 10 and m.flags & (0x02 | 0x04)]  # RESYNC, NACK
    local_bulks = []
    for e in sc["timeline"]:
        if e["what"].startswith("A: conntrackd -B"):
            tb = min(t for t, _ in rec_a if t > e["time"])
            local_bulks.append(tb)
            trig.append(tb - 1e-7)
    fresh, payloads, responses = [], {}, []
    for t, d in rec_a:
        response = any(0 <= t - x <= 0.001 for x in trig)
        for m, raw in zip(decode_datagram(d), walk_raw(d)):
            if m.type > 5:
                continue
            oid = object_id(m)
            payloads.setdefault(oid, raw)
            (responses if response else fresh).append((t, m.type, oid, raw))
    last = max(t for t, *_ in responses)
    order = [oid for t, _, oid, _ in responses if 0 <= last - t <= 0.002]
    first = min(t for t, *_ in responses)
    src = RecordedSource(order)
    for t, mtype, oid, raw in responses:
        if t - first <= 0.001:
            src.set(oid, NEW, mtype >= 3, raw)

    def event(oid, mtype: int, payload: bytes):
        def fn(machine, now):
            machine.source.set(oid, mtype % 3, mtype >= 3, payload)
            machine.enqueue(oid, now, mtype % 3 == DEAD)
        return fn

    events = [(t, event(oid, mt, p)) for t, mt, oid, p in fresh]
    events += [(tb - 1e-7, lambda machine, now: machine.send_bulk()) for tb in local_bulks]
    drop = []
    down = [e["time"] for e in sc["timeline"] if "output dropped" in e["what"]]
    up = [e["time"] for e in sc["timeline"] if "output restored" in e["what"]]
    if down:
        drop = [(down[0], up[0])]
        for e in sc["timeline"]:
            if not down[0] < e["time"] < up[0]:
                continue
            m = (re.search(r"-s (\S+) .*--sport (\d+)", e["what"])
                 or re.search(r"set on (\S+):(\d+)", e["what"]))
            if m:
                oid = next(o for o in order if o[0] != "exp" and str(o[0]) == m.group(1)
                           and o[3] == int(m.group(2)))
                events.append((e["time"], event(oid, 0 if " -I " in e["what"] else 1,
                                                payloads[oid])))
    return src, events, drop


def walk_raw(data: bytes) -> list[bytes]:
    """The raw payloads of a datagram's messages."""
    from conntrack_tools.conntrackd.wire.codec import walk

    return [m.payload for m in walk(data)]
