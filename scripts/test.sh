#!/usr/bin/env bash
# The project's test command (CI runs it through .ci/run): installs what is missing, builds everything with
# warnings as errors, builds the native library and checks the NuGet packages, runs the .NET test suite, the live `xmem top` in tmux (scripts/test-top.sh), then the
# Python step (each when its script exists), and finally checks that the run left nothing in /dev/shm. Prints
# "N passed, N failed" last.
#
# Usage: scripts/test.sh [extra dotnet test arguments, e.g. --filter FullyQualifiedName~CrossProcess]
#
# As root it creates the users and group of scripts/create-test-users.sh (if absent), which the permission tests
# run child processes as; as any other user those tests are skipped with their reason.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

start=$SECONDS
shm_dir="${XMEM_SHM_DIR:-/dev/shm}"
work="$(mktemp -d "${TMPDIR:-/tmp}/xmem-test.XXXXXX")"
trap 'rm -rf "$work"' EXIT

shm_snapshot() {
    # Names only; `|| true`: an empty directory is not an error.
    find "$shm_dir" -maxdepth 1 -name 'xmem.v1.*' -printf '%f\n' 2>/dev/null | LC_ALL=C sort || true
}
shm_snapshot > "$work/shm-before"

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
./scripts/install-deps.sh

if [[ "$(id -u)" -eq 0 ]]; then
    step "test users xmemtest, xmemtest-a, xmemtest-b, xmemtest-out and group xmemtest-pool (for the permission tests)"
    ./scripts/create-test-users.sh
fi

step "build (Release, warnings are errors)"
dotnet build xmem.slnx -c Release -p:TreatWarningsAsErrors=true

failures=()
passed=0
failed=0

if [[ -x scripts/build-native.sh ]]; then
    step "native library: scripts/build-native.sh (before xunit: the demo's --python tests use it)"
    if ! ./scripts/build-native.sh; then
        failures+=("scripts/build-native.sh")
        failed=$((failed + 1))
    fi
fi

if [[ -x scripts/test-packages.sh ]]; then
    step "packages: scripts/test-packages.sh (NuGet packages Xmem, Xmem.Cli, Xmem.Native, used as a user would)"
    set +e
    ./scripts/test-packages.sh --no-build 2>&1 | tee "$work/packages.log"
    pkg_rc=${PIPESTATUS[0]}
    set -e
    # Its last line: "test-packages: 10 passed, 0 failed".
    pkg_summary="$(grep -E '^test-packages: [0-9]+ passed, [0-9]+ failed$' "$work/packages.log" | tail -n 1 || true)"
    if [[ -n "$pkg_summary" ]]; then
        passed=$((passed + $(sed -E 's/.* ([0-9]+) passed.*/\1/' <<<"$pkg_summary")))
        failed=$((failed + $(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"$pkg_summary")))
    fi
    if [[ $pkg_rc -ne 0 ]]; then
        failures+=("scripts/test-packages.sh (exit code $pkg_rc)")
        if [[ -z "$pkg_summary" ]]; then
            failed=$((failed + 1))
        fi
    fi
fi

step "xunit: tests/Xmem.Tests"
set +e
dotnet test tests/Xmem.Tests/Xmem.Tests.csproj --no-build -c Release \
    --blame-hang-timeout 120s --blame-hang-dump-type none \
    --results-directory "$work/test-results" \
    --logger "console;verbosity=normal" "$@" 2>&1 | tee "$work/xunit.log"
xunit_rc=${PIPESTATUS[0]}
set -e
# The console logger's summary: either one line, "Failed!  - Failed: 1, Passed: 120, Skipped: 2, Total: 123, ...",
# or a block ("Total tests: 123" then "     Passed: 120", "     Failed: 1", ...; a count that is 0 may be left out).
summary="$(grep -E '(Passed|Failed)! +- +Failed: +[0-9]+, +Passed: +[0-9]+' "$work/xunit.log" | tail -n 1 || true)"
if [[ -n "$summary" ]]; then
    x_failed="$(sed -E 's/.*Failed: +([0-9]+),.*/\1/' <<<"$summary")"
    x_passed="$(sed -E 's/.*Passed: +([0-9]+),.*/\1/' <<<"$summary")"
