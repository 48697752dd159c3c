"""Speed of the conntrackd sync wire codec: messages per second, encode and decode.

``python benchmarks/sync_wire.py`` encodes the conntrack messages of the recorded bulk
of ``fixtures/sync/ftfw-multicast`` (the flows decoded from the C daemon's datagrams:
TCP, UDP, ICMP, SCTP, GRE, IPv6, NAT, labels, helpers) over and over, and decodes the
datagrams back (framing, attributes and the Flow objects). Figures are per message
(best of five runs),
for the fast path (generated encoders per flow kind, compiled payload shapes) and, in
the same run, for the attribute-by-attribute reference path the fast one replaced
(``encode_flow_reference``; ``walk`` + ``parse_attrs`` + ``flow_from_attrs``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from conntrack_tools.conntrackd.wire.codec import (
    _CT_TABLE, _HDR, decode_datagram, encode_flow_reference, flow_from_attrs, flow_message,
    parse_attrs, walk,
)

ROOT = Path(__file__).resolve().parents[1]


def reference_message(mtype: int, flow, seq: int) -> bytes:
    body = encode_flow_reference(flow)
    return _HDR.pack(0x10 | mtype, 0, 8 + len(body), seq) + body


def reference_decode(data: bytes) -> list:
    return [flow_from_attrs(parse_attrs(m.payload, _CT_TABLE)) if m.type <= 2 else m
            for m in walk(data)]


def rate(fn, items, rounds: int, repeat: int = 5) -> float:
    """Calls per second of ``fn(*x)`` over ``items``: the best of ``repeat`` runs (the
    machine is shared; the best run is the one least disturbed)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(rounds):
            for x in items:
                fn(*x)
        best = min(best, time.perf_counter() - t)
    return rounds * len(items) / best


def main() -> None:
    sc = json.loads((ROOT / "fixtures" / "sync" / "ftfw-multicast.json").read_text())
    datagrams = [bytes.fromhex(d["payload"]) for d in sc["datagrams"] if len(d["messages"]) > 5]
    msgs = [m for d in datagrams for m in decode_datagram(d) if m.type <= 2]
    flows = [(m.type, m.payload, m.seq) for m in msgs]
    per_dgram = sum(len(decode_datagram(d)) for d in datagrams) / len(datagrams)
    rounds = max(1, 20_000 // len(flows))
    enc = rate(flow_message, flows, rounds)
    enc_ref = rate(reference_message, flows, rounds)
    dec = rate(decode_datagram, [(d,) for d in datagrams], rounds) * per_dgram
    dec_ref = rate(reference_decode, [(d,) for d in datagrams], rounds) * per_dgram
    print(f"encode: {enc:>10,.0f} msg/s ({1e6 / enc:.2f} us/msg); "
          f"reference path {enc_ref:,.0f} msg/s; x{enc / enc_ref:.1f}")
    print(f"decode: {dec:>10,.0f} msg/s ({1e6 / dec:.2f} us/msg); "
          f"reference path {dec_ref:,.0f} msg/s; x{dec / dec_ref:.1f}")


if __name__ == "__main__":
    main()
