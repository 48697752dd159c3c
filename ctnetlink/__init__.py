"""Conntrack and expectations over ctnetlink: schema, model, codecs, client, formats.

Generic netlink tooling (pretty printing, replay, pcap decoding, the scapy layer) names
ctnetlink's messages through :mod:`ctnetlink.registry`, which ``nfnl.registry`` finds
through the ``nfnl.subsystems`` entry point: importing the package registers nothing.
"""
