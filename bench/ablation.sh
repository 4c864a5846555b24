#!/usr/bin/env bash
# What each change bought: builds examples/echo_server at several commits
# and runs the same load against each in turn, several rounds, reporting
# the server's CPU time per delivered message (from /proc, over the
# measurement window). Alternating the builds in one run spreads the noise
# of a shared machine over all of them.
#
#   bash bench/ablation.sh [--clients N] [--hz R] [--duration S] [--rounds K] COMMIT...
#   bash bench/ablation.sh 4bd9f2c d9c99cf HEAD
#
# The load generator is the working tree's. Builds go to target/ablation/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLIENTS=2000; HZ=60; DURATION=8; ROUNDS=3
COMMITS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --clients) CLIENTS=$2; shift 2 ;;
        --hz) HZ=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) COMMITS+=("$1"); shift ;;
    esac
done
[ ${#COMMITS[@]} -gt 0 ] || { echo "ablation.sh: name at least one commit (try --help)" >&2; exit 2; }

DIR=target/ablation
KEYS=target/bench/keys
PORT=15111
mkdir -p "$DIR" "$KEYS"
cargo build --release --quiet --example loadgen --example keygen
[ -f "$KEYS/root.key" ] || target/release/examples/keygen --name root "$KEYS" > /dev/null

BINS=()
for commit in "${COMMITS[@]}"; do
    rev=$(git rev-parse --short "$commit")
    bin=$DIR/echo_server-$rev
    if [ ! -x "$bin" ]; then
        echo "building echo_server at $rev" >&2
        tree=$(mktemp -d)
        git worktree add -q --detach "$tree" "$rev"
        (cd "$tree" && CARGO_TARGET_DIR="$PWD/../$(basename "$tree")-target" cargo build --release --quiet --example echo_server)
        cp "$tree-target/release/examples/echo_server" "$bin"
        git worktree remove --force "$tree"
        rm -rf "$tree-target"
    fi
    BINS+=("$bin")
done

echo "commit,round,msgs_per_s,lost,p50_rtt_ms,p99_rtt_ms,server_cpu_pct,server_us_per_msg,load1"
for round in $(seq "$ROUNDS"); do
    for i in "${!BINS[@]}"; do
        bin=${BINS[$i]}
        load=$(cut -d' ' -f1 /proc/loadavg)
        # Builds with hello limits need them lifted: every client is 127.0.0.1.
        limits=$("$bin" --help | grep -o -- '--no-\(source\|hello\)-limits' | head -1 || true)
        "$bin" --bind 127.0.0.1:$PORT --key "$KEYS/root.key" $limits --duration $((DURATION + 40)) > /dev/null 2>&1 &
        pid=$!
        sleep 0.5
        out=$(timeout $((DURATION + 60)) target/release/examples/loadgen --protocol v1 --server 127.0.0.1:$PORT --key "$KEYS/root.pub" \
            --clients "$CLIENTS" --hz "$HZ" --duration "$DURATION" --server-pid "$pid" 2>/dev/null || true)
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        first=$(sed -n 1p <<<"$out"); last=$(sed -n 2p <<<"$out")
        kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -1; }
        rate=$(kv msgs_per_s "$last"); cpu=$(kv server_cpu_pct "$first")
        us=$(awk -v c="$cpu" -v r="$rate" 'BEGIN { if (r > 0 && c != "-") printf "%.2f", c / 100 / r * 1e6; else print "-" }')
        echo "$(basename "$bin" | sed 's/echo_server-//'),$round,$rate,$(kv lost "$last"),$(kv p50_rtt_ms "$last"),$(kv p99_rtt_ms "$last"),$cpu,$us,$load"
        sleep 0.5
    done
done
