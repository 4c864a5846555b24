#!/usr/bin/env bash
# Side-by-side benchmark on loopback, in one run: our echo_server, the
# reference's Python echo server (MpGameServer 0.2.4) and a raw UDP +
# AES-GCM echo baseline, under the same loads from examples/loadgen; then
# the time to echo one 100 KB and one 1 MiB message, and a table and chart.
#
#   bash bench/compare.sh            # full run, about 7 minutes
#   bash bench/compare.sh --quick    # two loads, 3 s windows, about 1.5 minutes
#   bash bench/compare.sh --no-ref   # without the reference (no Python needed)
#
# Needs a Rust toolchain and, for the reference, Python 3 with venv; the
# first run creates ${MPGS_VENV:-.venv-mpgs} and installs mpgameserver==0.2.4
# from PyPI into it. Every server binds 127.0.0.1 only and stops itself;
# every step has a time limit, and the whole script stops after
# $COMPARE_LIMIT seconds (default 1200).
#
# Output: bench/results/full.csv (one row per run), full-bulk.csv,
# full.md (the table, goals and machine), and bench/chart.svg (delivered
# messages/s versus clients); --quick writes quick.* and
# bench/results/quick.svg instead. The load average is recorded next to every figure: this
# machine may be shared, so read ratios from one run, not absolute figures
# from several.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

QUICK=0
REF=1
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        --no-ref) REF=0 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

LIMIT=${COMPARE_LIMIT:-1200}
VENV=${MPGS_VENV:-.venv-mpgs}
OUT=bench/results
WORK=target/bench
KEYS=$WORK/keys
LOGS=$WORK/logs
mkdir -p "$OUT" "$KEYS" "$LOGS"

TAG=full
CHART=bench/chart.svg
if [ "$QUICK" = 1 ]; then
    TAG=quick
    CHART=$OUT/quick.svg
    DURATION=3; WARMUP=1; DRAIN=1
    LOADS="128x32 512x60"
    PROBES_OURS=""; PROBES_REF=""
    BULK_SIZES="100000"; BULK_COUNT=3
else
    DURATION=10; WARMUP=2; DRAIN=2
    # The issue's four loads, then probes beyond them to find each
    # server's largest sustained rate.
    LOADS="128x32 128x60 512x60 2000x60"
    PROBES_OURS="2000x90 2000x120"; PROBES_REF="192x60 256x60"
    BULK_SIZES="100000 1048576"; BULK_COUNT=5
fi
CONNECT_TIMEOUT=20
PORT_OURS=15101; PORT_REF=15102; PORT_RAW=15103

# --- housekeeping -----------------------------------------------------------

CHILDREN=()
cleanup() {
    for pid in "${CHILDREN[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    if [ -n "${WATCHDOG:-}" ]; then
        # The watchdog's sleep first, then the watchdog.
        kill $(pgrep -P "$WATCHDOG") "$WATCHDOG" 2>/dev/null || true
    fi
}
trap cleanup EXIT
# A watchdog bounds the whole run.
# (Its output goes to /dev/null so that a pipe reading this script's output
# never waits for it.)
trap 'echo "compare.sh: time limit of ${LIMIT}s reached" >&2; exit 124' TERM
( sleep "$LIMIT" & wait $!; kill -TERM $$ ) >/dev/null 2>&1 &
WATCHDOG=$!

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
load1() { cut -d' ' -f1 /proc/loadavg; }

# Waits until something listens on UDP 127.0.0.1:$1 (up to 10 s).
wait_port() {
    local hex
    hex=$(printf '0100007F:%04X' "$1")
    for _ in $(seq 100); do
        grep -q " $hex " /proc/net/udp && return 0
        sleep 0.1
    done
    echo "compare.sh: nothing listens on 127.0.0.1:$1" >&2
    return 1
}

# Starts server $1 (ours|ref|raw) for $2 seconds; sets SERVER_PID.
start_server() {
    local kind=$1 seconds=$2
    case "$kind" in
        ours)
            target/release/examples/echo_server --bind 127.0.0.1:$PORT_OURS --key "$KEYS/root.key" \
                --no-source-limits --duration "$seconds" > "$LOGS/ours.log" 2>&1 &
            SERVER_PID=$!; SERVER_PORT=$PORT_OURS ;;
        ref)
            "$VENV/bin/python" bench/ref_echo_server.py --port $PORT_REF --key "$KEYS/root.key" \
                --seconds "$seconds" > "$LOGS/ref.log" 2>&1 &
            SERVER_PID=$!; SERVER_PORT=$PORT_REF ;;
        raw)
            target/release/examples/loadgen --serve-raw 127.0.0.1:$PORT_RAW --serve-for "$seconds" \
                > "$LOGS/raw.log" 2>&1 &
            SERVER_PID=$!; SERVER_PORT=$PORT_RAW ;;
    esac
    CHILDREN+=("$SERVER_PID")
    wait_port "$SERVER_PORT"
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    # The port is free again before the next server binds it.
    sleep 0.3
}

# Value of key $1 in the line $2 (key=value pairs).
kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -1; }

CSV=$OUT/$TAG.csv
echo "server,clients,hz,offered_per_s,connected,sent,echoed,lost,msgs_per_s,p50_rtt_ms,p99_rtt_ms,server_cpu_pct,loadgen_cpu_pct,handshakes_per_s,load1" > "$CSV"

