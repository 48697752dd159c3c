"""Output formats of the ``conntrack`` tool as pure functions (spec §7–§9), plus ``-o json``.

``text`` (default line, event prefix, timestamp prefix), ``xml``, ``save``, ``json`` are
declared once as rule lists and compiled per presence signature by ``_engine``; each
offers ``format_flow(flow, opts)``, ``flow_formatter(opts)`` and
``compile_for_shape(shape, opts)`` (raw values of the shape decoder straight to text).
``expect`` formats expectations, ``stats`` the ``-S``/``-C`` output. :class:`Options`
carries the ``-o`` flags, the label map, the event type and the clock.
"""
from ._engine import LabelMap, Options

__all__ = ["Options", "LabelMap"]
