"""Our `conntrack` command: argument parsing, command execution, output.

The parsing layer (no netlink, no output formatting): :func:`.parse.parse_command_line`
turns ``argv`` into an :class:`.invocation.Invocation` (a :class:`.invocation.Batch` for
``-R``), raising :class:`.errors.CliError` with the reference's exact message and exit
status; :func:`.parse.runtime_checks` holds the checks made when a command starts;
:mod:`.usage` has the ``-h``/``-V`` texts. Helpers: ``getopt`` (glibc getopt_long),
``libc`` (C number and address conversions), ``netdb`` (protocol database), ``labels``
(connlabel.conf), ``protocols`` (per-protocol options and checks), ``legality`` (the
option/command matrix), ``batch`` (``-R`` files).
"""
