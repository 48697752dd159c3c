"""Formatting cost per flow of the conntrack output formats (text, save, xml, json).

Builds a synthetic 100,000-entry dump (kernel-style messages, a realistic mix of TCP,
UDP, ICMP and others, IPv4 and IPv6, with counters and timestamps on half of them) and
prints microseconds per flow for:

* ``shape``: raw message -> text through ``compile_for_shape`` (what ``conntrack -L``
  does): shape lookup + ``unpack_from`` + formatting, and the formatting call alone;
* ``flow``: :class:`~ctnetlink.model.Flow` -> text through ``flow_formatter`` (objects
  decoded beforehand), and decode + format;
* ``compile ms``: the one-time cost of compiling shapes and format signatures (the
  first pass minus the second).

Times are process CPU time (the best of several runs), which is steadier than wall time
on a shared machine. Usage: ``python3 benchmarks/bench_formats.py [N]``.
"""
from __future__ import annotations

import gc
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctnetlink.decode import Decoder  # noqa: E402
from ctnetlink.formats import Options  # noqa: E402
from ctnetlink.formats import json as fjson  # noqa: E402
from ctnetlink.formats import save, text, xml  # noqa: E402
from ctnetlink.formats.synthetic import kernel_message, random_flow  # noqa: E402
from ctnetlink.model import Counters, Flow, TcpInfo, Timestamp, Tuple  # noqa: E402


def typical_flow(rng: random.Random) -> Flow:
    """Mostly TCP/UDP like a busy host's table; some of everything else."""
    if rng.random() < 0.001:
        return random_flow(rng)
    v6 = rng.random() < 0.3
    if v6:
        a = f"2001:db8::{rng.randrange(1, 65536):x}"
        b = f"2001:db8:1::{rng.randrange(1, 65536):x}"
    else:
        a = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        b = f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    proto = 6 if rng.random() < 0.7 else 17
    sport, dport = rng.randrange(1024, 65536), rng.choice((80, 443, 53, 22, 8080))
    f = Flow(family=10 if v6 else 2, orig=Tuple(src=a, dst=b, proto=proto, sport=sport, dport=dport),
             reply=Tuple(src=b, dst=a, proto=proto, sport=dport, dport=sport), status=0x18E if rng.random() < 0.2 else 0xE,
             timeout=rng.randrange(432000), mark=0, use=1, id=rng.randrange(1 << 32))
    if proto == 6:
        f.tcp = TcpInfo(state=3, wscale_orig=7, wscale_reply=7, flags_orig=(0x23, 0x23),
                        flags_reply=(0x23, 0x23))
    if rng.random() < 0.5:
        f.counters_orig = Counters(packets=rng.randrange(1000), bytes=rng.randrange(10**6))
        f.counters_reply = Counters(packets=rng.randrange(1000), bytes=rng.randrange(10**6))
        f.timestamp = Timestamp(start=1_795_625_000_000_000_000 + rng.randrange(10**12))
    return f


def build(n: int) -> tuple[bytes, list[tuple[int, int]]]:
    rng = random.Random(42)
    msgs = [kernel_message(typical_flow(rng)) for _ in range(n)]
    offs, pos = [], 0
    for m in msgs:
        offs.append((pos, len(m)))
        pos += len(m)
    return b"".join(msgs), offs


def best(fn, repeat: int = 3) -> float:
    """The fastest of ``repeat`` runs (the machine may be shared)."""
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def bench(n: int = 100_000) -> None:
    buf, offs = build(n)
    dec = Decoder()
    gc.collect()
    gc.freeze()   # the dump buffer and caches are long-lived; keep GC passes short
    cases = [("text", text, Options()), ("text -o extended,id", text, Options(extended=True, id=True)),
             ("save", save, Options()), ("xml", xml, Options()), ("json", fjson, Options())]
    print(f"{n} flows; microseconds per flow")
    print(f"{'format':24} {'shape: full':>12} {'shape: fmt':>11} {'flow: fmt':>10} {'flow: dec+fmt':>14}"
          f" {'compile ms':>9}")
    for name, mod, opts in cases:
        # shape path, as the CLI does it: cache formatter per shape, unpack, format
        per_shape: dict[int, object] = {}
        shape_of = dec.shape
        runs = []
        for rnd in range(4):   # the first round compiles shapes and signatures
            t0 = time.process_time()
            for o, ln in offs:
                sh = shape_of(buf, o, ln)
                fmt = per_shape.get(id(sh))
                if fmt is None:
                    fmt = per_shape[id(sh)] = mod.compile_for_shape(sh, opts)
                fmt(sh.struct.unpack_from(buf, o + 20), buf[o + 16])
            runs.append(time.process_time() - t0)
        cold, full = runs[0], min(runs[1:])
        prepared = []
        for o, ln in offs:
            sh = shape_of(buf, o, ln)
            fmt = per_shape.get(id(sh)) or mod.compile_for_shape(sh, opts)
            prepared.append((fmt, sh.struct.unpack_from(buf, o + 20), buf[o + 16]))
        only = best(lambda: [fmt(v, fam) for fmt, v, fam in prepared])
        del prepared
        fmt_flow = mod.flow_formatter(opts)
        flows = [dec.decode(buf, o, ln) for o, ln in offs]
        flow_only = best(lambda: [fmt_flow(f) for f in flows])
        del flows
        decode = dec.decode
        flow_full = best(lambda: [fmt_flow(decode(buf, o, ln)) for o, ln in offs])
        us = 1e6 / n
        print(f"{name:24} {full * us:12.2f} {only * us:11.2f} {flow_only * us:10.2f} "
              f"{flow_full * us:14.2f} {(cold - full) * 1e3:9.1f}")


if __name__ == "__main__":
    bench(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
