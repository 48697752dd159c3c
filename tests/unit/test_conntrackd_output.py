"""conntrackd's reply texts, sync-mode event table and metrics without a kernel:
the reference's layouts (spec §7), the event -> action table (§6.5), ``-o json`` and the
Prometheus endpoint served from a loop."""
from __future__ import annotations

import json
import struct
import threading
import urllib.request
from types import SimpleNamespace

from conntrack_tools.conntrackd import entry as E
from conntrack_tools.conntrackd import handlers as H
from conntrack_tools.conntrackd import output as O
from conntrack_tools.conntrackd.kernel import (
    DESTROY, NEW, ORIGIN_COMMIT, ORIGIN_FLUSH, ORIGIN_INJECT, ORIGIN_NOT_ME, UPDATE, KernelStats,
)
from conntrack_tools.conntrackd.metrics import MetricsServer, render
from conntrack_tools.conntrackd.stats import FlowLog, StatsMode
from conntrack_tools.conntrackd.syncmode import (
    NET_T_STATE_CT_DEL, NET_T_STATE_CT_NEW, NET_T_STATE_CT_UPD, SyncMode, SyncSettings,
)
from ctnetlink.encode import encode_flow
from ctnetlink.model import Flow, TcpInfo, Tuple
from tests.helpers.miniloop import MiniLoop
from nfnl.codec import nla_nest
from nfnl.message import build_nfnl


def event_msg(sport: int, new: bool = True, mtype: int = 0x100, **kw) -> bytes:
    o = Tuple(src="10.0.0.1", dst="10.0.0.2", proto=6, sport=sport, dport=80)
    f = Flow(family=2, orig=o, reply=o.reversed(), status=0xE, tcp=TcpInfo(state=3), **kw)
    return build_nfnl(mtype, 0x400 if new else 0, 2, encode_flow(f), 1)


def with_counters(m: bytes, orig: tuple[int, int], reply: tuple[int, int]) -> bytes:
    """``m`` plus CTA_COUNTERS_ORIG/REPLY (packets, bytes), as DESTROY events carry them."""
    extra = b""
    for atype, (pk, by) in ((9, orig), (10, reply)):
        extra += nla_nest(atype, struct.pack("=HH", 12, 1) + pk.to_bytes(8, "big")
                          + struct.pack("=HH", 12, 2) + by.to_bytes(8, "big"))
    body = m[16:] + extra
    return struct.pack("=I", 16 + len(body)) + m[4:16] + body


def feed(mode, etype: int, m: bytes, origin: int = ORIGIN_NOT_ME) -> bool:
    p = E.parse(m, 0, len(m), () if etype == DESTROY else (9, 10, 11))
    return mode.event(etype, p, origin, m, 0, len(m))


def test_uptime_text() -> None:
    assert O.uptime(0) == "0 min"
    assert O.uptime(61) == "1 min"
    assert O.uptime(3600 * 2 + 60 * 5) == "2 h 5 min"
    assert O.uptime(86400 + 59) == "1 day 0 min"
    assert O.uptime(2 * 86400 + 3600) == "2 days 1 h 0 min"


def test_runtime_stats_layout() -> None:
    k = KernelStats()
    k.events_received, k.buffer_size = 7, 212992
    text = O.runtime_stats(59, k)
    assert text.startswith("daemon uptime: 0 min\n\nnetlink stats:\n"
                           "\tevents received:\t                   7\n")
    assert "\tcurrent buffer size (in bytes):\t      212992\n\nruntime stats:\n" in text
    assert text.endswith("\tlocal unknown request:\t\t           0\n\n")


