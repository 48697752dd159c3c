#!/usr/bin/env bash
# The whole test suite on this machine, as root. Installs what a fresh machine lacks: the
# Debian packages (the reference conntrack tools, nftables, iproute2, strace, tshark,
# keepalived, a C compiler for one test's LD_PRELOAD library) and, into the project's
# virtual environment .venv in the checkout, this project with its test extras (nothing
# goes into the system's Python). Then, without arguments: the packaging check (wheel and
# sdist install into fresh environments: scripts/check_package.sh), the first-run check
# (README's first command in a fresh clone changes no command of the host:
# scripts/check_first_run.sh) and all of pytest. With arguments, only pytest, with them
# (e.g. `scripts/test.sh -k events`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_setup.sh
need_root
SECONDS=0
apt_install conntrack conntrackd nftables iproute2 strace tshark keepalived gcc libc6-dev git
project_venv test
.venv/bin/python -m nfnl.compile --check
echo "setup: ${SECONDS}s" >&2
if [ $# -eq 0 ]; then
    start=$SECONDS
    scripts/check_package.sh
    echo "packaging check: $((SECONDS - start))s" >&2
    start=$SECONDS
    scripts/check_first_run.sh
    echo "first-run check: $((SECONDS - start))s" >&2
fi
exec .venv/bin/python -m pytest -q "$@"
