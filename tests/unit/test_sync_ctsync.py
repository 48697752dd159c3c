"""The direct paths between ctnetlink and sync messages equal the Flow paths.

``ctsync.sync_message`` (a ctnetlink conntrack message straight to the sync message the
C sender makes of it) equals ``flow_message(type, decode_flow(message))``;
``ctsync.payload_commit_request`` (a sync payload straight to the ctnetlink request
that commits it) equals ``encode_flow(commit_flow(decoded flow))``; and
``ctsync.payload_flow_attrs`` (a sync payload straight to the ctnetlink attributes of
its flow) equals ``encode_flow(decoded flow)``: on the kernel tables and the datagrams
of the recorded corpus, and on random flows (hypothesis), with every option.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conntrack_tools.conntrackd.wire.codec import (
    decode_datagram, decode_payload, encode_flow, flow_message, walk,
)
from conntrack_tools.conntrackd.wire.ctsync import (
    commit_request, payload_commit_request, payload_flow_attrs, payload_flow_message, sync_message,
)
from ctnetlink.decode import decode_flow
from ctnetlink.encode import encode_flow as ct_encode_flow
from ctnetlink.encode import flow_message as ct_message
from ctnetlink.model import Flow

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.syncwire import SCENARIOS, flows, sidecar, streams  # noqa: E402

OPTIONS = [(wt, ct) for wt in (False, True) for ct in (False, True)]


def kernel_messages() -> list[bytes]:
    return [bytes.fromhex(h) for name in SCENARIOS
            for h in sidecar(name)["primary_table"]["conntrack"]]


def payloads() -> list[bytes]:
    return [m.payload for name in SCENARIOS for d in streams(name) for m in walk(d)
            if m.type <= 2]


@pytest.mark.parametrize("wt, ct", OPTIONS)
def test_kernel_table_to_sync_messages(wt: bool, ct: bool) -> None:
    msgs = kernel_messages()
    assert len(msgs) >= 40
    for raw in msgs:
        for mtype in (0, 1, 2):
            ours = sync_message(raw, 0, len(raw), mtype, 0x6B071460, 0x40,
                                window_tracking=wt, commit_timeout=ct)
            assert ours == flow_message(mtype, decode_flow(raw, 0, len(raw)), 0x6B071460, 0x40,
                                        window_tracking=wt, commit_timeout=ct)


@pytest.mark.parametrize("wt", [False, True])
def test_received_payloads_to_commit_requests(wt: bool) -> None:
    bodies = payloads()
    assert len(bodies) >= 100
    for body in bodies:
        flow = decode_payload(type("M", (), {"payload": body, "type": 0})())
        for timeout in (None, 0, 572):
            assert payload_commit_request(body, timeout=timeout, window_tracking=wt) == \
                commit_request(flow, timeout=timeout, window_tracking=wt)
        assert payload_flow_attrs(body) == (flow.family, ct_encode_flow(flow))
        msg = payload_flow_message(body)
        assert decode_flow(msg, 0, len(msg)) == flow


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows(), st.sampled_from(OPTIONS), st.sampled_from([None, 0, 0x80, 0x180]),
       st.integers(0, 2))
def test_random_flows_take_the_direct_paths_exactly(flow: Flow, opts, nat_done, mtype: int) -> None:
    wt, ct = opts
    if nat_done is None:
        flow = flow.copy(status=None)
    else:
        flow = flow.copy(status=flow.status | nat_done)
    raw = ct_message(0x0100, 0, flow, 1)
    decoded = decode_flow(raw, 0, len(raw))
    assert sync_message(raw, 0, len(raw), mtype, 9, 0, window_tracking=wt, commit_timeout=ct) == \
        flow_message(mtype, decoded, 9, 0, window_tracking=wt, commit_timeout=ct)
    body = encode_flow(flow, window_tracking=wt)
    (m,) = decode_datagram(flow_message(0, flow, 1, window_tracking=wt))
    for timeout in (None, 300):
        assert payload_commit_request(body, timeout=timeout, window_tracking=wt) == \
            commit_request(m.payload, timeout=timeout, window_tracking=wt)
    assert payload_flow_attrs(body)[1] == ct_encode_flow(m.payload)