# Runs one load ($2 clients x $3 Hz) against server $1 and appends a row.
run_load() {
    local kind=$1 clients=$2 hz=$3 args out first last before
    local life=$((CONNECT_TIMEOUT + WARMUP + DURATION + DRAIN + 10))
    start_server "$kind" "$life"
    args=(--server "127.0.0.1:$SERVER_PORT" --clients "$clients" --hz "$hz" --size 100
          --duration "$DURATION" --warmup "$WARMUP" --drain "$DRAIN" --connect-timeout "$CONNECT_TIMEOUT"
          --server-pid "$SERVER_PID")
    # MPGS/1: what the Python reference speaks (the client default is MPGS/2).
    if [ "$kind" = raw ]; then args+=(--raw); else args+=(--key "$KEYS/root.pub" --protocol v1); fi
    before=$(load1)
    log "$kind ${clients}x${hz} (load $before)"
    out=$(timeout $((life + 10)) target/release/examples/loadgen "${args[@]}" 2>>"$LOGS/loadgen.err" || true)
    stop_server
    first=$(sed -n 1p <<<"$out"); last=$(sed -n 2p <<<"$out")
    if [ -z "$last" ]; then
        log "  no result (see $LOGS/loadgen.err)"
        echo "$kind,$clients,$hz,$((clients * hz)),0,0,0,0,0,-,-,-,-,0,$before" >> "$CSV"
        return
    fi
    log "  $last"
    echo "$kind,$clients,$hz,$(kv offered_per_s "$first"),$(kv connected "$first" | cut -d/ -f1),$(kv sent "$last"),$(kv echoed "$last"),$(kv lost "$last"),$(kv msgs_per_s "$last"),$(kv p50_rtt_ms "$last"),$(kv p99_rtt_ms "$last"),$(kv server_cpu_pct "$first"),$(kv loadgen_cpu_pct "$first"),$(kv handshakes_per_s "$first"),$before" >> "$CSV"
}

# --- build, keys, reference -------------------------------------------------

log "building (release)"
cargo build --release --quiet --example echo_server --example echo_client --example keygen --example loadgen

if [ ! -f "$KEYS/root.key" ]; then
    target/release/examples/keygen --name root "$KEYS" > /dev/null
fi

if [ "$REF" = 1 ]; then
    if ! "$VENV/bin/python" -c 'import mpgameserver' 2>/dev/null; then
        log "installing the reference into $VENV (mpgameserver==0.2.4 from PyPI)"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet mpgameserver==0.2.4
    fi
    version=$("$VENV/bin/pip" show mpgameserver 2>/dev/null | sed -n 's/^Version: //p')
    if [ "$version" != "0.2.4" ]; then
        echo "compare.sh: $VENV has mpgameserver $version, not 0.2.4" >&2
        exit 1
    fi
fi

# --- loads --------------------------------------------------------------------

SERVERS="ours raw"
[ "$REF" = 1 ] && SERVERS="ours ref raw"
for load in $LOADS; do
    for kind in $SERVERS; do
        run_load "$kind" "${load%x*}" "${load#*x}"
    done
done
for load in $PROBES_OURS; do
    for kind in ours raw; do
        run_load "$kind" "${load%x*}" "${load#*x}"
    done
done
if [ "$REF" = 1 ]; then
    for load in $PROBES_REF; do
        run_load ref "${load%x*}" "${load#*x}"
    done
fi

# --- one large message at a time ------------------------------------------------

BULK=$OUT/$TAG-bulk.csv
echo "server,size,echoed,count,p50_ms,p99_ms,load1" > "$BULK"
BULK_SERVERS="ours"
[ "$REF" = 1 ] && BULK_SERVERS="ours ref"
for kind in $BULK_SERVERS; do
    for size in $BULK_SIZES; do
        # The reference paces about 30 datagrams/s: 1 MiB takes about 25 s each way.
        per=$([ "$kind" = ref ] && echo 90 || echo 10)
        count=$BULK_COUNT
        [ "$kind" = ref ] && count=1
        start_server "$kind" $((per * count + 15))
        before=$(load1)
        log "$kind: echo of ${size} B x $count (load $before)"
        line=$(timeout $((per * count + 20)) target/release/examples/echo_client --protocol v1 --server "127.0.0.1:$SERVER_PORT" \
            --key "$KEYS/root.pub" --count "$count" --size "$size" --timeout "$per" 2>>"$LOGS/echo_client.err" | grep '^echoed' | tail -1 || true)
        stop_server
        log "  $line"
        # "echoed K/N messages, size S, rtt p50 X ms p99 Y ms"
        echoed=$(sed -n 's/^echoed \([0-9]*\)\/.*/\1/p' <<<"$line")
        p50=$(sed -n 's/.*p50 \([0-9.-]*\) ms.*/\1/p' <<<"$line")
        p99=$(sed -n 's/.*p99 \([0-9.-]*\) ms.*/\1/p' <<<"$line")
        echo "$kind,$size,${echoed:-0},$count,${p50:--},${p99:--},$before" >> "$BULK"
    done
done

# --- report ---------------------------------------------------------------------

python3 bench/summarize.py "$CSV" "$BULK" > "$OUT/$TAG.md"
cat "$OUT/$TAG.md"
if cargo run --release --quiet --manifest-path bench/chart/Cargo.toml -- "$CSV" "$CHART" 2>"$LOGS/chart.err"; then
    log "chart: $CHART"
else
    log "chart not drawn (see $LOGS/chart.err)"
fi
