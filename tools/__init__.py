"""The programs (installed as the import package ``conntrack_tools``): the ``conntrack`` command,
the ``conntrackd`` daemon and the fixture tooling."""
