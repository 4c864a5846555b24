#!/usr/bin/env bash
# Side by side with renet and quinn, in one run on loopback: ours
# (examples/echo_server + examples/loadgen; "ours" speaks MPGS/1, "ours2"
# MPGS/2 to the same server), renet 2 + renet_netcode
# (secure connect tokens) and quinn 0.11 (QUIC datagrams and streams,
# pinned self-signed certificate), taking turns on six workloads:
#
#   1. unreliable 100 B at 60 Hz, 100, 500, 1,000, 2,000 clients and beyond,
#      each peer until its knee (a row not sustained: see below);
#   2. reliable-ordered 100 B at 60 Hz, the same client counts;
#   3. one connection, a 1 MiB reliable message echoed one at a time: p50;
#   4. one connection, reliable messages back to back for 5 s: MB/s echoed;
#   5. 1,000 sequential and 1,000 concurrent connects: handshakes/s, p50/p99;
#   6. bytes on the wire per 100 B message, counted by a relay (peers proxy).
#
#   bash bench/peers/run.sh            # everything, 5-15 minutes (the climbs stop at each knee)
#   bash bench/peers/run.sh --quick    # 100 and 500 clients, short windows, 3-5 minutes
#   bash bench/peers/run.sh --tag NAME # results under NAME instead of full/quick
#   bash bench/peers/run.sh --protocol v2   # ours over MPGS/2 only (v1: MPGS/1 only; default both)
#   bash bench/peers/run.sh --peers "ours ours2"   # only these peers
#   bash bench/peers/run.sh --only "echo bulk"     # only these workloads (load echo bulk connect overhead)
#
# Needs a Rust toolchain; the first run builds bench/peers (its own cargo
# workspace) and the examples in release mode. Every server binds
# 127.0.0.1 only and stops itself; every step has a time limit, and the
# whole script stops after $PEERS_LIMIT seconds (default 3600).
#
# Output, in bench/peers/results/: TAG-load.csv (workloads 1-2), TAG-echo.csv,
# TAG-bulk.csv, TAG-connect.csv, TAG-overhead.csv, TAG.md (every table,
# ratios to the best peer in each row) and TAG-unreliable.svg /
# TAG-reliable.svg (delivered messages/s versus clients, by bench/chart).
# Every row carries the 1-minute load average just before it ran.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

QUICK=0
TAG=""
ONLY_OURS=""
PEERS_ARG=""
ONLY=""

# The protocol examples/loadgen and examples/echo_client speak as peer $1.
proto_of() { if [ "$1" = ours2 ]; then echo v2; else echo v1; fi; }
is_ours() { [ "$1" = ours ] || [ "$1" = ours2 ]; }
# Whether workload $1 runs (all of them unless --only names some).
want() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --tag) TAG=$2; shift ;;
        --protocol)
            case "$2" in
                v1) ONLY_OURS=ours ;;
                v2) ONLY_OURS=ours2 ;;
                both) ONLY_OURS="ours ours2" ;;
                *) echo "run.sh: --protocol takes v1, v2 or both" >&2; exit 2 ;;
            esac
            shift ;;
        --peers) PEERS_ARG=$2; shift ;;
        --only)
            for w in $2; do
                case "$w" in
                    load|echo|bulk|connect|overhead) ;;
                    *) echo "run.sh: --only takes workloads among: load echo bulk connect overhead" >&2; exit 2 ;;
                esac
            done
            ONLY=$2; shift ;;
        -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

LIMIT=${PEERS_LIMIT:-3600}
OUT=bench/peers/results
WORK=target/peers
LOGS=$WORK/logs
mkdir -p "$OUT" "$WORK" "$LOGS"
PEERS_BIN=bench/peers/target/release/peers
EX=target/release/examples

if [ "$QUICK" = 1 ]; then
    TAG=${TAG:-quick}
    DURATION=3; WARMUP=1; DRAIN=1
    COUNTS="100 500"
    ECHO_COUNT=3; BULK_SECONDS=2; CONNECTS=200
