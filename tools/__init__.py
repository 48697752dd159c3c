"""The programs (installed as the import package ``conntrack_tools``): the ``conntrack`` command
and the fixture tooling."""
