#!/usr/bin/env bash
# The live `xmem top` in a real terminal (tmux), against a known pipeline running beside it:
#   a creator (Xmem.TestChild session --create), a producer that sends 20 buffers into channel "frames" of depth 4,
#   a taker that takes 10 of them and stops (so the producer sent 14 and waits to send its 15th: frames is full, one
#   blocked sender, the bottleneck), a receiver waiting on channel "idle" (one blocked receiver).
# Starts `xmem top` in a tmux pane, captures the pane until it shows the pipeline, checks the figures against it,
# sends q, checks that the terminal is restored (the shell's screen back, no alternate screen, cursor visible), then
# does the same quitting with Ctrl+C. Prints "test-top: N passed, M failed"; exit 1 on any failure.
# Usage: scripts/test-top.sh            (after `dotnet build xmem.slnx -c Release`; env XMEM_CONFIG=Release)
#        scripts/test-top.sh --capture FILE   also writes the captured screen to FILE and `xmem stat` of the pool to
#                                             FILE.stat (docs/cli.md shows both)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
config=${XMEM_CONFIG:-Release}
capture_to=""
if [[ "${1:-}" == "--capture" ]]; then capture_to=$2; fi
command -v tmux >/dev/null || { echo "test-top: tmux is not installed (scripts/install-deps.sh installs it)" >&2; exit 1; }
cli_dll="$root/src/Xmem.Cli/bin/$config/net10.0/Xmem.Cli.dll"
child_dll="$root/tests/Xmem.TestChild/bin/$config/net10.0/Xmem.TestChild.dll"
for f in "$cli_dll" "$child_dll"; do
    [[ -f "$f" ]] || { echo "test-top: $f is not built (dotnet build xmem.slnx -c $config)" >&2; exit 1; }
done

work=$(mktemp -d)
pool="toptest-$$-$RANDOM"
# One tmux server per run (see run_top): a new session on the socket of a server that kill-server is still taking
# down fails with "server exited unexpectedly".
socket="xmem-top-$$-q"
pids=()
cleanup() {
    for s in "xmem-top-$$-q" "xmem-top-$$-C-c"; do tmux -L "$s" kill-server 2>/dev/null || true; done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    dotnet "$cli_dll" rm "$pool" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# A child whose stdin stays open (a fifo held by this shell) until cleanup; its replies go to $work/NAME.log.
start_child() {
    local name=$1; shift
    mkfifo "$work/$name.in"
    dotnet "$child_dll" "$@" < "$work/$name.in" > "$work/$name.log" 2> "$work/$name.err" &
    pids+=($!)
    exec {fd}> "$work/$name.in" # keeps the child's stdin open
}
wait_for() { # FILE PATTERN WHAT
    for _ in $(seq 1 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "test-top: watchdog: $3 did not happen within 60 s" >&2; cat "$1" "${1%.log}.err" >&2 2>/dev/null || true; exit 1
}

start_child creator session --create "$pool" 32
wait_for "$work/creator.log" '^ready' "the pool's creation"
start_child producer channel-produce "$pool" frames 4 1 20
start_child taker channel-take "$pool" frames 4 10
start_child idle channel-take "$pool" idle 4 1
wait_for "$work/producer.log" '^ready' "the producer's start"
wait_for "$work/idle.log" '^ready' "the idle receiver's start"
wait_for "$work/taker.log" '^took 10' "the taker's 10 receives"
producer_pid=$(awk '/^ready/ { print $2 }' "$work/producer.log")

passed=0 failed=0
check() { # WHAT CONDITION...
    local what=$1; shift
    if "$@"; then passed=$((passed + 1)); echo "  ok: $what"; else failed=$((failed + 1)); echo "  FAILED: $what"; fi
}
pane() { tmux -L "$socket" capture-pane -p -t top; }
row() { pane | grep -E "^ *$1 " | head -1; }

run_top() { # how-to-quit: q or C-c
    local quit=$1
    echo "xmem top in tmux, quitting with $quit:"
    socket="xmem-top-$$-$quit" # a server of its own (see above)
    tmux -L "$socket" new-session -d -s top -x 180 -y 40 "env -u TMUX PS1='$ ' bash --norc --noprofile"
    tmux -L "$socket" send-keys -t top "echo shell-before-top" Enter
    tmux -L "$socket" send-keys -t top "dotnet $cli_dll top --interval 0.5" Enter
    local shown=0
    for _ in $(seq 1 600); do
        if pane | grep -q "◀ full" && row frames | grep -q " 14 .* 10 " && row idle | grep -qE " 0 +1 "; then shown=1; break; fi
        sleep 0.1
    done
    check "the live view shows pool $pool with its channels within 60 s" test $shown -eq 1
    pane > "$work/screen.txt"
    local frames idle
    frames=$(row frames) idle=$(row idle)
    check "frames: depth 4/4, 0.0 sends/s and receives/s, 1 blocked sender, 0 blocked receivers, senders waiting (SEND WAIT above 0%), 14 sent, 10 received, highlighted as the slowest stage" \
        grep -qE "^ *frames +queue +4/4 +0\.0 +0\.0 +1 +0 +[1-9][0-9]*% +14 +10 +◀ full: slowest stage is its receivers" <<<"$frames"
    check "idle: depth 0/4, 0 blocked senders, 1 blocked receiver, nothing sent" \
        grep -qE "^ *idle +queue +0/4 +0\.0 +0\.0 +0 +1 +0% +0 +0 *$" <<<"$idle"
    check "the pool line: 5/32 slots in use" grep -q "$pool live  slots 5/32 " "$work/screen.txt"
    check "the producer (pid $producer_pid) among the attached processes" grep -q "processes: .*$producer_pid dotnet" "$work/screen.txt"
    check "in the alternate screen while running" test "$(tmux -L "$socket" display -p -t top '#{alternate_on}')" = 1
    if [[ "$quit" == q ]]; then tmux -L "$socket" send-keys -t top q; else tmux -L "$socket" send-keys -t top C-c; fi
    local back=0
    for _ in $(seq 1 300); do
        if [[ "$(tmux -L "$socket" display -p -t top '#{alternate_on}')" == 0 ]] && pane | grep -q '^\$ *$'; then back=1; break; fi
        sleep 0.1
    done
    check "after $quit: xmem top exited and the shell prompt is back" test $back -eq 1
    check "after $quit: the screen from before top is restored, the view gone" bash -c "tmux -L '$socket' capture-pane -p -t top | grep -q '^shell-before-top' && ! tmux -L '$socket' capture-pane -p -t top | grep -q 'xmem top —'"
    check "after $quit: the cursor is visible" test "$(tmux -L "$socket" display -p -t top '#{cursor_flag}')" = 1
    tmux -L "$socket" send-keys -t top 'echo "exit=$?"' Enter
    sleep 0.5
    check "after $quit: xmem top's exit status is 0" bash -c "tmux -L '$socket' capture-pane -p -t top | grep -q '^exit=0'"
}

run_top q
if [[ -n "$capture_to" ]]; then
    cp "$work/screen.txt" "$capture_to"
    dotnet "$cli_dll" stat "$pool" > "$capture_to.stat"
fi
run_top C-c
echo "test-top: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
