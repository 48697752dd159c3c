"""The sync wire codec on the recorded corpus: datagrams of C conntrackd 1.4.7 pairs.

``fixtures/sync/`` (recorded by ``tools/fixture/synccorpus.py``) holds FTFW, NOTRACK
and ALARM conversations over multicast, UDP (IPv4 and IPv6) and TCP. Every datagram
decodes and re-encodes byte for byte, agrees with construct's interpreter and with
tshark's UDP payloads, and decodes as the sidecar says; our encoder turns the
primary's kernel table into the C daemon's messages for the same flows (sequence
numbers and the remaining timeout aside); our kernel requests equal the netlink
requests the C backup sent while committing; and the flows the C backup committed
equal the flows its messages describe.
"""
from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conntrack_tools.conntrackd.wire import kernel as KR
from conntrack_tools.conntrackd.wire.codec import (
    decode_datagram, encode_datagram, encode_message, flow_message, reply_tuple,
)
from conntrack_tools.conntrackd.wire.fixtures import describe_datagrams
from conntrack_tools.fixture.synccorpus import udp_payloads
from ctnetlink.decode import decode_expect, decode_flow
from ctnetlink.encode import encode_expect
from ctnetlink.encode import encode_flow as ct_encode_flow

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.syncwire import (  # noqa: E402
    CORPUS, SCENARIOS, assert_interpreter_agrees, sidecar, streams,
)


def test_the_corpus_is_complete() -> None:
    assert sorted(p.stem for p in CORPUS.glob("*.pcap")) == sorted(SCENARIOS)
    assert sorted(p.stem for p in CORPUS.glob("*.json")) == sorted(SCENARIOS)


def options(name: str, node: str = "A") -> dict:
    """The encoder options of a node's configuration."""
    conf = sidecar(name)["configs"][node]
    return {"commit_timeout": "CommitTimeout" in conf,
            "window_tracking": "TCPWindowTracking On" in conf}


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_datagram_decodes_and_reencodes(name: str) -> None:
    kinds = set()
    for data in streams(name):
        msgs = decode_datagram(data)
        assert encode_datagram(msgs, **options(name)) == data
        kinds.update((m.type, m.flags) for m in msgs)
    assert kinds


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_interpreter_agrees(name: str) -> None:
    for data in streams(name):
        assert_interpreter_agrees(data)


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_sidecar_is_the_decoding_of_the_capture(name: str) -> None:
    sc = sidecar(name)
    got = describe_datagrams(udp_payloads(CORPUS / f"{name}.pcap"), 0.0,
                             stream=sc["transport"] == "tcp")
    strip = [{k: v for k, v in d.items() if k != "time"} for d in got]
    assert strip == [{k: v for k, v in d.items() if k != "time"} for d in sc["datagrams"]]


@pytest.mark.parametrize("name", [n for n in SCENARIOS if "tcp" not in n])
def test_tshark_sees_the_same_udp_payloads(name: str) -> None:
    out = subprocess.run(["tshark", "-r", str(CORPUS / f"{name}.pcap"), "-T", "fields",
                          "-e", "udp.payload"], capture_output=True, text=True, check=True)
    lines = [x.replace(":", "") for x in out.stdout.split()]
    assert lines == [d["payload"] for d in sidecar(name)["datagrams"]]


def test_the_corpus_covers_the_protocol() -> None:
    seen_types, seen_flags, seen_attrs = set(), set(), set()
    for name in SCENARIOS:
        for d in sidecar(name)["datagrams"]:
            for m in d["messages"]:
                seen_types.add(m["type"])
                seen_flags.update(m["flags"])
                seen_attrs.update(a[0] for a in m.get("attrs", []))
    assert seen_types >= {"CT_NEW", "CT_UPD", "CT_DEL", "EXP_NEW", "CTL"}
    assert seen_flags >= {"ACK", "NACK", "RESYNC", "ALIVE", "HELLO", "HELLO_BACK"}
    assert seen_attrs >= {
        "NTA_IPV4", "NTA_IPV6", "NTA_L4PROTO", "NTA_PORT", "NTA_TCP_STATE", "NTA_STATUS",
        "NTA_TIMEOUT", "NTA_MARK", "NTA_SNAT_IPV4", "NTA_DNAT_IPV4", "NTA_SPAT_PORT",
        "NTA_DPAT_PORT", "NTA_NAT_SEQ_ADJ", "NTA_SCTP_STATE", "NTA_SCTP_VTAG_ORIG",
        "NTA_SCTP_VTAG_REPL", "NTA_ICMP_TYPE", "NTA_ICMP_CODE", "NTA_ICMP_ID",
        "NTA_TCP_WSCALE_ORIG", "NTA_TCP_WSCALE_REPL", "NTA_HELPER_NAME", "NTA_LABELS",
        "NTA_SNAT_IPV6", "NTA_DNAT_IPV6", "NTA_SYNPROXY", "NTA_ZONE",
        "NTA_EXP_MASTER_IPV4", "NTA_EXP_NAT_IPV4", "NTA_EXP_NAT_DIR", "NTA_EXP_FN",
        "NTA_EXP_HELPER_NAME", "NTA_EXP_CLASS"}


# --- differential: our encoder on the primary's kernel table vs the C daemon's bytes ---------

def _key(flow) -> tuple:
    o = flow.orig
    return o.src, o.dst, o.proto, o.sport or 0, o.dport or 0, o.icmp_id