else
    TAG=${TAG:-full}
    DURATION=8; WARMUP=2; DRAIN=2
    COUNTS="100 500 1000 2000 3000 4000"
    ECHO_COUNT=10; BULK_SECONDS=5; CONNECTS=1000
fi
HZ=60; SIZE=100
CONNECT_TIMEOUT=20
PEERS=${PEERS_ARG:-"${ONLY_OURS:-ours ours2} renet quinn"}
# netcode's NETCODE_MAX_CLIENTS: a renet_netcode server takes at most 1,024 clients.
RENET_MAX=1024
PORT_OURS=16101; PORT_RENET=16102; PORT_QUINN=16103; PORT_PROXY=16104; PORT_OURS2=16105

# --- housekeeping -----------------------------------------------------------

CHILDREN=()
cleanup() {
    for pid in "${CHILDREN[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    if [ -n "${WATCHDOG:-}" ]; then
        kill $(pgrep -P "$WATCHDOG") "$WATCHDOG" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'echo "run.sh: time limit of ${LIMIT}s reached" >&2; exit 124' TERM
( sleep "$LIMIT" & wait $!; kill -TERM $$ ) >/dev/null 2>&1 &
WATCHDOG=$!

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# Value of key $1 in the line $2 (key=value pairs).
kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -1; }

# Waits until something listens on UDP 127.0.0.1:$1 (up to 10 s).
wait_port() {
    local hex
    hex=$(printf '0100007F:%04X' "$1")
    for _ in $(seq 100); do
        grep -q " $hex " /proc/net/udp && return 0
        sleep 0.1
    done
    echo "run.sh: nothing listens on 127.0.0.1:$1" >&2
    return 1
}

port_of() {
    case "$1" in ours) echo $PORT_OURS ;; ours2) echo $PORT_OURS2 ;; renet) echo $PORT_RENET ;; quinn) echo $PORT_QUINN ;; esac
}

# The credential peer $1's clients need.
key_of() {
    case "$1" in
        ours|ours2) echo "$WORK/keys/root.pub" ;;
        renet) echo "$WORK/renet.key" ;;
        quinn) echo "$WORK/quinn/cert.der" ;;
    esac
}

# Starts peer $1's echo server for $2 seconds (extra arguments follow); sets SERVER_PID.
start_server() {
    local peer=$1 seconds=$2 port
    shift 2
    port=$(port_of "$peer")
    case "$peer" in
        ours|ours2) "$EX/echo_server" --bind 127.0.0.1:$port --key "$WORK/keys/root.key" --no-source-limits \
                  --duration "$seconds" "$@" > "$LOGS/$peer.log" 2>&1 & ;;
        renet) "$PEERS_BIN" renet-server --bind 127.0.0.1:$port --key "$WORK/renet.key" \
                  --duration "$seconds" "$@" > "$LOGS/renet.log" 2>&1 & ;;
        quinn) "$PEERS_BIN" quinn-server --bind 127.0.0.1:$port --cert "$WORK/quinn" \
                  --duration "$seconds" "$@" > "$LOGS/quinn.log" 2>&1 & ;;
    esac
    SERVER_PID=$!
    CHILDREN+=("$SERVER_PID")
    wait_port "$port"
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    sleep 0.3
}

# --- build, keys --------------------------------------------------------------

log "building (release): examples, bench/peers"
cargo build --release --quiet --example echo_server --example echo_client --example keygen --example loadgen
cargo build --release --quiet --manifest-path bench/chart/Cargo.toml
# $PEERS_BUILD_DIR, if set, is bench/peers' cargo build directory (its
# dependencies share nothing with the library's).
(
    cd bench/peers
    if [ -n "${PEERS_BUILD_DIR:-}" ]; then export CARGO_BUILD_BUILD_DIR=$PEERS_BUILD_DIR; fi
    cargo build --release --quiet
)
[ -f "$WORK/keys/root.key" ] || "$EX/keygen" --name root "$WORK/keys" > /dev/null
[ -f "$WORK/renet.key" ] || "$PEERS_BIN" renet-key --out "$WORK/renet.key"
[ -f "$WORK/quinn/cert.der" ] || "$PEERS_BIN" cert --out "$WORK/quinn"

