#!/usr/bin/env bash
# Creates (idempotently, as root only) the system users and groups the permission tests run child processes as:
#   xmemtest        a second user (the older permission tests run it with primary group root)
#   xmemtest-pool   a group: the pools' group in the tests
#   xmemtest-a      member: primary group xmemtest-a, supplementary group xmemtest-pool
#   xmemtest-b      member: primary group xmemtest-b, supplementary group xmemtest-pool
#   xmemtest-out    an outsider: its own group only, no access to the pools
# Without root it does nothing (the tests that need these users are skipped with their reason).
set -euo pipefail
[[ "$(id -u)" -eq 0 ]] || exit 0

ensure_user() { # user [supplementary group]
    if ! id -u "$1" >/dev/null 2>&1; then
        useradd --system --user-group --no-create-home --shell /usr/sbin/nologin ${2:+--groups "$2"} "$1"
    elif [[ -n "${2:-}" ]] && ! id -nG "$1" | tr ' ' '\n' | grep -qx "$2"; then
        usermod --append --groups "$2" "$1"
    fi
}

getent group xmemtest-pool >/dev/null || groupadd --system xmemtest-pool
ensure_user xmemtest
ensure_user xmemtest-a xmemtest-pool
ensure_user xmemtest-b xmemtest-pool
ensure_user xmemtest-out
