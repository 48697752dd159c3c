"""The capture script behind ``tests/unit/data/kernel_messages.json`` still works.

It runs against this kernel (in its own namespace) and must record the same scenarios
and the same kinds of messages as the committed capture, so regenerating the unit-test
data stays one command away.
"""
from __future__ import annotations

import json

from helpers import capture
from helpers.kernel_data import DATA
from helpers.netns import current_netns

from nfnl.message import iter_messages


def kinds(doc: dict) -> set[tuple[str, str, int]]:
    out = set()
    for d in doc["datagrams"]:
        buf = bytes.fromhex(d["hex"])
        for _, _, mtype, *_ in iter_messages(buf):
            out.add((d["scenario"], d["direction"], mtype))
    return out


def test_capture_script_reproduces_the_committed_data(tmp_path, label_names) -> None:
    home = current_netns()
    out = tmp_path / "kernel_messages.json"
    assert capture.main(["capture.py", str(out)]) == 0
    assert current_netns() == home
    fresh, committed = json.loads(out.read_text()), json.loads(DATA.read_text())
    assert fresh["generator"] == committed["generator"]
    assert kinds(fresh) == kinds(committed)
