#!/usr/bin/env bash
# CI check of mpgs-top (called by .ci/run after `cargo test --workspace`,
# whose debug build this reuses): an echo server with metrics on
# loopback, 20 load-generator clients, and mpgs-top in a tmux pane. The
# capture must show 20 connections and nonzero rates; it is saved as
# target/mpgs-top/capture.txt for a person to look at. Everything runs on
# 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

# Debug builds, fast enough for 20 clients. Built for the whole workspace
# with its examples, as `cargo test --workspace` builds: the same features,
# so after it only mpgs-top itself compiles (`-p mpgs-top` or a few
# `--example`s would unify other features and rebuild some 50 crates).
cargo build --quiet --workspace --bins --examples
bin=target/debug
out=target/mpgs-top
rm -rf "$out" && mkdir -p "$out"
session="mpgs-top-ci-$$"
pids=()
cleanup() {
    tmux kill-session -t "$session" 2>/dev/null || true
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

"$bin/examples/keygen" --name root "$out/keys" >/dev/null
"$bin/examples/echo_server" --bind 127.0.0.1:0 --key "$out/keys/root.key" --metrics 127.0.0.1:0 \
    --no-source-limits >"$out/server.log" 2>&1 &
server=$!
pids+=("$server")
for _ in $(seq 100); do grep -q "^metrics on" "$out/server.log" && break; sleep 0.1; done
addr=$(sed -n 's/^echo server on \([^,]*\),.*/\1/p' "$out/server.log")
url=$(sed -n 's|^metrics on \(http://[^/]*\)/metrics|\1|p' "$out/server.log")
[ -n "$addr" ] && [ -n "$url" ] || { cat "$out/server.log"; echo "FAIL: the server did not start"; exit 1; }

"$bin/examples/loadgen" --server "$addr" --key "$out/keys/root.pub" --clients 20 --hz 30 --warmup 1 \
    --duration 20 --drain 1 >"$out/loadgen.log" 2>&1 &
pids+=("$!")
# Until the 20 clients are connected (bounded).
for _ in $(seq 100); do
    curl -sf "$url/metrics" | grep -q '^mpgs_connections{version="1",state="connected"} 20' && break
    sleep 0.1
done

tmux new-session -d -s "$session" -x 160 -y 48 "$bin/mpgs-top --url $url"
sleep 5
tmux capture-pane -p -t "$session" >"$out/capture.txt"
cat "$out/capture.txt"

fail=0
grep -q "connections: 20 " "$out/capture.txt" || { echo "FAIL: the capture does not show 20 connections"; fail=1; }
grep -q "LIVE" "$out/capture.txt" || { echo "FAIL: the capture does not show a live endpoint"; fail=1; }
# The endpoint-wide byte rates (sparkline titles), e.g. "bytes in/s 95.3k": nonzero.
for dir in in out; do
    rate=$(grep -o "bytes $dir/s [0-9.]*[kMG]\?" "$out/capture.txt" | head -1 | awk '{print $3}')
    case "$rate" in
        "" | 0) echo "FAIL: bytes $dir/s is '${rate}' in the capture"; fail=1 ;;
    esac
done
# Per-connection rates in the table: no row with 0 bytes/s in.
rows=$(grep -c "127\.0\.0\.1:[0-9]" "$out/capture.txt" || true)
zero=$(grep "127\.0\.0\.1:[0-9]" "$out/capture.txt" | awk '$7 == "0"' | wc -l)
[ "$rows" -gt 0 ] && [ "$zero" -eq 0 ] || { echo "FAIL: $rows connection rows, $zero with no incoming bytes"; fail=1; }

# The Prometheus text under load passes Prometheus's own checker, and the
# guide's scrape configuration is valid (promtool, from Debian's prometheus).
if command -v promtool >/dev/null 2>&1; then
    curl -sf "$url/metrics" >"$out/metrics.txt"
    promtool check metrics <"$out/metrics.txt" || { echo "FAIL: promtool check metrics"; fail=1; }
    promtool check config docs/prometheus.yml || { echo "FAIL: promtool check config docs/prometheus.yml"; fail=1; }
else
    echo "note: promtool is not installed; the text format was checked by tests/ops only"
fi

# Graceful stop: SIGTERM, exit 0 within 2 s.
kill -TERM "$server"
for _ in $(seq 40); do kill -0 "$server" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$server" 2>/dev/null; then echo "FAIL: echo_server still running 2 s after SIGTERM"; fail=1; fi
wait "$server" || { echo "FAIL: echo_server exited with status $?"; fail=1; }
grep "^final metrics" "$out/server.log" || { echo "FAIL: no final metrics"; fail=1; }
[ "$fail" -eq 0 ] && echo "mpgs-top: PASS (capture in $out/capture.txt)"
exit "$fail"
