//! The fuzz entry points without libFuzzer, on a stable toolchain: every
//! seed and every saved crash input (`regressions/<target>/`), then random
//! inputs from quickcheck. `.ci/run` runs this when cargo-fuzz is not
//! available; `FUZZ_SMOKE_CASES` sets the number of random inputs per
//! target (default 500).

use std::path::Path;

use mpgameserver::Role;
use quickcheck::{Gen, QuickCheck};

type Entry = fn(&[u8]);

fn server(d: &[u8]) {
    mpgameserver_fuzz::endpoint(d, Role::Server)
}

fn client(d: &[u8]) {
    mpgameserver_fuzz::endpoint(d, Role::Client)
}

const TARGETS: [(&str, Entry); 11] = [
    ("wire", mpgameserver_fuzz::wire),
    ("handshake", mpgameserver_fuzz::handshake),
    ("keys", mpgameserver_fuzz::keys),
    ("endpoint_server", server),
    ("endpoint_client", client),
    ("endpoint_v2", mpgameserver_fuzz::endpoint_v2),
    ("mpgs2_hello", mpgameserver_fuzz::mpgs2_hello),
    ("mpgs2_long_header", mpgameserver_fuzz::mpgs2_long_header),
    ("mpgs2_frames", mpgameserver_fuzz::mpgs2_frames),
    ("mpgs2_conn", mpgameserver_fuzz::mpgs2_conn),
    ("mpgs2_channels", mpgameserver_fuzz::mpgs2_channels),
];

/// Runs every file under `dir/<target>/` through its target.
fn replay_dir(dir: &str) -> usize {
    let mut n = 0;
    for (name, entry) in TARGETS {
        let d = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(name);
        let Ok(files) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut files: Vec<_> = files.map(|f| f.expect("readable directory").path()).collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).expect("readable input");
            eprintln!("{name}: {}", f.display());
            entry(&data);
            n += 1;
        }
    }
    n
}

#[test]
fn regressions_and_seeds() {
    let n = replay_dir("regressions") + replay_dir("seeds");
    assert!(n > 0);
}

fn cases() -> u64 {
    std::env::var("FUZZ_SMOKE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(500)
}

macro_rules! smoke {
    ($name:ident, $entry:expr) => {
        #[test]
        fn $name() {
            fn prop(data: Vec<u8>) -> bool {
                ($entry)(&data);
                true
            }
            QuickCheck::new().tests(cases()).rng(Gen::new(4096)).quickcheck(prop as fn(Vec<u8>) -> bool);
        }
    };
}

smoke!(quickcheck_wire, mpgameserver_fuzz::wire);
smoke!(quickcheck_handshake, mpgameserver_fuzz::handshake);
smoke!(quickcheck_keys, mpgameserver_fuzz::keys);
smoke!(quickcheck_endpoint_server, server);
smoke!(quickcheck_endpoint_client, client);
smoke!(quickcheck_endpoint_v2, mpgameserver_fuzz::endpoint_v2);
smoke!(quickcheck_mpgs2_hello, mpgameserver_fuzz::mpgs2_hello);
smoke!(quickcheck_mpgs2_long_header, mpgameserver_fuzz::mpgs2_long_header);
smoke!(quickcheck_mpgs2_frames, mpgameserver_fuzz::mpgs2_frames);
smoke!(quickcheck_mpgs2_conn, mpgameserver_fuzz::mpgs2_conn);
smoke!(quickcheck_mpgs2_channels, mpgameserver_fuzz::mpgs2_channels);

/// Replays one file through one target: `FUZZ_REPLAY=target:path`.
#[test]
fn replay_one() {
    let Some(spec) = std::env::var_os("FUZZ_REPLAY") else { return };
    let spec = spec.to_string_lossy().into_owned();
    let (name, path) = spec.split_once(':').expect("FUZZ_REPLAY=target:path");
    let (_, entry) = TARGETS.iter().find(|(n, _)| *n == name).expect("a known target");
    entry(&std::fs::read(path).expect("readable input"));
}

/// Writes the MPGS/2 targets' seeds (`seeds/mpgs2_*/`); run after a wire
/// format change: `cargo test --release --test smoke -- --ignored`.
#[test]
#[ignore]
fn write_mpgs2_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for (target, name, bytes) in mpgameserver_fuzz::mpgs2_seeds() {
        std::fs::create_dir_all(root.join(target)).expect("writable seeds/");
        std::fs::write(root.join(target).join(name), bytes).expect("writable seed");
    }
}
