#!/usr/bin/env bash
# Run the whole test suite on this machine (as root): installs what a fresh machine
# lacks (Debian packages: the reference conntrack tools, nftables, iproute2, strace,
# tshark; Python: this project with its test extras), checks that both `pip install .`
# and `pip install -e .` work, then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "scripts/test.sh must run as root (kernel tests use network namespaces)" >&2
    exit 1
fi

need=()
for pkg in conntrack conntrackd nftables iproute2 strace tshark keepalived; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need[@]}"
fi

PY=${PYTHON:-python3}

# 1. a regular (non-editable) install into a throw-away venv must work
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
"$PY" -m venv "$venv"
"$venv/bin/pip" install -q . 
"$venv/bin/python" - <<'PYEOF'
import importlib
for m in ("nfnl", "nfnl.socket", "ctnetlink", "ctnetlink.client", "ctnetlink.formats",
          "conntrack_tools", "conntrack_tools.conntrack"):
    importlib.import_module(m)
print("pip install . OK")
PYEOF

# 2. the editable install the suite runs against
"$PY" -m pip install -q -e '.[test]'
"$PY" -m nfnl.compile --check

exec "$PY" -m pytest -q "$@"