def _mask_timeout(raw: bytes) -> bytes:
    """A message with the TIMEOUT value zeroed (it counts down between dump and send)."""
    out = bytearray(raw)
    off = 8
    while off + 4 <= len(out):
        ln, atype = struct.unpack_from(">HH", out, off)
        if atype == 6 and out[0] & 0x0F <= 2:
            out[off + 4:off + 8] = bytes(4)
        off += (ln + 3) & ~3
    return bytes(out)


def _first_messages(name: str) -> dict:
    """The first CT message the primary sent about each flow, as raw bytes."""
    sc = sidecar(name)
    a_sync = set(sc["nodes"]["A"]["sync"])
    first: dict = {}
    for d in sc["datagrams"]:
        if d["src"] not in a_sync:
            continue
        data = bytes.fromhex(d["payload"])
        if sc["transport"] == "tcp":
            continue
        for m in decode_datagram(data):
            if m.type <= 2:
                first.setdefault(_key(m.payload), m)
    if sc["transport"] == "tcp":
        for data in streams(name):
            for m in decode_datagram(data):
                if m.type <= 2:
                    first.setdefault(_key(m.payload), m)
    return first


@pytest.mark.parametrize("name", SCENARIOS)
def test_our_encoder_equals_the_c_daemon_on_the_kernel_table(name: str) -> None:
    sc = sidecar(name)
    opts = options(name)
    first = _first_messages(name)
    compared = 0
    for hexmsg in sc["primary_table"]["conntrack"]:
        raw = bytes.fromhex(hexmsg)
        flow = decode_flow(raw, 0, len(raw))
        m = first.get(_key(flow))
        if m is None:
            continue  # filtered by the daemon (loopback) or never sent
        theirs = encode_message(m, **opts)
        ours = flow_message(m.type, flow, m.seq, m.flags, **opts)
        assert _mask_timeout(ours) == _mask_timeout(theirs), flow
        compared += 1
    assert compared >= 2


# --- kernel requests: ours vs the C backup's commit ------------------------------------------

def _last_messages(name: str) -> tuple[dict, object]:
    last: dict = {}
    last_exp = None
    for data in streams(name):
        for m in decode_datagram(data):
            if m.type <= 2:
                last[_key(m.payload)] = m
            elif m.type <= 5:
                last_exp = m
    return last, last_exp


def _c_sctp_quirk(flow, window_tracking: bool):
    """Without TCPWindowTracking 1.4.7 writes the TCP "be liberal" flags (0x08) into
    libnetfilter_conntrack's protocol-info union of every committed flow: for SCTP that
    overwrites the first (host order, least significant) byte of the original
    verification tag."""
    if flow.sctp is None or window_tracking:
        return flow
    return flow.copy(sctp=flow.sctp.replace(vtag_orig=(flow.sctp.vtag_orig & ~0xFF) | 0x08))


@pytest.mark.parametrize("name", SCENARIOS)
def test_our_commit_requests_equal_the_c_daemons(name: str) -> None:
    sc = sidecar(name)
    wt = "TCPWindowTracking On" in sc["configs"]["B"]
    last, last_exp = _last_messages(name)
    requests = [bytes.fromhex(h) for h in sc["commit_strace"]]
    assert requests
    for req in requests:
        if req[5] == 2:  # an expectation
            e = decode_expect(req, 0, len(req))
            ours = encode_expect(KR.commit_expect(last_exp.payload, timeout=e.timeout))
            assert ours == req[20:]
            continue
        theirs = decode_flow(req, 0, len(req))
        m = last[_key(theirs)]
        ours = KR.commit_flow(m.payload, timeout=theirs.timeout, window_tracking=wt)
        body = ct_encode_flow(_c_sctp_quirk(ours, wt), nat_port_protos=KR.NAT_PORT_PROTOS)
        assert body == req[20:], theirs


# --- what the C backup's kernel holds after the commit --------------------------------------

def _zero_keys(t):
    """GRE entries travel without keys; the kernel holds them as 0."""
    return t.replace(sport=t.sport or 0, dport=t.dport or 0) if t.proto == 47 else t


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_committed_kernel_entries_are_the_decoded_flows(name: str) -> None:
    sc = sidecar(name)
    last, _ = _last_messages(name)
    alive = {k: m for k, m in last.items() if m.type != 2}
    table = [decode_flow(bytes.fromhex(h), 0, len(h) // 2) for h in sc["backup_table"]["conntrack"]]
    committed = {_key(f): f for f in table}
    assert committed
    for key, kflow in committed.items():
        m = alive.get(key)
        if m is None:
            continue  # an entry of the backup's own (none are tracked there)
        f = m.payload
        assert kflow.orig.replace(zone=None) == _zero_keys(f.orig)
        assert kflow.reply.replace(zone=None) == _zero_keys(f.reply)
        nat = f.reply != reply_tuple(f.orig)
        ignore = 0x01 | (0 if nat else 0x180)  # EXPECTED; NAT_DONE bits need a NAT table
        assert kflow.status & ~ignore == f.status & ~ignore
        assert (kflow.mark or 0, kflow.zone, kflow.helper) == (f.mark or 0, f.zone, f.helper)
        assert (kflow.labels or 0) in (0, f.labels or 0)  # the backup has no label rule
        if f.tcp is not None:
            assert kflow.tcp.state == f.tcp.state
    assert len(committed) >= len(alive) - 1
