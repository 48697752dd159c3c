"""The replication stage without sockets (:mod:`conntrack_tools.conntrackd.replication`):
a fake loop with a virtual clock and fake channels stand in for the daemon's; the
machines, caches and hooks are the real ones. Recorded C datagrams fill the external
cache; local changes leave as datagrams; ``-n``/``-B``; the stale-entry sweep; ALARM
expiry; link switching on a valid message; bad input never raises."""
from __future__ import annotations

import heapq
import itertools
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conntrack_tools.conntrackd import handlers as H  # noqa: E402
from conntrack_tools.conntrackd.config import parse  # noqa: E402
from conntrack_tools.conntrackd.entry import parse as parse_entry  # noqa: E402
from conntrack_tools.conntrackd.replication import Replication  # noqa: E402
from conntrack_tools.conntrackd.sync.stale import StaleTracker  # noqa: E402
from conntrack_tools.conntrackd.syncmode import SyncMode, SyncSettings  # noqa: E402
from conntrack_tools.conntrackd.wire import constants as K  # noqa: E402
from conntrack_tools.conntrackd.wire.codec import walk  # noqa: E402
from ctnetlink.encode import encode_flow  # noqa: E402
from helpers.syncsim import ctl, data, make_flow  # noqa: E402
from helpers.syncwire import sidecar  # noqa: E402


class FakeLoop:
    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list = []
        self.n = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when, cb, *args):
        t = SimpleNamespace(when=when, cb=cb, args=args, cancelled=False)
        t.cancel = lambda: setattr(t, "cancelled", True)
        heapq.heappush(self.timers, (when, next(self.n), t))
        return t

    def call_later(self, delay, cb, *args):
        return self.call_at(self.now + delay, cb, *args)

    def run(self, until: float) -> None:
        """Run every timer due up to ``until`` (virtual time)."""
        while self.timers and self.timers[0][0] <= until:
            when, _, t = heapq.heappop(self.timers)
            self.now = max(self.now, when)
            if not t.cancelled:
                t.cb(*t.args)
        self.now = max(self.now, until)


class FakeChannel:
    def __init__(self, i: int) -> None:
        self.index = i
        self.buffer_size = 1472
        self.sent: list[bytes] = []
        self.conf = SimpleNamespace(rcvbuf=0)


class FakeChannels:
    def __init__(self, n: int = 1) -> None:
        self.channels = [FakeChannel(i) for i in range(n)]
        self.current = self.channels[0]
        self.errorq = SimpleNamespace(items=[], maximum=128, enospc=0)
        self.errorq.__len__ = lambda: 0
        self.on_switch = None
        self.deliver = None

    def __iter__(self):
        return iter(self.channels)

    @property
    def buffer_size(self) -> int:
        return self.current.buffer_size

    def open(self, loop, deliver, **kw) -> None:
        self.deliver = deliver

    def close(self) -> None:
        pass

    def send_all(self, datagrams) -> None:
        self.current.sent.extend(datagrams)

    def set_current(self, ch) -> None:
        self.current = ch

    def sent(self) -> list:
        return [m for ch in self.channels for d in ch.sent for m in walk(d)]


SYNC = {
    "ftfw": "Sync {\n Mode FTFW { }\n UDP {\n IPv4_address 10.0.0.1\n "
            "IPv4_Destination_Address 10.0.0.2\n Port 3780\n Interface lo\n }\n}\n",
}


def make(mode: str = "ftfw", opts: str = "", stale: StaleTracker | None = None,
         nchannels: int = 1) -> tuple[Replication, SyncMode, FakeLoop, FakeChannels]:
    text = SYNC["ftfw"].replace("FTFW { }", f"{mode.upper()} {{ {opts} }}")
    sync = parse(text).sync
    loop = FakeLoop()
    mode_obj = SyncMode(SyncSettings.from_config(sync), limit=1 << 20, hashsize=1024,
                        clock=loop.time)
    rep = Replication(mode_obj, sync, loop, lambda level, msg: None, stale=stale)
    rep.channels = FakeChannels(nchannels)
    rep.open()
    return rep, mode_obj, loop, rep.channels


def ct_message(i: int) -> bytes:
    f = make_flow(i)
    body = encode_flow(f)
    import struct
    return struct.pack("=IHHIIBBH", 20 + len(body), 0x100, 0, 0, 0, 2, 0, 0) + body


def handshake(loop: FakeLoop, ch: FakeChannels, peer_seq: int = 500) -> None:
    """The peer answers our HELLO (FTFW)."""
    loop.run(loop.now + 0.01)
    ch.deliver(ch.current, ctl(K.NET_F_ALIVE | K.NET_F_HELLO_BACK, peer_seq))
    loop.run(loop.now + 0.01)


