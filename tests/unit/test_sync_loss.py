"""No flow lost on a lossy sync link: our FTFW against itself and against the C model.

Two machines start at the same moment on a simulated link that drops 20% of the
datagrams in each direction (in order, seeded); the primary creates 2,000 flows from
its start on; after a minute of virtual time the backup's external cache must hold
every one. The pairs: ours with ours, our primary with the C model backup, the C model
primary with our backup. The C model pair, on the same links, loses flows, as the C
daemons do (a HELLO empties the resend queue and suspends gap detection). Variants:
a burst at start-up, updates and deletes, a restart of either node.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from conntrack_tools.conntrackd.sync.ftfw import FtfwMachine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.cftfw import CFtfw  # noqa: E402
from helpers.syncsim import DEAD, FlowSource, Link, Node, Sim, flow_key, make_flow  # noqa: E402

PAIRS = {"ours-ours": (FtfwMachine, FtfwMachine), "ours-C": (FtfwMachine, CFtfw),
         "C-ours": (CFtfw, FtfwMachine)}


def pair(primary, backup, seed: int, loss: float = 0.2, **kw) -> tuple[Sim, Node, Node]:
    sa, sb = FlowSource(), FlowSource()
    a = Node("A", primary(sa, seq=1000 + seed, window=300), sa)
    b = Node("B", backup(sb, seq=5000 + 7 * seed, window=300, **kw), sb)
    return Sim(a, b, Link(loss, seed=seed), Link(loss, seed=seed + 100)), a, b


def creations(n: int = 2000, seed: int = 0, spread: float = 5.0, loss: float = 0.2,
              primary=FtfwMachine, backup=FtfwMachine) -> tuple[int, Node, Node]:
    sim, a, b = pair(primary, backup, seed, loss)
    for i in range(n):
        sim.at(spread * i / n, lambda now, i=i: a.create(make_flow(i), now))
    sim.run(60.0)
    return sum(1 for i in range(n) if flow_key(make_flow(i)) not in b.external), a, b


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", PAIRS)
def test_every_flow_reaches_the_backup_with_20_percent_loss(name: str, seed: int) -> None:
    missing, a, b = creations(seed=seed, primary=PAIRS[name][0], backup=PAIRS[name][1])
    assert missing == 0
    assert len(b.external) == 2000


@pytest.mark.parametrize("name", PAIRS)
def test_a_burst_at_start_up(name: str) -> None:
    missing, _, b = creations(seed=3, spread=0.0, primary=PAIRS[name][0], backup=PAIRS[name][1])
    assert missing == 0


def test_the_c_pair_loses_flows_on_the_same_links() -> None:
    """The reference's behaviour this work improves on (77-238 of 2,000 measured with
    C daemons; the model loses a similar share)."""
    lost = [creations(seed=s, primary=CFtfw, backup=CFtfw)[0] for s in (1, 2)]
    assert all(x >= 50 for x in lost), lost


def churn(name: str, seed: int, restart: str | None = None) -> tuple[int, int, int]:
    """1,000 flows created, updated and 20% deleted over 35 s, 20% loss, optionally a
    restart of one node at 12 s: (missing, stale, outdated) entries of the backup."""
    primary, backup = PAIRS[name]
    rng = random.Random(seed)
    sim, a, b = pair(primary, backup, seed, startup_resync=True)
    src = a.source
    refs: dict = {}

    def create(now, i):
        refs[i] = a.create(make_flow(i), now)

    def update(now, i):
        if i in refs and src.objects.get(refs[i], [DEAD])[0] != DEAD:
            src.update(refs[i], make_flow(i, mark=int(now * 1000)))
            a.machine.enqueue(refs[i], now)

    def delete(now, i):
        if i in refs and src.objects.get(refs[i], [DEAD])[0] != DEAD:
            src.destroy(refs[i])
            a.machine.enqueue(refs[i], now, True)

    for i in range(1000):
        sim.at(rng.uniform(0, 20), lambda now, i=i: create(now, i))
        sim.at(rng.uniform(5, 30), lambda now, i=i: update(now, i))
        if rng.random() < 0.2:
            sim.at(rng.uniform(10, 35), lambda now, i=i: delete(now, i))
    if restart == "backup":
        def restart_backup(now):
            b.machine = backup(b.source, seq=int(now) + 90000, window=300, startup_resync=True)
            b.external.clear()
        sim.at(12.0, restart_backup)
    elif restart == "primary":
        def restart_primary(now):  # its numbers start lower than before
            a.machine = primary(src, seq=int(now) * 3 + 1000, window=300)
        sim.at(12.0, restart_primary)
    sim.run(80.0)
    want = {r: o[1] for r, o in src.objects.items() if o[0] != DEAD}
    missing = sum(1 for r in want if r not in b.external)
    stale = sum(1 for k in b.external if k not in want)
    outdated = sum(1 for r, f in want.items() if r in b.external and b.external[r].mark != f.mark)
    return missing, stale, outdated


@pytest.mark.parametrize("restart", [None, "backup", "primary"])
@pytest.mark.parametrize("name", PAIRS)
def test_updates_deletes_and_restarts(name: str, restart: str | None) -> None:
    missing, stale, outdated = churn(name, seed=4, restart=restart)
    assert (missing, outdated) == (0, 0)
    if restart is None:
        assert stale == 0  # a DEL can only go missing with a daemon's resend queue
