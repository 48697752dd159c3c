"""Recording the sync corpus works on this machine: two C conntrackd 1.4.7 in private
namespaces (ALARM over multicast, the shortest scenario), recorded afresh, decode and
re-encode byte for byte, and our kernel requests equal the C backup's commit."""
from __future__ import annotations

import json
import subprocess

from conntrack_tools.conntrackd.wire import kernel as KR
from conntrack_tools.conntrackd.wire.codec import decode_datagram, encode_datagram
from conntrack_tools.fixture.synccorpus import SCENARIOS, record
from ctnetlink.decode import decode_flow
from ctnetlink.encode import encode_flow


def test_a_fresh_alarm_recording(tmp_path) -> None:
    (sc,) = [s for s in SCENARIOS if s.name == "alarm-multicast"]
    side = json.loads(record(sc, tmp_path).read_text())
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "wire-a-" not in out and "wire-b-" not in out  # namespaces cleaned up
    last = {}
    for d in side["datagrams"]:
        data = bytes.fromhex(d["payload"])
        msgs = decode_datagram(data)
        assert encode_datagram(msgs) == data
        for m in msgs:
            last[(m.payload.orig.src, m.payload.orig.sport)] = m
    assert len(side["datagrams"]) >= 4
    assert side["commit_strace"]
    for h in side["commit_strace"]:
        req = bytes.fromhex(h)
        theirs = decode_flow(req, 0, len(req))
        m = last[(theirs.orig.src, theirs.orig.sport)]
        ours = KR.commit_flow(m.payload, timeout=theirs.timeout)
        assert encode_flow(ours, nat_port_protos=KR.NAT_PORT_PROTOS) == req[20:]
