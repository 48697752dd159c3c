"""Our drop-in ``conntrackd`` (conntrack-tools 1.4.7): the daemon and its client mode.

The process shell: :mod:`.main` (command line, client requests, life cycle, signals,
exit codes), :mod:`.config` (``conntrackd.conf`` -> a frozen :class:`.config.Config`),
:mod:`.control` (the UNIX control socket: request codes, server framing and dispatch,
client), :mod:`.log` (the reference's log lines, log file, syslog), :mod:`.loop` (the one
selectors loop with timers), :mod:`.process` (lock file, sd_notify, scheduler). The mode
code (caches, kernel side, statistics and sync handlers) plugs into these.
"""