# --- workloads 1 and 2 ----------------------------------------------------------
if want load; then
    LOAD_CSV=$OUT/$TAG-load.csv
    echo "workload,server,clients,hz,offered_per_s,connected,sent,echoed,lost,msgs_per_s,p50_rtt_ms,p99_rtt_ms,server_cpu_pct,loadgen_cpu_pct,handshakes_per_s,load1" > "$LOAD_CSV"

    # Runs delivery $1 with $3 clients against peer $2, appends a row; returns 1 when not sustained.
    run_load() {
        local delivery=$1 peer=$2 clients=$3 port out first last before life args
        port=$(port_of "$peer")
        life=$((CONNECT_TIMEOUT + WARMUP + DURATION + DRAIN + 15))
        start_server "$peer" "$life"
        args=(--server 127.0.0.1:$port --clients "$clients" --hz $HZ --size $SIZE --duration $DURATION
              --warmup $WARMUP --drain $DRAIN --connect-timeout $CONNECT_TIMEOUT --server-pid "$SERVER_PID"
              --delivery "$delivery")
        before=$(load1)
        log "$delivery $peer ${clients}x$HZ (load $before)"
        if is_ours "$peer"; then
            out=$(timeout $((life + 10)) "$EX/loadgen" --key "$(key_of ours)" --protocol "$(proto_of "$peer")" "${args[@]}" 2>>"$LOGS/load.err" || true)
        else
            out=$(timeout $((life + 10)) "$PEERS_BIN" load --peer "$peer" --key "$(key_of "$peer")" "${args[@]}" 2>>"$LOGS/load.err" || true)
        fi
        stop_server
        first=$(sed -n 1p <<<"$out"); last=$(sed -n 2p <<<"$out")
        if [ -z "$last" ]; then
            log "  no result (see $LOGS/load.err)"
            echo "$delivery,$peer,$clients,$HZ,$((clients * HZ)),0,0,0,0,0,-,-,-,-,0,$before" >> "$LOAD_CSV"
            return 1
        fi
        log "  $last"
        local connected sent lost rate p99
        connected=$(kv connected "$first" | cut -d/ -f1)
        sent=$(kv sent "$last"); lost=$(kv lost "$last"); rate=$(kv msgs_per_s "$last"); p99=$(kv p99_rtt_ms "$last")
        echo "$delivery,$peer,$clients,$HZ,$(kv offered_per_s "$first"),$connected,$sent,$(kv echoed "$last"),$lost,$rate,$(kv p50_rtt_ms "$last"),$p99,$(kv server_cpu_pct "$first"),$(kv loadgen_cpu_pct "$first"),$(kv handshakes_per_s "$first"),$before" >> "$LOAD_CSV"
        # Sustained: every client connected, loss <= 0.1 %, p99 <= 50 ms, >= 99 % of the offered rate delivered.
        awk -v c="$connected" -v n="$clients" -v s="$sent" -v l="$lost" -v r="$rate" -v p="$p99" -v o=$((clients * HZ)) \
            'BEGIN { exit !(c == n && s > 0 && l / s <= 0.001 && p != "-" && p + 0 <= 50 && r >= 0.99 * o) }'
    }

    for delivery in unreliable reliable; do
        # Each peer climbs the client counts until its knee.
        declare -A KNEE=()
        for clients in $COUNTS; do
            for peer in $PEERS; do
                [ -n "${KNEE[$peer]:-}" ] && continue
                if [ "$peer" = renet ] && [ "$clients" -gt "$RENET_MAX" ]; then
                    log "$delivery renet ${clients}x$HZ: skipped (netcode allows $RENET_MAX clients per server)"
                    KNEE[$peer]=limit
                    continue
                fi
                run_load "$delivery" "$peer" "$clients" || KNEE[$peer]=$clients
            done
        done
        unset KNEE
    done
