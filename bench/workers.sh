#!/usr/bin/env bash
# One worker versus several on one port (SO_REUSEPORT, issue 16): the same
# load from examples/loadgen against `echo_server --workers N`, the worker
# counts taking turns for several rounds. Reports delivered messages per
# second, loss, RTT, and the server's CPU time per delivered message (all its
# threads, from /proc, over the measurement window). On a 2-core machine the
# load generator shares the cores with the server: read the figures as
# ratios between rows of one run.
#
#   bash bench/workers.sh [--clients N] [--hz R] [--duration S] [--rounds K] [--workers "1 2"]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLIENTS=2000; HZ=60; DURATION=10; ROUNDS=2; WORKERS="1 2"
while [ $# -gt 0 ]; do
    case "$1" in
        --clients) CLIENTS=$2; shift 2 ;;
        --hz) HZ=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --workers) WORKERS=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "workers.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done

KEYS=target/bench/keys
PORT=15112
mkdir -p "$KEYS"
cargo build --release --quiet --example loadgen --example keygen --example echo_server
[ -f "$KEYS/root.key" ] || target/release/examples/keygen --name root "$KEYS" > /dev/null
bin=target/release/examples/echo_server

echo "workers,round,connected,msgs_per_s,lost,p50_rtt_ms,p99_rtt_ms,server_cpu_pct,server_us_per_msg,loadgen_cpu_pct,load1"
for round in $(seq "$ROUNDS"); do
    for workers in $WORKERS; do
        load=$(cut -d' ' -f1 /proc/loadavg)
        "$bin" --bind 127.0.0.1:$PORT --key "$KEYS/root.key" --no-source-limits --workers "$workers" \
            --duration $((DURATION + 40)) > /dev/null 2>&1 &
        pid=$!
        sleep 0.5
        out=$(timeout $((DURATION + 60)) target/release/examples/loadgen --protocol v1 --server 127.0.0.1:$PORT --key "$KEYS/root.pub" \
            --clients "$CLIENTS" --hz "$HZ" --duration "$DURATION" --server-pid "$pid" 2>/dev/null || true)
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        first=$(sed -n 1p <<<"$out"); last=$(sed -n 2p <<<"$out")
        kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -1; }
        rate=$(kv msgs_per_s "$last"); cpu=$(kv server_cpu_pct "$first")
        us=$(awk -v c="$cpu" -v r="$rate" 'BEGIN { if (r > 0 && c != "-") printf "%.2f", c / 100 / r * 1e6; else print "-" }')
        echo "$workers,$round,$(kv connected "$first"),$rate,$(kv lost "$last"),$(kv p50_rtt_ms "$last"),$(kv p99_rtt_ms "$last"),$cpu,$us,$(kv loadgen_cpu_pct "$first"),$load"
        sleep 0.5
    done
done
