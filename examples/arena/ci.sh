#!/usr/bin/env bash
# The arena game's end-to-end checks, on 127.0.0.1 (called by .ci/run):
#   1. the server and three --bot clients for 10 s: each bot must see the
#      others move and get every chat line in send order;
#   2. the window client under Xvfb with two bots: a screenshot after 3 s
#      (target/arena-screenshot.png) must show at least three player markers
#      in the palette's colours.
# Needs: xvfb, imagemagick (import, convert), python3, and what macroquad
# needs at run time (libgl1-mesa-dri, libx11-6, libxi6, libxcursor1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

# The workspace's bins and examples, as `cargo test --workspace` builds
# them (same features: nothing compiles again after it; `-p` would
# unify other features and rebuild some 30 crates).
cargo build --workspace --bins --examples
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug"
keys=target/arena-keys
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

echo "-- arena: server + 3 bots on loopback for 10 s"
"$bin/arena-server" --bind 127.0.0.1:5050 --keys "$keys" --duration 14 &
pids+=($!)
sleep 1
bots=()
for n in 0 1 2; do
    "$bin/arena-client" --server 127.0.0.1:5050 --key "$keys/arena.pub" --bot --number "$n" --name "bot$n" \
        --duration 10 --chat-lines 5 --expect bot0,bot1,bot2 &
    bots+=($!)
done
failed=0
for p in "${bots[@]}"; do wait "$p" || failed=1; done
[ "$failed" = 0 ] || { echo "FAIL: a bot did not see everything (above)"; exit 1; }
echo "PASS: 3 bots saw each other move and got every chat line in order"

echo "-- arena: window client under Xvfb, screenshot after 3 s"
"$bin/arena-server" --bind 127.0.0.1:5051 --keys "$keys" --duration 12 &
pids+=($!)
sleep 1
for n in 0 1; do
    "$bin/arena-client" --server 127.0.0.1:5051 --key "$keys/arena.pub" --bot --number "$n" --name "bot$n" \
        --duration 10 >/dev/null &
    pids+=($!)
done
n=77
while [ -e "/tmp/.X$n-lock" ]; do n=$((n + 1)); done
display=":$n"
Xvfb "$display" -screen 0 800x600x24 -nolisten tcp &
pids+=($!)
sleep 1
DISPLAY="$display" "$bin/arena-client" --server 127.0.0.1:5051 --key "$keys/arena.pub" --name viewer --duration 6 &
viewer=$!
pids+=($viewer)
sleep 3
shot=target/arena-screenshot.png
DISPLAY="$display" import -window root "$shot"
wait "$viewer"
convert "$shot" ppm:- | python3 examples/arena/pixel_test.py
echo "screenshot saved: $shot"