fi

# --- workload 3: one large message at a time ------------------------------------
if want echo; then
    ECHO_CSV=$OUT/$TAG-echo.csv
    echo "server,size,echoed,count,p50_ms,p99_ms,load1" > "$ECHO_CSV"
    for peer in $PEERS; do
        start_server "$peer" 120
        before=$(load1)
        log "echo $peer 1 MiB x $ECHO_COUNT (load $before)"
        if is_ours "$peer"; then
            line=$(timeout 120 "$EX/echo_client" --server 127.0.0.1:$(port_of "$peer") --key "$(key_of ours)" --protocol "$(proto_of "$peer")" \
                --count $ECHO_COUNT --size 1048576 --timeout 30 2>>"$LOGS/echo.err" | grep '^echoed' || true)
        else
            line=$(timeout 120 "$PEERS_BIN" echo --peer "$peer" --server 127.0.0.1:$(port_of "$peer") --key "$(key_of "$peer")" \
                --count $ECHO_COUNT --size 1048576 --timeout 30 2>>"$LOGS/echo.err" | grep '^echoed' || true)
        fi
        stop_server
        log "  $line"
        echoed=$(sed -n 's/^echoed \([0-9]*\)\/.*/\1/p' <<<"$line")
        p50=$(sed -n 's/.*p50 \([0-9.-]*\) ms.*/\1/p' <<<"$line")
        p99=$(sed -n 's/.*p99 \([0-9.-]*\) ms.*/\1/p' <<<"$line")
        echo "$peer,1048576,${echoed:-0},$ECHO_COUNT,${p50:--},${p99:--},$before" >> "$ECHO_CSV"
    done
fi

# --- workload 4: bulk reliable throughput ----------------------------------------
if want bulk; then
    BULK_CSV=$OUT/$TAG-bulk.csv
    echo "server,seconds,message_size,window,mb_per_s,corrupt,server_cpu_pct,load1" > "$BULK_CSV"
    for peer in $PEERS; do
        start_server "$peer" $((BULK_SECONDS + 30))
        before=$(load1)
        log "bulk $peer ${BULK_SECONDS}s (load $before)"
        cpu0=$(awk '{print $14 + $15}' /proc/$SERVER_PID/stat)
        t0=$(date +%s.%N)
        line=$(timeout $((BULK_SECONDS + 25)) "$PEERS_BIN" bulk --peer "$peer" --server 127.0.0.1:$(port_of "$peer") \
            --key "$(key_of "$peer")" --seconds $BULK_SECONDS 2>>"$LOGS/bulk.err" || true)
        cpu1=$(awk '{print $14 + $15}' /proc/$SERVER_PID/stat 2>/dev/null || echo "$cpu0")
        t1=$(date +%s.%N)
        stop_server
        log "  $line"
        cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" \
            'BEGIN { printf "%.1f", (b - a) / hz / (t1 - t0) * 100 }')
        echo "$peer,$BULK_SECONDS,$(kv message_size "$line"),64,$(kv mb_per_s "$line"),$(kv corrupt "$line"),$cpu,$before" >> "$BULK_CSV"
    done
fi

# --- workload 5: handshakes ------------------------------------------------------
if want connect; then
    CONNECT_CSV=$OUT/$TAG-connect.csv
    echo "server,clients,concurrency,connected,handshakes_per_s,connect_p50_ms,connect_p99_ms,load1" > "$CONNECT_CSV"
    for concurrency in 1 $CONNECTS; do
        for peer in $PEERS; do
            start_server "$peer" 90
            before=$(load1)
            log "connect $peer $CONNECTS clients, $concurrency at a time (load $before)"
            line=$(timeout 80 "$PEERS_BIN" connect --peer "$peer" --server 127.0.0.1:$(port_of "$peer") \
                --key "$(key_of "$peer")" --clients $CONNECTS --concurrency "$concurrency" --connect-timeout 30 2>>"$LOGS/connect.err" || true)
            stop_server
            log "  $line"
            echo "$peer,$CONNECTS,$concurrency,$(kv connected "$line"),$(kv handshakes_per_s "$line"),$(kv connect_p50_ms "$line"),$(kv connect_p99_ms "$line"),$before" >> "$CONNECT_CSV"
        done
    done
