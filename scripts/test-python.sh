#!/usr/bin/env bash
# Tests the C ABI and the Python package against what scripts/build-native.sh built:
#   1. tests/c/check_abi.py: xmem.h, `nm -D libxmem.so`, the C# entry points and the Python declarations agree
#   2. tests/c/roundtrip.c, compiled with gcc against include/xmem.h only, runs a round trip; tests/c/guard_handle_race.c
#      races guard handles between threads (stale handles never resolve, one release per acquire, a read racing
#      with a release is OK or gone), and
#      tests/c/handle_slot_reuse.c that exited threads' handle-table slots come back; tests/c/pool_close_race.c
#      closes pools under calls in flight (the close's grace period); tests/c/fork_gate_test.c
#      tests the C fork gate, and tests/c/fork_stress.c forks 1000 times while 13 threads (12 of them starting threads
#      new to the runtime) call libxmem: 0 hung, died or failed children; tests/c/fork_child_thread_gc.c that a
#      forked child's own threads may call xmem and its collections complete; tests/c/two_runtimes.c that two copies
#      of libxmem (two .NET runtimes) work side by side in one process, and through a fork
#   3. builds the C# helper process (tests/Xmem.TestChild) for the cross-language tests, and the ONNX Runtime example
#      examples/OnnxConsumer (NuGet: Microsoft.ML.OnnxRuntime) for tests/python/test_onnx_consumer.py
#   4. a fresh venv (artifacts/venv-python, --system-site-packages for numpy/torch/pytest), the wheel installed
#      offline (--no-index), and pytest tests/python run from that venv against the INSTALLED package, twice: with
#      the compiled module (XMEM_IMPLEMENTATION=compiled), then with the ctypes fallback (XMEM_IMPLEMENTATION=ctypes)
# Exits non-zero on any failure, including pytest finding no tests (exit 5).
#
# Usage: scripts/test-python.sh [pytest args...]      (env: PYTHON=/usr/bin/python3, XMEM_CONFIG=Release)
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
python=${PYTHON:-/usr/bin/python3}
config=${XMEM_CONFIG:-Release}
# No stale-pool sweep in the processes of a test run (the C round trip included): on a machine shared with other runs,
# a sweep here must not remove a stale pool that one of their tests is looking at (docs/layout.md, "Removal").
export XMEM_STALE_SWEEP=${XMEM_STALE_SWEEP:-0}
lib=artifacts/native/libxmem.so
fail() { echo "test-python: FAILED: $*" >&2; exit 1; }

