#!/usr/bin/env bash
# First-run check (run by scripts/test.sh, as root): the first command of README.md, exactly
# as printed, in a fresh clone of this repository (its committed HEAD), with no `sudo` on
# PATH. It must succeed, show flows and events, and leave the host's commands as they were:
# `command -v conntrack`, `command -v conntrackd` and whether the system's Python knows the
# project are the same afterwards, and no namespace of the demo is left.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "check_first_run: $*" >&2; exit 1; }

# the first line of the first ```sh block
cmd=$(awk '/^```sh$/ {inside = 1; next} inside {print; exit}' README.md)
[ -n "$cmd" ] || fail "README.md has no \`\`\`sh block"
case "$cmd" in *sudo*) fail "README's first command uses sudo: $cmd" ;; esac

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git clone -q . "$tmp/clone"
else  # not a git checkout: a copy of the tree without its virtual environment
    cp -a . "$tmp/clone"
    rm -rf "$tmp/clone/.venv"
fi

# PATH with every directory holding a `sudo` replaced by a copy (symlinks) without it
nosudo=
IFS=: read -ra dirs <<<"$PATH"
for dir in "${dirs[@]}"; do
    if [ -e "$dir/sudo" ]; then
        farm=$(mktemp -d "$tmp/bin.XXXXXX")
        for f in "$dir"/* "$dir"/.[!.]*; do
            [ -e "$f" ] && [ "$(basename "$f")" != sudo ] && ln -s "$f" "$farm/"
        done
        dir=$farm
    fi
    nosudo=${nosudo:+$nosudo:}$dir
done
if PATH=$nosudo command -v sudo >/dev/null; then fail "sudo still on PATH"; fi

state() {
    echo "conntrack: $(command -v conntrack || echo none)"
    echo "conntrackd: $(command -v conntrackd || echo none)"
    echo "pyconntrack in $PY: $("$PY" -m pip show -q pyconntrack >/dev/null 2>&1 && echo yes || echo no)"
    echo "demo namespaces: $(ip netns list | grep -c '^pyconntrack-demo-' || true)"
}
before=$(state)
echo "check_first_run: running \`$cmd\` in a fresh clone, as root, without sudo"
if ! (cd "$tmp/clone" && PATH=$nosudo bash -c "$cmd") </dev/null >"$tmp/out" 2>&1; then
    cat "$tmp/out" >&2
    fail "README's first command failed"
fi
after=$(state)
if [ "$before" != "$after" ]; then
    cat "$tmp/out" >&2
    printf 'before:\n%s\nafter:\n%s\n' "$before" "$after" >&2
    fail "README's first command changed the host"
fi
# the demo showed real flows (-L) and events (-E)
grep -q '^tcp      6 .*dport=8080' "$tmp/out" || { cat "$tmp/out" >&2; fail "no TCP flow listed"; }
grep -q '\[NEW\] udp ' "$tmp/out" || { cat "$tmp/out" >&2; fail "no UDP event shown"; }
# ... and our conntrackd's statistics and destroyed-flow log of that traffic
grep -q '^connections created:' "$tmp/out" || { cat "$tmp/out" >&2; fail "no conntrackd -s"; }
grep -qP '^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\ttcp      6 .*dport=8080' "$tmp/out" \
    || { cat "$tmp/out" >&2; fail "no destroyed-flow log line of conntrackd"; }
echo "check_first_run: OK (the host's conntrack is still $(command -v conntrack || echo none))"