fi

# --- workload 6: bytes on the wire per message -----------------------------------
if want overhead; then
    OVERHEAD_CSV=$OUT/$TAG-overhead.csv
    echo "workload,server,clients,hz,size,seconds,up_datagrams,up_bytes,down_datagrams,down_bytes,load1,sent_per_s" > "$OVERHEAD_CSV"
    OH_CLIENTS=100
    for delivery in unreliable reliable; do
        for peer in $PEERS; do
            extra=()
            [ "$peer" = renet ] && extra=(--public 127.0.0.1:$PORT_PROXY)
            start_server "$peer" 30 "${extra[@]}"
            "$PEERS_BIN" proxy --listen 127.0.0.1:$PORT_PROXY --upstream 127.0.0.1:$(port_of "$peer") \
                --skip 2.5 --count 4 --duration 25 > "$LOGS/proxy.log" 2>&1 &
            PROXY_PID=$!
            CHILDREN+=("$PROXY_PID")
            wait_port $PORT_PROXY
            before=$(load1)
            log "overhead $delivery $peer ${OH_CLIENTS}x$HZ through the relay (load $before)"
            args=(--server 127.0.0.1:$PORT_PROXY --clients $OH_CLIENTS --hz $HZ --size $SIZE --duration 6 --warmup 2
                  --drain 1 --delivery "$delivery")
            if is_ours "$peer"; then
                timeout 40 "$EX/loadgen" --key "$(key_of ours)" --protocol "$(proto_of "$peer")" "${args[@]}" > "$LOGS/overhead.out" 2>>"$LOGS/overhead.err" || true
            else
                timeout 40 "$PEERS_BIN" load --peer "$peer" --key "$(key_of "$peer")" "${args[@]}" > "$LOGS/overhead.out" 2>>"$LOGS/overhead.err" || true
            fi
            kill "$PROXY_PID" 2>/dev/null || true
            wait "$PROXY_PID" 2>/dev/null || true
            stop_server
            line=$(grep '^proxy ' "$LOGS/proxy.log" | head -1 || true)
            log "  $line"
            # The messages the clients really sent per second (a busy machine skips ticks).
            sent=$(kv sent "$(sed -n 2p "$LOGS/overhead.out")")
            rate=$(awk -v s="${sent:-0}" 'BEGIN { printf "%.1f", s / 6 }')
            echo "$delivery,$peer,$OH_CLIENTS,$HZ,$SIZE,$(kv window_s "$line"),$(kv up_datagrams "$line"),$(kv up_bytes "$line"),$(kv down_datagrams "$line"),$(kv down_bytes "$line"),$before,$rate" >> "$OVERHEAD_CSV"
        done
    done
fi

# --- report -----------------------------------------------------------------------

python3 bench/peers/summarize.py "$OUT" "$TAG" > "$OUT/$TAG.md"
cat "$OUT/$TAG.md"
if want load; then
    for delivery in unreliable reliable; do
        svg=$OUT/$TAG-$delivery.svg
        csv=$WORK/$TAG-$delivery-chart.csv
        # The chart tool reads server,clients,hz,msgs_per_s.
        awk -F, -v d="$delivery" 'NR == 1 || $1 == d' "$LOAD_CSV" | cut -d, -f2- > "$csv"
        if bench/chart/target/release/mpgameserver-bench-chart "$csv" "$svg" "$delivery" 2>"$LOGS/chart.err"; then
            log "chart: $svg"
        else
            log "chart not drawn (see $LOGS/chart.err)"
        fi
    done
fi
