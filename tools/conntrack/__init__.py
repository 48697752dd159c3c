"""Our `conntrack` command: argument parsing, command execution, output."""
