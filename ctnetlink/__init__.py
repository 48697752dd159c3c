"""Conntrack and expectations over ctnetlink: schema, model, codecs, client, formats.

Importing the package registers the ctnetlink message schemas with :mod:`nfnl.message`
so that generic tooling (pretty printing, replay, pcap decoding) names every attribute.
"""
from nfnl.message import register_message as _register

from . import _compiled

for _mtype, (_name, _set) in _compiled.MESSAGES.items():
    _register(_mtype, _name, _compiled.ATTRS, _set)
del _mtype, _name, _set
