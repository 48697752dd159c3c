"""A simulated sync link between two protocol machines, in virtual time (for tests).

:class:`FlowSource` is a minimal internal cache (the :class:`~..sync.common.Source`
the machines send from): objects with a status NEW / ALIVE / DEAD and a Flow, rendered
with the sync codec. :class:`Node` couples a machine, its source and an external cache
that applies the received :class:`CacheOp` actions as conntrackd.md §6.6 says.
:class:`Link` delivers datagrams in order after a latency and drops each with a
probability (seeded). :class:`Sim` runs nodes and links on one virtual clock: datagram
deliveries, the machines' deadlines and scheduled local events, a flush after each.
"""
from __future__ import annotations

import heapq
import random
from ipaddress import IPv4Address

from conntrack_tools.conntrackd.sync.common import CacheOp
from conntrack_tools.conntrackd.wire import constants as K
from conntrack_tools.conntrackd.wire.codec import SyncMessage, encode_message, flow_message
from ctnetlink.model import Flow, TcpInfo, Tuple

NEW, ALIVE, DEAD = 0, 1, 2


def ctl(flags: int, seq: int, frm: int | None = None, to: int | None = None) -> bytes:
    """A control message of a peer (with the 16-byte header for ACK/NACK/RESYNC)."""
    if flags & (K.NET_F_ACK | K.NET_F_NACK | K.NET_F_RESYNC):
        return encode_message(SyncMessage(K.NET_T_CTL, flags, seq, None, frm or 0, to or 0))
    return encode_message(SyncMessage(K.NET_T_CTL, flags, seq))


def data(i: int, seq: int, flags: int = 0, mtype: int = 0) -> bytes:
    """A state message of a peer about test flow ``i``."""
    return flow_message(mtype, make_flow(i), seq, flags)


def flow_key(f: Flow) -> tuple:
    o = f.orig
    return (o.src, o.dst, o.proto, o.sport, o.dport, o.icmp_type, o.icmp_code, o.icmp_id, f.zone)


def make_flow(i: int, mark: int | None = None) -> Flow:
    """The i-th test flow: a TCP connection 10.<i>:<port> -> 192.168.0.1:80."""
    src = IPv4Address(0x0A000000 + i // 1000)
    orig = Tuple(src=src, dst=IPv4Address("192.168.0.1"), proto=6, sport=1024 + i % 1000,
                 dport=80)
    return Flow(family=2, orig=orig, reply=orig.reversed(), status=0x0E, timeout=300,
                mark=mark, tcp=TcpInfo(state=3))


class FlowSource:
    """An internal cache of Flow objects keyed by reference."""

    def __init__(self) -> None:
        self.objects: dict = {}  # ref -> [status, flow]
        self.held: dict = {}
        self.rendered = 0

    def add(self, flow: Flow):
        ref = flow_key(flow)
        self.objects[ref] = [NEW, flow]
        return ref

    def update(self, ref, flow: Flow) -> None:
        self.objects[ref] = [ALIVE, flow]

    def destroy(self, ref) -> None:
        self.objects[ref][0] = DEAD

    # --- Source ---------------------------------------------------------------------------
    def render(self, ref, seq: int, flags: int) -> bytes | None:
        obj = self.objects.get(ref)
        if obj is None:
            return None
        self.rendered += 1
        return flow_message(obj[0], obj[1], seq, flags)

    def refs(self):
        return [r for r, (st, _) in self.objects.items() if st != DEAD]

    def hold(self, ref) -> None:
        self.held[ref] = self.held.get(ref, 0) + 1

    def release(self, ref) -> None:
        n = self.held.get(ref, 0) - 1
        if n <= 0:
            self.held.pop(ref, None)
            obj = self.objects.get(ref)
            if obj is not None and obj[0] == DEAD:
                del self.objects[ref]
        else:
            self.held[ref] = n


class Node:
    """A machine with its internal cache (source) and external cache."""

    def __init__(self, name: str, machine, source: FlowSource) -> None:
        self.name = name
        self.machine = machine
        self.source = source
        self.external: dict = {}
        self.actions: list = []
        self.sent: list[tuple[float, bytes]] = []

    def apply(self, actions: list) -> None:
        for a in actions:
            self.actions.append(a)
            if type(a) is not CacheOp or a.expect:
                continue
            f = a.obj
            key = flow_key(f)
            if a.op == "delete":
                self.external.pop(key, None)
            else:
                self.external[key] = f

    def create(self, flow: Flow, now: float):
        ref = self.source.add(flow)
        self.machine.enqueue(ref, now)
        return ref


class Link:
    """One direction: in-order delivery after ``latency`` seconds, each datagram lost
    with probability ``loss``."""

    def __init__(self, loss: float = 0.0, latency: float = 0.0005, seed: int = 0) -> None:
        self.loss = loss
        self.latency = latency
        self.rng = random.Random(seed)
        self.sent = 0
        self.dropped = 0
        self.down = False

    def carries(self) -> bool:
        self.sent += 1
        if self.down or self.rng.random() < self.loss:
            self.dropped += 1
            return False
        return True


class Sim:
    """Two nodes, two links, one virtual clock."""

    def __init__(self, a: Node, b: Node, ab: Link, ba: Link, start: float = 0.0) -> None:
        self.nodes = (a, b)
        self.links = {a.name: (ab, b), b.name: (ba, a)}
        self.now = start
        self._events: list = []  # (time, n, kind, payload)
        self._n = 0

    def at(self, when: float, fn) -> None:
        """Run ``fn(now)`` at virtual time ``when`` (a local event)."""
        self._push(when, "call", fn)

    def _push(self, when: float, kind: str, payload) -> None:
        self._n += 1
        heapq.heappush(self._events, (when, self._n, kind, payload))

    def _flush(self, node: Node) -> None:
        link, peer = self.links[node.name]
        for d in node.machine.flush(self.now):
            node.sent.append((self.now, d))
            if link.carries():
                self._push(self.now + link.latency, "deliver", (peer, d))

    def run(self, until: float) -> None:
        while True:
            t_event = self._events[0][0] if self._events else None
            deadlines = [(n.machine.next_deadline(), n) for n in self.nodes]
            deadlines = [(t, n) for t, n in deadlines if t is not None]
            t_timer = min((t for t, _ in deadlines), default=None)
            t = min(x for x in (t_event, t_timer, until) if x is not None)
            if t >= until and (t_event is None or t_event >= until) and (
                    t_timer is None or t_timer >= until):
                self.now = until
                return
            self.now = max(self.now, t)
            if t_event is not None and t_event <= t:
                _, _, kind, payload = heapq.heappop(self._events)
                if kind == "deliver":
                    node, data = payload
                    node.apply(node.machine.receive(data, self.now))
                    self._flush(node)
                else:
                    payload(self.now)
                    for n in self.nodes:
                        self._flush(n)
                continue
            for tt, n in deadlines:
                if tt <= t:
                    n.apply(n.machine.tick(self.now))
                    self._flush(n)