def test_stats_mode_events_and_log(utc) -> None:
    lines: list[str] = []
    mode = StatsMode(flow_log=FlowLog(SimpleNamespace(write=lines.append, flush=lambda: None),
                                      clock=lambda: 0.0), clock=lambda: 100.0)
    feed(mode, NEW, event_msg(1, timeout=30))
    feed(mode, NEW, event_msg(1, timeout=30, mark=5))  # known: nothing changes
    feed(mode, UPDATE, event_msg(2, new=False, mark=3))  # unknown: added
    assert len(mode.cache) == 2 and mode.cache.stats.upd_ok == 0
    dump = b"".join(mode.handle(H.CT_DUMP_INTERNAL)).decode()
    assert dump.count("[active since 0s]") == 2 and " 30 " not in dump
    assert feed(mode, DESTROY, with_counters(event_msg(1, mtype=0x102), (3, 117), (1, 40)))
    assert lines == ["Thu Jan  1 00:00:00 1970\ttcp      6 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 "
                     "sport=1 dport=80 packets=3 bytes=117 src=10.0.0.2 dst=10.0.0.1 sport=80 "
                     "dport=1 packets=1 bytes=40 [ASSURED]\n"]
    assert (mode.traffic_bytes, mode.traffic_packets) == (157, 4)
    assert not feed(mode, DESTROY, event_msg(9, mtype=0x102))  # not cached: not logged
    doc = json.loads(b"".join(mode.handle(H.STATS | H.JSON)))
    assert doc["cache"]["stats"]["active"] == 1 and doc["traffic"]["bytes"] == 157
    rec = json.loads(b"".join(mode.handle(H.CT_DUMP_INTERNAL | H.JSON)).splitlines()[0])
    assert rec["daemon"]["status"] == "new" and rec["orig"]["sport"] == 2 and rec["mark"] == 3


class Recorder(SyncMode):
    def __init__(self) -> None:
        super().__init__(SyncSettings())
        self.sent: list[tuple[bytes, int]] = []

    def send(self, cache, key, msg_type) -> None:
        cache.hold(key)
        self.sent.append((key, msg_type))


def test_sync_event_table() -> None:
    """Spec §6.5: what each event does with each origin."""
    m = Recorder()
    key = E.parse(event_msg(1), 0, len(event_msg(1))).key
    feed(m, NEW, event_msg(1), ORIGIN_INJECT)
    assert len(m.internal) == 0
    feed(m, NEW, event_msg(1), ORIGIN_COMMIT)
    assert len(m.internal) == 1 and m.sent == []
    feed(m, NEW, event_msg(1))
    assert m.sent == [(key, NET_T_STATE_CT_NEW)]
    assert m.internal.stats.add_ok == 2 and m.internal.stats.del_ok == 1  # replaced
    feed(m, UPDATE, event_msg(1, new=False), ORIGIN_FLUSH)
    feed(m, UPDATE, event_msg(1, new=False))
    assert m.sent[-1] == (key, NET_T_STATE_CT_UPD) and len(m.sent) == 2
    feed(m, DESTROY, event_msg(1, mtype=0x102))
    assert m.sent[-1] == (key, NET_T_STATE_CT_DEL)
    # the queued DEL holds the dead entry: hidden from FTFW dumps, counted as destroyed
    assert key in m.internal and m.internal.active == 0
    assert b"".join(m.handle(H.CT_DUMP_INTERNAL)) == b""
    for _ in range(3):
        m.internal.put(key)
    assert key not in m.internal


def test_sync_destroy_of_own_flush_is_not_sent() -> None:
    m = Recorder()
    feed(m, NEW, event_msg(1))
    feed(m, DESTROY, event_msg(1, mtype=0x102), ORIGIN_FLUSH)
    assert [t for _, t in m.sent] == [NET_T_STATE_CT_NEW]
    assert m.internal.stats.del_ok == 1


def test_metrics_endpoint() -> None:
    mode = StatsMode()
    feed(mode, NEW, event_msg(1))
    k = SimpleNamespace(stats=KernelStats(), resync_pending=False)
    k.stats.netlink_overrun = 2
    loop = MiniLoop()
    srv = MetricsServer(loop, lambda: render(mode, k, started=0, now=10), port=0)
    result: dict = {}

    def scrape() -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/metrics", timeout=5) as r:
            result["body"] = r.read().decode()
            result["type"] = r.headers["Content-Type"]
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/other", timeout=5)
        except urllib.error.HTTPError as e:
            result["404"] = e.code

    t = threading.Thread(target=scrape)
    t.start()
    assert loop.run_until(lambda: "404" in result, timeout=10)
    t.join()
    srv.close()
    body = result["body"]
    assert result["type"].startswith("text/plain; version=0.0.4")
    assert 'conntrackd_cache_entries{cache="stats"} 1' in body
    assert "conntrackd_netlink_overruns_total 2" in body
    assert "conntrackd_uptime_seconds 10" in body
    assert "# TYPE conntrackd_cache_created_total counter" in body
    assert result["404"] == 404
