"""Sync datagrams as plain JSON: what the fixture sidecars (``fixtures/sync/*.json``) hold.

:func:`message_json` describes one message at the wire level (type and flag names,
sequence numbers, every attribute by its C name with readable values) and as the
library object it decodes to; :func:`describe_datagrams` does it for the payloads of
a capture, reassembling TCP streams per direction.
"""
from __future__ import annotations

import ipaddress

from . import constants as K
from .codec import SyncDecodeError, SyncMessage, attr_list, decode_payload, walk

_ADDR_KINDS = ("addr4pair", "addr6pair", "addr4", "addr6")


def _value(values):
    if isinstance(values, str):
        return values
    out = []
    for v in values:
        if isinstance(v, bytes):
            out.append(str(ipaddress.ip_address(v)))
        else:
            out.append(v)
    return out if len(out) != 1 else out[0]


def message_json(msg: SyncMessage) -> dict:
    """One message (payload still raw bytes, as :func:`walk` gives it) as plain data."""
    out = {"type": K.TYPE_NAMES.get(msg.type, str(msg.type)), "flags": K.flag_names(msg.flags),
           "seq": msg.seq}
    if msg.from_seq is not None:
        out["from"] = msg.from_seq
        out["to"] = msg.to_seq
    body = msg.payload
    if msg.type <= K.NET_T_STATE_MAX:
        out["attrs"] = [[name, _value(v)] for name, v in attr_list(body, msg.type >= 3)]
        out["object"] = decode_payload(msg).to_dict()
    elif body:
        out["trailing"] = bytes(body).hex()
    return out


def describe_datagrams(datagrams: list[dict], t0: float, *, stream: bool = False) -> list[dict]:
    """JSON of captured sync payloads (see ``synccorpus.udp_payloads``): per datagram its
    frame, time since ``t0``, addresses, payload (hex) and messages. With ``stream`` the
    payloads are TCP segments: bytes are collected per direction and each message is
    listed with the segment that completes it."""
    pending: dict[tuple, bytes] = {}
    out = []
    for d in datagrams:
        payload = d["payload"]
        entry = {"frame": d["frame"], "time": round(d["time"] - t0, 6), "src": d["src"],
                 "sport": d["sport"], "dst": d["dst"], "dport": d["dport"],
                 "transport": d["transport"], "payload": payload.hex()}
        data = payload
        if stream:
            key = (d["src"], d["sport"], d["dst"], d["dport"])
            data = pending.pop(key, b"") + payload
            used = _complete(data)
            pending[key] = data[used:]
            data = data[:used]
        msgs = []
        for m in walk(data):
            if isinstance(m, SyncDecodeError):
                msgs.append({"error": m.reason, "detail": m.detail})
                break
            msgs.append(message_json(m))
        entry["messages"] = msgs
        out.append(entry)
    return out


def _complete(data: bytes) -> int:
    """How many leading bytes of a stream buffer form whole messages."""
    off = 0
    while len(data) - off >= K.NETHDR_SIZ:
        ln = int.from_bytes(data[off + 2:off + 4], "big")
        if ln == 0 or ln > len(data) - off:
            break
        off += ln
    return off
