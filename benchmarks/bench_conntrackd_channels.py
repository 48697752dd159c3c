"""Sync channel throughput on a veth link: conntrackd 1.4.7 and our channels.

Two namespaces joined by a veth pair (MTU 1500), ``--flows`` entries in the sender's
table, the NOTRACK mode over UDP (receive buffers of 8 MiB on every side):

1. C → ours: the C daemon bulk-sends its table (``-B``); the time until our channel
   holds every message (the C daemon's send rate) and what was lost on the way.
2. ours → C: our channel sends the same messages (packed by its channel buffer) to a
   fresh C daemon; the time our send path takes, and until the C daemon's external
   cache holds every flow (its receive path).
3. ours → ours: the same messages between two of our channels: send (pack +
   ``sendto``) and receive (``recv`` + hand-over) rates, measured apart.

    python benchmarks/bench_conntrackd_channels.py [--flows 20000]
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from benchmarks._common import fill  # noqa: E402
from conntrack_tools.conntrackd.loop import Loop  # noqa: E402
from helpers.cdaemon import CDaemon  # noqa: E402
from helpers.synclinks import (  # noqa: E402
    SyncLinks, channel_config, messages, open_channels, pump, sync_section,
)

BUF = "\tRcvSocketBuffer 8388608\n\tSndSocketBuffer 8388608\n"


def external_count(c: CDaemon) -> int:
    out = c.client("-s", "cache").stdout
    m = re.search(r"cache:external\tactive objects:\t\t *(\d+)", out)
    return int(m.group(1)) if m else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=20000)
    args = ap.parse_args()
    n = args.flows
    with SyncLinks(links=1) as sl:
        fill(sl.a.name, n)
        section = sync_section(channel_config("udp4", "a", port=3990, extra=BUF), mode="NOTRACK")
        blocks_b = channel_config("udp4", "b", port=3990, extra=BUF)
        loop = Loop()
        got: list[bytes] = []
        ours = open_channels(sl.b, blocks_b, loop, lambda ch, d: got.append(d))
        try:
            # 1. C -> ours
            with CDaemon(sl.a, section) as c:
                t0 = time.perf_counter()
                c.client("-B")
                count = lambda: sum(1 for d in got for m in messages(d) if m[0] & 0x0F <= 5)  # noqa: E731
                pump(loop, lambda: count() >= n, timeout=60)
                dt = time.perf_counter() - t0
            msgs = [m for d in got for m in messages(d) if m[0] & 0x0F <= 5]
            print(f"C -> ours : {len(msgs)}/{n} messages in {len(got)} datagrams, "
                  f"{dt:.3f} s from -B to the last one ({len(msgs) / dt:,.0f} msg/s)")

            # 2. ours -> C
            with CDaemon(sl.a, section) as c2:
                t0 = time.perf_counter()
                for m in msgs:
                    ours.send(m)
                ours.flush()
                t_send = time.perf_counter() - t0
                deadline = time.monotonic() + 60
                while external_count(c2) < len(msgs) and time.monotonic() < deadline:
                    time.sleep(0.02)
                t_all = time.perf_counter() - t0
                have = external_count(c2)
            st = ours[0].stats
            print(f"ours -> C : sent {len(msgs)} messages in {st.packets_sent} datagrams in "
                  f"{t_send:.3f} s ({len(msgs) / t_send:,.0f} msg/s); the C daemon held "
                  f"{have}/{len(msgs)} after {t_all:.3f} s ({have / t_all:,.0f} msg/s)")
        finally:
            ours.close()

        # 3. ours -> ours
        loop = Loop()
        rx: list[bytes] = []
        a = open_channels(sl.a, channel_config("udp4", "a", port=3991, extra=BUF), loop,
                          lambda ch, d: None)
        b = open_channels(sl.b, channel_config("udp4", "b", port=3991, extra=BUF), loop,
                          lambda ch, d: rx.append(d), iteration_limit=1000)
        try:
            t0 = time.perf_counter()
            for m in msgs:
                a.send(m)
            a.flush()
            t_send = time.perf_counter() - t0
            ndg = a[0].stats.packets_sent
            t0 = time.perf_counter()
            pump(loop, lambda: len(rx) >= ndg, timeout=30)
            t_recv = time.perf_counter() - t0
            print(f"ours->ours: send {len(msgs) / t_send:,.0f} msg/s ({ndg / t_send:,.0f} "
                  f"datagrams/s); receive {ndg / t_recv:,.0f} datagrams/s "
                  f"({sum(map(len, rx)) / t_recv / 1e6:.1f} MB/s), {len(rx)}/{ndg} received")
        finally:
            a.close()
            b.close()


if __name__ == "__main__":
    main()