elif grep -qE '^Total tests: +[0-9]+' "$work/xunit.log"; then
    summary="$(sed -n '/^Total tests:/,$p' "$work/xunit.log")"
    x_passed="$(grep -E '^ +Passed: +[0-9]+ *$' <<<"$summary" | head -n 1 | grep -oE '[0-9]+' || echo 0)"
    x_failed="$(grep -E '^ +Failed: +[0-9]+ *$' <<<"$summary" | head -n 1 | grep -oE '[0-9]+' || echo 0)"
fi
if [[ -n "$summary" ]]; then
    passed=$((passed + x_passed))
    failed=$((failed + x_failed))
fi
if [[ $xunit_rc -ne 0 ]]; then
    failures+=("xunit (exit code $xunit_rc)")
    if [[ -z "$summary" ]]; then
        failed=$((failed + 1)) # the run died before its summary (crash, hang): count it as a failure
    fi
fi

if [[ -x scripts/test-top.sh ]]; then
    step "xmem top in a real terminal: scripts/test-top.sh (tmux)"
    set +e
    ./scripts/test-top.sh 2>&1 | tee "$work/top.log"
    top_rc=${PIPESTATUS[0]}
    set -e
    top_summary="$(grep -E '^test-top: [0-9]+ passed, [0-9]+ failed$' "$work/top.log" | tail -n 1 || true)"
    if [[ -n "$top_summary" ]]; then
        passed=$((passed + $(sed -E 's/^test-top: ([0-9]+) passed.*/\1/' <<<"$top_summary")))
        failed=$((failed + $(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"$top_summary")))
    fi
    if [[ $top_rc -ne 0 ]]; then
        failures+=("scripts/test-top.sh (exit code $top_rc)")
        if [[ -z "$top_summary" ]]; then
            failed=$((failed + 1))
        fi
    fi
fi

if [[ -x scripts/test-python.sh ]]; then
    step "python: scripts/test-python.sh"
    set +e
    ./scripts/test-python.sh 2>&1 | tee "$work/pytest.log"
    py_rc=${PIPESTATUS[0]}
    set -e
    # pytest's summary lines, one per pytest run (test-python.sh may run it more than once):
    # "[====] 12 passed, 1 failed, 2 skipped, 1 warning in 3.21s (0:00:03) [====]" (parts may be missing).
    py_summary="$(grep -E '^(=+ )?([0-9]+ [a-z]+(, )?)+ in [0-9.]+s( \([0-9:]+\))?( =+)?$|no tests ran' "$work/pytest.log" || true)"
    sum_of() { { grep -oE "[0-9]+ $1" <<<"$py_summary" || true; } | awk '{ n += $1 } END { print n + 0 }'; }
    py_passed="$(sum_of passed)"
    py_failed="$(sum_of failed)"
    py_errors="$(sum_of 'errors?')"
    passed=$((passed + py_passed))
    failed=$((failed + py_failed + py_errors))
    if [[ $py_rc -ne 0 ]]; then
        failures+=("scripts/test-python.sh (exit code $py_rc)")
        if [[ -z "$py_summary" ]]; then
            failed=$((failed + 1))
        fi
    fi
fi

step "leftovers in $shm_dir"
# Entries that exist now and did not before the run. Another program on this machine may be making pools at the
# same time: only what is still there after a few seconds counts (a concurrent run's leak still shows up here).
leaks=""
for _ in 1 2 3; do
    shm_snapshot > "$work/shm-after"
    leaks="$(LC_ALL=C comm -13 "$work/shm-before" "$work/shm-after")"
    [[ -z "$leaks" ]] && break
    sleep 2
done
if [[ -n "$leaks" ]]; then
    echo "the run left these entries in $shm_dir (a leak to fix in the code, not to delete by hand):"
    sed 's/^/  /' <<<"$leaks"
    failures+=("leftovers in $shm_dir")
    failed=$((failed + 1))
else
    echo "none"
fi

echo
echo "test.sh: $((SECONDS - start)) s"
if [[ ${#failures[@]} -gt 0 ]]; then
    echo "FAILED: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[[ ${#failures[@]} -eq 0 ]]
