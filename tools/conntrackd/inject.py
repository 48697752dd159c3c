"""``DisableExternalCache``: received state messages go straight into the kernel
(conntrackd.md §6.6), through the library's client on a socket of its own (its events
are of origin "inject" and never go back to the peers).

CT NEW creates (EEXIST: delete, create once more); CT UPD updates (ENOENT: create; any
other error: delete, create); CT DEL deletes (ENOENT ignored); expectations NEW/UPD
create (EEXIST: delete, create once more), DEL deletes. The entry sent is the C
daemon's (:mod:`.wire.kernel`). Counters are the ``external inject:`` block of ``-s``
(:attr:`.syncmode.SyncMode.inject`: created/failed, updated/failed,
destroyed/failed); failures log the reference's warnings.
"""
from __future__ import annotations

import errno

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from .sync.common import CacheOp

from .wire.kernel import commit_expect, commit_flow, update_flow


def _err(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e)


class Injector:
    """Applies injected :class:`~.sync.common.CacheOp` actions to the kernel."""

    def __init__(self, client: Any, counters: list[int], log: Callable[[str, str], None], *,
                 window_tracking: bool = False) -> None:
        self.client = client
        self.counters = counters
        self.log = log
        self.window_tracking = window_tracking

    def apply(self, op: CacheOp) -> None:
        try:
            obj = op.obj
        except Exception as e:  # noqa: BLE001 - a payload that cannot be built: dropped
            self.log("warning", f"could not inject entry: {e}")
            return
        if op.expect:
            self._expect(op.op, obj)
        else:
            self._flow(op.op, obj)

    # --- conntrack --------------------------------------------------------------------------
    def _flow(self, kind: str, flow: Any) -> None:
        c = self.counters
        ct = self.client
        wt = self.window_tracking
        if kind == "delete":
            try:
                ct.delete(flow)
                c[4] += 1
            except OSError as e:
                if e.errno != errno.ENOENT:
                    c[5] += 1
                    self.log("warning", f"could not destroy ct entry: {_err(e)}")
            return
        new = commit_flow(flow, timeout=flow.timeout, window_tracking=wt)
        if kind == "new":
            try:
                ct.create(new)
                c[0] += 1
                return
            except OSError as e:
                if e.errno != errno.EEXIST:
                    c[1] += 1
                    self.log("warning", f"could not add new ct entry: {_err(e)}")
                    return
            try:
                ct.delete(new)
                ct.create(new)
                c[0] += 1
            except OSError as e:
                c[1] += 1
                self.log("warning",
                         f"could not add new ct entry, even when deleting it first: {_err(e)}")
            return
        try:
            ct.update(update_flow(flow, timeout=flow.timeout, window_tracking=wt))
            c[2] += 1
            return
        except OSError as e:
            first = e
        try:
            if first.errno != errno.ENOENT:
                ct.delete(new)
            ct.create(new)
            c[2] += 1
        except OSError as e:
            c[3] += 1
            what = "even if creating it instead" if first.errno == errno.ENOENT \
                else "even when deleting it first"
            self.log("warning", f"could not update ct entry, {what}: {_err(e)}")

    # --- expectations -----------------------------------------------------------------------
    def _expect(self, kind: str, exp: Any) -> None:
        ct = self.client
        if kind == "delete":
            try:
                ct.delete_expect(exp)
            except (OSError, ValueError) as e:
                if getattr(e, "errno", None) != errno.ENOENT:
                    self.log("warning", f"could not destroy exp entry: {_err(e)}")
            return
        new = commit_expect(exp)
        try:
            ct.create_expect(new)
            return
        except OSError as e:
            if e.errno != errno.EEXIST:
                self.log("warning", f"could not add new exp entry: {_err(e)}")
                return
        try:
            ct.delete_expect(exp)
            ct.create_expect(new)
        except (OSError, ValueError) as e:
            self.log("warning",
                     f"could not add new exp entry, even when deleting it first: {_err(e)}")
