"""The programs: conntrack, conntrackd and fixture tooling (imported as conntrack_tools)."""
