# Sourced by scripts/demo.sh and scripts/test.sh (not run on its own): the root check, the
# Debian packages a fresh machine lacks, and the project's virtual environment `.venv` in the
# checkout. Nothing is installed into the system's Python: the project's commands (our
# `conntrack`, `conntrack-fixture`) exist only in .venv/bin, so /usr/sbin/conntrack stays
# the `conntrack` of every shell.

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "$0: run as root (it creates network namespaces); prefix sudo if you are not root" >&2
        exit 1
    fi
}

_apt_updated=
apt_install() {  # PACKAGE...: install those of the Debian packages that are missing
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null; then
        echo "$0: needs the Debian packages ${missing[*]} (and there is no apt-get)" >&2
        exit 1
    fi
    echo "installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture: no
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    if [ -z "$_apt_updated" ]; then
        apt-get update -q >/dev/null
        _apt_updated=1
    fi
    # no service may start on installation (conntrackd, keepalived: their default
    # configurations would run daemons in the host's namespace)
    local policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy=1
    fi
    local status=0
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null || status=$?
    [ -z "$policy" ] || rm -f /usr/sbin/policy-rc.d
    [ "$status" = 0 ] || exit "$status"
}

project_venv() {  # [EXTRA]: .venv with this project installed (editable) and its extras
    local py=${PYTHON:-python3} extra=${1:-} want
    [ -x .venv/bin/python ] && ! .venv/bin/python -c "" 2>/dev/null && rm -rf .venv  # broken
    if [ ! -x .venv/bin/python ]; then
        if ! "$py" -m venv .venv 2>/dev/null; then  # Debian's python3 needs python3-venv
            rm -rf .venv
            apt_install python3-venv
            "$py" -m venv .venv
        fi
    fi
    # reinstalled only when pyproject.toml or the extras changed
    want="$(sha256sum pyproject.toml | cut -d' ' -f1) ${extra}"
    if [ "$(cat .venv/.pyconntrack 2>/dev/null)" != "$want" ]; then
        echo "installing this project into .venv${extra:+ (with $extra)}" >&2
        .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extra:+[$extra]}"
        echo "$want" > .venv/.pyconntrack
    fi
}
