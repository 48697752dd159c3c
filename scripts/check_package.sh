#!/usr/bin/env bash
# Packaging check (run by scripts/test.sh): `python -m build` makes an sdist and a wheel
# (build itself in a throw-away virtual environment), each is installed with pip into a
# fresh virtual environment of its own, and the installed `conntrack -V` (in a private
# network namespace), `conntrack-fixture` and the entry points nfnl finds subsystems by
# must work there. Nothing outside temporary directories changes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
tmp=$(mktemp -d)
NS=pyconntrack-pkg-$$
cleanup() {
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
pip_q=(-q --disable-pip-version-check)

"$PY" -m venv "$tmp/build-env"
# build with the backend pyproject.toml names, installed once here (the pip install of the
# sdist below builds in an isolated environment of its own, from build-system.requires)
backend=$(sed -n 's/^requires = \[\(.*\)\]/\1/p' pyproject.toml | tr -d '"' | tr ',' ' ')
# shellcheck disable=SC2086
"$tmp/build-env/bin/pip" install "${pip_q[@]}" build wheel $backend
# built from a copy of the tree (setuptools leaves build files in its source directory);
# the wheel is built from the sdist: the sdist must hold everything a build needs
mkdir "$tmp/src"
tar -c --exclude=./.venv --exclude=./.git . | tar -x -C "$tmp/src"
"$tmp/build-env/bin/python" -m build --no-isolation --outdir "$tmp/dist" "$tmp/src" \
    >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log" >&2; exit 1; }
sdist=$(ls "$tmp"/dist/*.tar.gz)
wheel=$(ls "$tmp"/dist/*.whl)

ip netns add "$NS"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
expected="conntrack v1.4.7 (conntrack-tools)
pyconntrack $version (pure-Python conntrack-tools)"
for artifact in "$wheel" "$sdist"; do
    env="$tmp/env-$(basename "$artifact")"
    "$PY" -m venv "$env"
    "$env/bin/pip" install "${pip_q[@]}" "$artifact"
    got=$(ip netns exec "$NS" env CONNTRACK_IMPLEMENTATION=1 "$env/bin/conntrack" -V)
    if [ "$got" != "$expected" ]; then
        printf 'check_package: %s: conntrack -V printed\n%s\nexpected\n%s\n' \
            "$(basename "$artifact")" "$got" "$expected" >&2
        exit 1
    fi
    "$env/bin/conntrack-fixture" --help >/dev/null
    # nfnl finds ctnetlink (and the schema modules) through the package's entry points
    (cd / && "$env/bin/python" -c "
from nfnl import compile, registry
assert registry.subsystem('ctnetlink') is not None, 'nfnl.subsystems entry point missing'
assert 'ctnetlink.schema' in compile.targets(), 'nfnl.compile entry point missing'")
    # the programs install as conntrack_tools, never as a top-level `tools`
    if (cd / && "$env/bin/python" -c "import tools" 2>/dev/null); then
        echo "check_package: $(basename "$artifact") installs a top-level package 'tools'" >&2
        exit 1
    fi
    echo "check_package: $(basename "$artifact"): pip install and conntrack -V OK"
done