[[ -f "$lib" ]] || fail "$lib is missing; run scripts/build-native.sh first."
shopt -s nullglob
wheels=(dist/xmem_shm-*.whl)
[[ ${#wheels[@]} -eq 1 ]] || fail "expected one dist/xmem_shm-*.whl, found ${#wheels[@]}; run scripts/build-native.sh."
wheel=${wheels[0]}

echo "test-python: [1/4] C ABI consistency"
"$python" tests/c/check_abi.py --lib "$lib" || fail "xmem.h, libxmem.so exports, C# entry points and Python disagree."

echo "test-python: [2/4] C round trip (gcc against include/xmem.h)"
gcc -std=c11 -O1 -Wall -Wextra -Werror -I include tests/c/roundtrip.c -L artifacts/native -lxmem -lpthread \
    -Wl,-rpath,'$ORIGIN' -o artifacts/native/roundtrip || fail "tests/c/roundtrip.c does not compile against include/xmem.h."
timeout 120 artifacts/native/roundtrip || fail "tests/c/roundtrip failed."
gcc -std=c11 -O1 -Wall -Wextra -Werror -I include tests/c/guard_handle_race.c -L artifacts/native -lxmem -lpthread \
    -Wl,-rpath,'$ORIGIN' -o artifacts/native/guard_handle_race || fail "tests/c/guard_handle_race.c does not compile."
timeout 120 artifacts/native/guard_handle_race || fail "tests/c/guard_handle_race failed: a released guard handle resolved again, or a release counted twice."
gcc -std=c11 -O1 -Wall -Wextra -Werror -I include tests/c/handle_slot_reuse.c -L artifacts/native -lxmem -lpthread \
    -Wl,-rpath,'$ORIGIN' -o artifacts/native/handle_slot_reuse || fail "tests/c/handle_slot_reuse.c does not compile."
timeout 120 artifacts/native/handle_slot_reuse || fail "tests/c/handle_slot_reuse failed: the handle-table slots of exited threads did not come back."
gcc -std=c11 -O1 -Wall -Wextra -Werror -I include tests/c/pool_close_race.c -L artifacts/native -lxmem -lpthread \
    -Wl,-rpath,'$ORIGIN' -o artifacts/native/pool_close_race || fail "tests/c/pool_close_race.c does not compile."
timeout 300 artifacts/native/pool_close_race 300 || fail "tests/c/pool_close_race failed: a pool was closed under a call in flight, or a call ended with a status other than OK or closed."
# The fork gate (src/Xmem.Native/Gate/fork_gate.c) on its own, then libxmem forked under load by threads new to the
# runtime: every child must end well (hung children were the bug; docs/robustness.md, "fork").
gcc -std=c11 -O1 -Wall -Wextra -Werror -pthread -I src/Xmem.Native/Gate tests/c/fork_gate_test.c \
    src/Xmem.Native/Gate/fork_gate.c -o artifacts/native/fork_gate_test || fail "tests/c/fork_gate_test.c does not compile."
timeout 300 artifacts/native/fork_gate_test || fail "tests/c/fork_gate_test failed."
gcc -std=c11 -O1 -Wall -Wextra -Werror -I include tests/c/fork_stress.c -L artifacts/native -lxmem -lpthread \
    -Wl,-rpath,'$ORIGIN' -o artifacts/native/fork_stress || fail "tests/c/fork_stress.c does not compile against include/xmem.h."
XMEM_FORK_STRESS_CHILD_THREAD=1 timeout 300 artifacts/native/fork_stress "/xmem-forkstress-$$-$RANDOM" 1000 1 12 \
    || fail "tests/c/fork_stress: a forked child hung, died or failed (its line above says which)."
gcc -std=c11 -O1 -Wall -Wextra -Werror -I include tests/c/two_runtimes.c -ldl -lpthread \
    -o artifacts/native/two_runtimes || fail "tests/c/two_runtimes.c does not compile."
timeout 120 artifacts/native/two_runtimes artifacts/native/libxmem.so 5 \
    || fail "tests/c/two_runtimes: two copies of libxmem (two .NET runtimes) in one process failed or hung."
gcc -std=c11 -O1 -Wall -Wextra -Werror -I include tests/c/fork_child_thread_gc.c -L artifacts/native -lxmem -lpthread \
    -Wl,-rpath,'$ORIGIN' -o artifacts/native/fork_child_thread_gc || fail "tests/c/fork_child_thread_gc.c does not compile."
timeout 300 artifacts/native/fork_child_thread_gc 4 \
    || fail "tests/c/fork_child_thread_gc: a forked child whose own threads called xmem hung or failed (the runtime's thread list after fork: src/Xmem.Native/Gate/runtime_threads.c)."

echo "test-python: [3/4] C# test child, examples/OnnxConsumer"
dotnet build tests/Xmem.TestChild/Xmem.TestChild.csproj -c "$config" -nologo -v:q >artifacts/native/testchild-build.log 2>&1 \
    || { tail -30 artifacts/native/testchild-build.log >&2; fail "tests/Xmem.TestChild does not build."; }
export XMEM_TESTCHILD_DLL="$root/tests/Xmem.TestChild/bin/$config/net10.0/Xmem.TestChild.dll"
# The ONNX Runtime example (not in xmem.slnx: its package is large), for tests/python/test_onnx_consumer.py.
dotnet build examples/OnnxConsumer/OnnxConsumer.csproj -c "$config" -nologo -v:q >artifacts/native/onnx-build.log 2>&1 \
    || { tail -30 artifacts/native/onnx-build.log >&2; fail "examples/OnnxConsumer does not build."; }
export XMEM_ONNX_CONSUMER_DLL="$root/examples/OnnxConsumer/bin/$config/net10.0/linux-x64/OnnxConsumer.dll"

echo "test-python: [4/4] venv + wheel (offline) + pytest"
venv=artifacts/venv-python
rm -rf "$venv"
"$python" -m venv --system-site-packages "$venv" || fail "could not create a venv with $python -m venv."
"$venv/bin/python" -m pip install --no-index --no-deps --force-reinstall --quiet --disable-pip-version-check "$wheel" \
    || fail "pip could not install $wheel offline."

timeout_args=()
if "$venv/bin/python" -c "import pytest_timeout" 2>/dev/null; then
    timeout_args=(--timeout=180)
fi
# Run outside the source tree so that `import xmem` can only find the installed package (conftest.py checks it).
# XMEM_LIBRARY is unset: the tests load the library packaged in the wheel (one test sets it explicitly).
# Twice: the compiled implementation (XMEM_IMPLEMENTATION=compiled: the import fails if it does not load), then the
# ctypes fallback behind the same API.
for impl in compiled ctypes; do
    echo "test-python: pytest, XMEM_IMPLEMENTATION=$impl"
    (cd "$venv" && env -u XMEM_LIBRARY XMEM_EXPECT_INSTALLED=1 XMEM_IMPLEMENTATION=$impl "$root/$venv/bin/python" \
        -m pytest "$root/tests/python" -p no:cacheprovider -q "${timeout_args[@]}" "$@")
    rc=$?
    case $rc in
        0) echo "test-python: ok ($impl)" ;;
        5) fail "pytest collected no tests ($impl)." ;;
        *) fail "pytest exited with $rc ($impl)." ;;
    esac
done
