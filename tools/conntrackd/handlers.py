"""Control-request codes (spec §4.2) and the kernel-table step of the dispatch (§4.3).

The daemon answers a request in three steps: the generic handler (kill, runtime
statistics, child processes), then — in sync or stats mode — :func:`kernel_request`
(flush or resync the kernel tables), then the mode's own ``handle(code)``. ``JSON`` is
our extension: a client that wants ``-o json`` sends ``code | JSON``; the C daemon
ignores unknown codes (it closes the connection without a byte), ours answers with one
JSON document (``-s``) or one JSON object per line (dumps).
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

CT_FLUSH_MASTER = 0
CT_RESYNC_MASTER = 1
CT_DUMP_INTERNAL = 16
CT_DUMP_EXTERNAL = 17
CT_COMMIT = 18
CT_FLUSH_CACHE = 19
KILL = 20
STATS = 21
SEND_BULK = 22
REQUEST_DUMP = 23
CT_DUMP_INT_XML = 24
CT_DUMP_EXT_XML = 25
RESET_TIMERS = 26
DEBUG_INFO = 27
STATS_NETWORK = 28
STATS_CACHE = 29
STATS_RUNTIME = 30
STATS_LINK = 31
STATS_RSQUEUE = 32
CT_FLUSH_INT_CACHE = 33
CT_FLUSH_EXT_CACHE = 34
STATS_PROCESS = 35
STATS_QUEUE = 36
EXP_STATS = 37
EXP_FLUSH_MASTER = 38
EXP_RESYNC_MASTER = 39
EXP_DUMP_INTERNAL = 40
EXP_DUMP_EXTERNAL = 41
EXP_COMMIT = 42
ALL_FLUSH_MASTER = 43
ALL_RESYNC_MASTER = 44
ALL_FLUSH_CACHE = 45
ALL_COMMIT = 46
EXP_DUMP_INT_XML = 47
EXP_DUMP_EXT_XML = 48

JSON = 0x10000
"""Our ``-o json`` extension bit (the C daemon ignores codes it does not know)."""


def kernel_request(code: int, kernel: Any, log: Callable[[str, str], None], *,
                   populate: bool = True, expectations: bool = False) -> None:
    """Step 2 of the dispatch: kernel table flushes and resyncs (no reply text).

    ``populate`` is False when the mode keeps no internal cache (``-R`` is then
    refused with the reference's message); ``expectations`` = ``ExpectationSync``.
    """
    if code in (CT_FLUSH_MASTER, ALL_FLUSH_MASTER):
        log("notice", "flushing kernel conntrack table")
        kernel.flush_master()
    if expectations and code in (EXP_FLUSH_MASTER, ALL_FLUSH_MASTER):
        log("notice", "flushing kernel expect table")
        kernel.flush_master_expect()
    if code in (CT_RESYNC_MASTER, ALL_RESYNC_MASTER):
        if populate:
            log("notice", "resync with master conntrack table")
            kernel.resync_master()
        else:
            log("notice", "resync is unsupported in this mode")
    if expectations and code in (EXP_RESYNC_MASTER, ALL_RESYNC_MASTER):
        if populate:
            log("notice", "resync with master expect table")
            kernel.resync_master_expect()
        else:
            log("notice", "resync is unsupported in this mode")
