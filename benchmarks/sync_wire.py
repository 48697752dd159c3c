"""Speed of the conntrackd sync wire codec: messages per second, encode and decode.

``python benchmarks/sync_wire.py`` encodes the conntrack messages of the recorded bulk
of ``fixtures/sync/ftfw-multicast`` (the flows decoded from the C daemon's datagrams:
TCP, UDP, ICMP, SCTP, GRE, IPv6, NAT, labels, helpers) over and over, and decodes the
datagrams back (framing, attributes and the Flow objects). Figures are per message.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from conntrack_tools.conntrackd.wire.codec import decode_datagram, flow_message

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    sc = json.loads((ROOT / "fixtures" / "sync" / "ftfw-multicast.json").read_text())
    datagrams = [bytes.fromhex(d["payload"]) for d in sc["datagrams"] if len(d["messages"]) > 5]
    msgs = [m for d in datagrams for m in decode_datagram(d) if m.type <= 2]
    flows = [(m.type, m.payload, m.seq) for m in msgs]
    n = 0
    rounds = max(1, 100_000 // len(flows))
    t = time.perf_counter()
    for _ in range(rounds):
        for mtype, flow, seq in flows:
            flow_message(mtype, flow, seq)
        n += len(flows)
    enc = time.perf_counter() - t
    blob = [d for d in datagrams]
    nm = sum(len(decode_datagram(d)) for d in blob)
    t = time.perf_counter()
    for _ in range(rounds):
        for d in blob:
            decode_datagram(d)
    dec = time.perf_counter() - t
    print(f"encode: {n} messages in {enc:.3f} s = {n / enc:,.0f} msg/s ({enc / n * 1e6:.2f} us/msg)")
    nd = nm * rounds
    print(f"decode: {nd} messages in {dec:.3f} s = {nd / dec:,.0f} msg/s ({dec / nd * 1e6:.2f} us/msg)")


if __name__ == "__main__":
    main()
