//! A game server and four clients over a simulated bad network, in virtual
//! time, with `mpgameserver-sim`.
//!
//! Each client sends its input every 60 Hz frame (`Unreliable`), a chat
//! line every second (`Reliable`) and a 60 kB upload once (`Reliable`,
//! fragmented); the server sends every client a state update every frame
//! (`Unreliable`), echoes the chat lines (`Reliable`) and sends each client
//! a 200 kB map (`Reliable`). After 20 virtual seconds the clients
//! disconnect. The program prints what happened per connection and what the
//! network did.
//!
//! Everything derives from the seed: the same `--seed` prints the same
//! bytes, run after run (including the trace digest on the last line); a
//! different seed gives a different run.
//!
//! ```sh
//! cargo run --example lossy_sim -- --seed 7
//! cargo run --example lossy_sim -- --seed 8 --preset wifi
//! cargo run --example lossy_sim -- --seed 8 --preset wifi --protocol v2
//! ```
//!
//! `--protocol v1|v2` chooses what the clients speak. The default stays v1,
//! unlike the other examples (whose default is v2): the default run is the
//! golden scenario, whose MPGS/1 digests `tests/sim/golden.rs` pins (its
//! server then has MPGS/2 off, `EndpointConfig::accept_mpgs2 = false`).

mod game;

use std::process::ExitCode;

use mpgameserver::ProtocolVersion;
use mpgameserver_sim::Preset;

struct Args {
    seed: u64,
    preset: Preset,
    protocol: ProtocolVersion,
}

const USAGE: &str = "usage: lossy_sim [--seed N] [--preset perfect|lan|wifi|mobile-lossy] [--protocol v1|v2] \
                     (default v1: the pinned golden scenario)";

fn parse_args() -> Result<Args, String> {
    let mut args = Args { seed: 1, preset: Preset::MobileLossy, protocol: ProtocolVersion::V1 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--seed" => {
                let v = value("--seed")?;
                args.seed = v.parse().map_err(|_| format!("--seed wants a number, not {v:?}\n{USAGE}"))?;
            }
            "--preset" => {
                let v = value("--preset")?;
                args.preset = Preset::from_name(&v).ok_or_else(|| format!("unknown preset {v:?}\n{USAGE}"))?;
            }
            "--protocol" => {
                let v = value("--protocol")?;
                args.protocol = v.parse().map_err(|e| format!("--protocol {v:?}: {e}\n{USAGE}"))?;
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut report = String::new();
    game::run(args.seed, args.preset, args.protocol, &mut report);
    print!("{report}");
    ExitCode::SUCCESS
}
