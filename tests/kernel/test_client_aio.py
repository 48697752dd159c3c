"""``ctnetlink.aio.AsyncConntrack``: asyncio dumps and events against the reference.

The event loop runs in the test's thread, which is inside the test's namespace, so the
non-blocking sockets the async client opens belong to it.
"""
from __future__ import annotations

import asyncio

import pytest
from helpers.filters import FILTERS, build_table
from helpers.flows import all_cases
from helpers.netns import CONNTRACK
from helpers.reference import assert_same_table, parse_extended, reference_views

from ctnetlink.aio import AsyncConntrack
from ctnetlink.constants import Group
from ctnetlink.model import EventType


def ref_ids(ns, *args: str) -> set[int]:
    return {e["id"] for e in parse_extended(ns.conntrack("-L", *args, "-o", "extended,id").stdout)}


async def collect(agen) -> list:
    return [x async for x in agen]


def test_async_dump_like_reference(ns, ct, acct, label_names) -> None:
    for case in all_cases():
        ns.conntrack("-I", *case.args)

    async def main():
        async with AsyncConntrack() as act:
            return await collect(act.dump()), await collect(act.dump(10))

    flows, v6 = asyncio.run(main())
    assert_same_table(flows, reference_views(ns), label_names)
    assert {f.id for f in v6} == ref_ids(ns, "-f", "ipv6")
    assert sorted(f.id for f in flows) == sorted(f.id for f in ct.dump())


@pytest.mark.parametrize("kwargs,args", [f[1:] for f in FILTERS], ids=[f[0] for f in FILTERS])
def test_async_dump_filters_like_reference(ns, ct, kwargs, args) -> None:
    build_table(ct)

    async def main():
        async with AsyncConntrack() as act:
            return await collect(act.dump(**kwargs))

    ours = [f.id for f in asyncio.run(main())]
    assert len(ours) == len(set(ours))
    assert set(ours) == ref_ids(ns, *args)


def test_async_dump_of_empty_and_other_tables(ns) -> None:
    async def main():
        async with AsyncConntrack() as act:
            return (await collect(act.dump()), await collect(act.dump(table="dying")),
                    await collect(act.dump(table="unconfirmed")))

    assert asyncio.run(main()) == ([], [], [])


def test_async_events_from_the_reference(ns) -> None:
    cases = all_cases()

    async def main():
        async with AsyncConntrack() as act:
            agen = act.events(Group.NEW | Group.DESTROY)
            first = asyncio.ensure_future(agen.__anext__())
            await asyncio.sleep(0)  # let the generator open and bind its socket
            for case in cases:
                p = await asyncio.create_subprocess_exec(
                    "ip", "netns", "exec", ns.name, CONNTRACK, "-I", *case.args,
                    stderr=asyncio.subprocess.DEVNULL)
                assert await p.wait() == 0
            got = [await asyncio.wait_for(first, 5)]
            while len(got) < len(cases):
                got.append(await asyncio.wait_for(agen.__anext__(), 5))
            p = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", ns.name, CONNTRACK, "-F", stderr=asyncio.subprocess.DEVNULL)
            assert await p.wait() == 0
            while len(got) < 2 * len(cases):
                got.append(await asyncio.wait_for(agen.__anext__(), 5))
            await agen.aclose()
            return got

    got = asyncio.run(main())
    new, gone = got[:len(cases)], got[len(cases):]
    assert {e.type for e in new} == {EventType.NEW} and {e.type for e in gone} == {EventType.DESTROY}
    assert sorted(e.flow.id for e in new) == sorted(e.flow.id for e in gone)
    assert sorted((e.flow.family, e.flow.proto) for e in new) == sorted(
        (c.family, c.flow.proto) for c in cases)