def test_recorded_c_datagrams_fill_the_external_cache() -> None:
    sc = sidecar("notrack-udp")
    rep, mode, loop, ch = make("notrack")
    for d in sc["datagrams"]:
        if d["src"] == "10.77.0.1":
            ch.deliver(ch.current, bytes.fromhex(d["payload"]))
    # B committed 14 entries from its external cache in the recording
    assert len(mode.external) == 14
    assert rep.machine.stats.malformed == 0


def test_local_changes_leave_once_the_handshake_is_done() -> None:
    rep, mode, loop, ch = make()
    for i in range(5):
        msg = ct_message(i)
        mode.event(1, parse_entry(msg, 0, len(msg)), 0, msg, 0, len(msg))
    loop.run(loop.now + 0.01)
    assert [m.type for m in ch.sent() if m.type != K.NET_T_CTL] == []  # waits for HELLO_BACK
    handshake(loop, ch)
    new = [m for m in ch.sent() if m.type == K.NET_T_STATE_CT_NEW]
    assert len({m.seq for m in new}) >= 5


def test_received_messages_go_to_the_external_cache_and_deletes_remove() -> None:
    rep, mode, loop, ch = make()
    ch.deliver(ch.current, b"".join(data(i, 100 + i) for i in range(10)))
    assert len(mode.external) == 10
    ch.deliver(ch.current, data(3, 110, mtype=2))
    assert len(mode.external) == 9
    out = b"".join(mode.handle(H.CT_DUMP_EXTERNAL))
    assert out.count(b"\n") == 9
    assert b"src=192.168.0.1 dst=10" not in out  # no reply tuple, as 1.4.7


def test_resync_request_and_bulk() -> None:
    rep, mode, loop, ch = make()
    msg = ct_message(1)
    mode.populate(parse_entry(msg, 0, len(msg)))
    handshake(loop, ch)
    ch.current.sent.clear()
    assert list(mode.handle(H.REQUEST_DUMP)) == []
    loop.run(loop.now + 0.01)
    assert any(m.type == K.NET_T_CTL and m.flags & K.NET_F_RESYNC for m in ch.sent())
    ch.current.sent.clear()
    assert list(mode.handle(H.SEND_BULK)) == []
    loop.run(loop.now + 0.01)
    assert sum(m.type == K.NET_T_STATE_CT_NEW for m in ch.sent()) == 1


def test_alarm_expires_and_cache_timeout() -> None:
    rep, mode, loop, ch = make("alarm", "CacheTimeout 30")
    ch.deliver(ch.current, data(1, 5))
    out = b"".join(mode.handle(H.CT_DUMP_EXTERNAL))
    assert b"[expires in 30s]" in out
    loop.run(loop.now + 10)
    assert b"[expires in 20s]" in b"".join(mode.handle(H.CT_DUMP_EXTERNAL))
    loop.run(loop.now + 21)
    assert len(mode.external) == 0


def test_stale_entries_are_swept_after_a_resync() -> None:
    st = StaleTracker(grace=5, interval=50, quiet=2, alive_window=5)
    rep, mode, loop, ch = make(stale=st)
    handshake(loop, ch)
    ch.deliver(ch.current, data(1, 501))      # TIMEOUT 300
    ch.deliver(ch.current, data(2, 502))
    seq = 503
    # the peer stays alive; entry 1 is refreshed now and then, entry 2 never again
    t_end = loop.now + 400
    while loop.now < t_end:
        loop.run(loop.now + 1)
        ch.deliver(ch.current, ctl(K.NET_F_ALIVE, seq))
        seq += 1
        if any(m.type == K.NET_T_CTL and m.flags & K.NET_F_RESYNC for m in ch.sent()):
            ch.current.sent.clear()
            ch.deliver(ch.current, data(1, seq))  # the peer's bulk: only entry 1
            seq += 1
    assert len(mode.external) == 1
    assert st.swept == 1


def test_a_valid_message_on_another_channel_switches_to_it() -> None:
    rep, mode, loop, ch = make(nchannels=2)
    assert ch.current is ch.channels[0]
    ch.deliver(ch.channels[1], ctl(K.NET_F_ALIVE, 9))
    assert ch.current is ch.channels[1]
    ch.deliver(ch.channels[0], b"\x00garbage")
    assert ch.current is ch.channels[1]


def test_bad_input_never_raises() -> None:
    import random

    rng = random.Random(3)
    rep, mode, loop, ch = make()
    for _ in range(2000):
        n = rng.randrange(0, 300)
        ch.deliver(ch.current, bytes(rng.getrandbits(8) for _ in range(n)))
        loop.run(loop.now + 0.01)
    assert rep.machine.stats.malformed > 0
