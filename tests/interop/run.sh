#!/usr/bin/env bash
# Live interoperability tests against the reference implementation,
# MpGameServer 0.2.4 (Python, PyPI `mpgameserver==0.2.4`), on 127.0.0.1 only.
#
#   bash tests/interop/run.sh                 # every scenario
#   bash tests/interop/run.sh lossy keys      # only scenarios whose name contains a word
#
# Needs a Rust toolchain and Python 3 with venv. Creates (or reuses, if it
# still imports mpgameserver 0.2.4) the virtual environment .venv-interop/
# ($INTEROP_VENV), builds the examples (release; INTEROP_PROFILE=debug for a
# debug build), then runs tests/interop/harness.py, which prints one
# PASS/FAIL line per scenario and exits non-zero if any failed. Keys and logs
# go to target/interop/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

venv=${INTEROP_VENV:-.venv-interop}
python=${INTEROP_PYTHON:-python3}
profile=${INTEROP_PROFILE:-release}

healthy() {
    [ -x "$venv/bin/python" ] && [ -x "$venv/bin/mpcli" ] &&
        "$venv/bin/python" -c '
import importlib.metadata, mpgameserver
assert importlib.metadata.version("mpgameserver") == "0.2.4"' >/dev/null 2>&1
}

started=$SECONDS
if healthy; then
    echo "interop: reusing $venv (mpgameserver 0.2.4)"
else
    echo "interop: creating $venv and installing mpgameserver==0.2.4"
    rm -rf "$venv"
    timeout 120 "$python" -m venv "$venv"
    timeout 240 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check mpgameserver==0.2.4
    healthy || { echo "FAIL setup: $venv does not import mpgameserver 0.2.4" >&2; exit 1; }
fi

# Honour CARGO_TARGET_DIR, as cargo does.
target="${CARGO_TARGET_DIR:-target}"
if [ "$profile" = release ]; then
    cargo build --release --example echo_server --example echo_client --example keygen
    bin="$target/release/examples"
else
    # Every example of the workspace, as `cargo test --workspace` builds
    # them: the same features, so CI compiles nothing again (three
    # `--example`s alone would unify other features and rebuild ~40 crates).
    cargo build --workspace --examples
    bin="$target/debug/examples"
fi
echo "interop: set-up took $((SECONDS - started)) s"

# The harness bounds every scenario to 60 s; this is a last resort.
exec timeout -k 10 600 "$venv/bin/python" tests/interop/harness.py \
    --bin "$bin" --venv "$venv" --work target/interop "$@"
