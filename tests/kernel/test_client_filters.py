"""Dump filters compared, as sets of entry ids, with the reference's filtered listings.

The table holds the catalogue of ``helpers.flows`` for IPv4 and IPv6 (several marks,
statuses, zones of each kind, NAT in both directions) plus a few extra marks and
statuses. Our selection happens in the kernel (mark/mask, status/mask, and
``CTA_FILTER`` for zones and tuple fields, per layer-3 family when the family is 0);
the reference filters marks and statuses in the kernel and everything else in user
space. ``dump_raw`` shows that the kernel did the filtering.
"""
from __future__ import annotations

import pytest
from helpers.filters import FILTERS, build_table
from helpers.reference import parse_extended

from ctnetlink.filters import Filter
from ctnetlink.model import Flow


@pytest.fixture
def table(ns, ct) -> list[Flow]:
    return build_table(ct)


def ref_ids(ns, *args: str) -> set[int]:
    return {e["id"] for e in parse_extended(ns.conntrack("-L", *args, "-o", "extended,id").stdout)}


@pytest.mark.parametrize("kwargs,args", [f[1:] for f in FILTERS], ids=[f[0] for f in FILTERS])
def test_dump_filter_like_reference(ns, ct, table, kwargs, args) -> None:
    ours = [f.id for f in ct.dump(**kwargs)]
    theirs = ref_ids(ns, *args)
    assert len(ours) == len(set(ours))
    assert set(ours) == theirs
    assert theirs, "the filter should select something"
    assert len(theirs) < len(table), "the filter should drop something"


def _v6_address(kwargs: dict) -> bool:
    return any(t is not None and t.family == 10 for t in (kwargs.get("orig"), kwargs.get("reply")))


# Kernels up to at least 6.18 compare IPv6 addresses of CTA_FILTER inverted
# (``!ipv6_addr_cmp`` in ctnetlink_filter_match_tuple): those must be checked in user
# space, so for them the kernel's answer is a superset.
KERNEL_FILTERS = [f for f in FILTERS if not _v6_address(f[1])]


@pytest.mark.parametrize("kwargs", [f[1] for f in KERNEL_FILTERS], ids=[f[0] for f in KERNEL_FILTERS])
def test_kernel_does_the_filtering(ct, table, kwargs) -> None:
    """The entries the kernel sends are already the selected ones (CTA_FILTER, marks,
    status), so user space re-checks nothing away."""
    flt = Filter(**kwargs)
    raw = list(ct.dump_raw(kwargs.get("family", 0), filter=flt))
    assert len(raw) == len(list(ct.dump(**kwargs)))
    if flt.uses_cta_filter:
        assert ct.kernel_filters_tuples is True


def test_user_space_predicate(ns, ct, table) -> None:
    ours = {f.id for f in ct.dump(match=lambda f: f.orig.proto == 47)}
    assert ours == ref_ids(ns, "-p", "gre") and len(ours) == 2


def test_filter_matches_agrees_with_kernel(ct, table) -> None:
    """``Filter.matches`` (the user-space check) selects what the kernel selected."""
    for _, kwargs, _ in FILTERS:
        flt = Filter(**kwargs)
        assert {f.id for f in table if flt.matches(f)} == {f.id for f in ct.dump(**kwargs)}, kwargs
