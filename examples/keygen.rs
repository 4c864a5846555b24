//! Writes a server root key pair: `NAME.key` (PKCS#8 private key, PEM) and
//! `NAME.pub` (SubjectPublicKeyInfo, PEM), the files of the reference's
//! `mpcli genkey --name NAME DIR`, so keys move between the two.
//!
//! ```sh
//! cargo run --example keygen -- --name root keys
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mpgameserver::{Rng, ServerKey};
use mpgameserver_drivers::os_seed;

/// Write a server root key pair: NAME.key (the server's secret) and NAME.pub (for clients to pin).
#[derive(Parser, Debug)]
#[command(name = "keygen")]
struct Args {
    /// Base name of the two files (NAME.key and NAME.pub)
    #[arg(long, value_name = "NAME")]
    name: String,
    /// Directory to write them into (created if missing)
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Replace an existing key pair (clients pinning the old key can no longer connect)
    #[arg(long)]
    force: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keygen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.name.is_empty() || args.name.contains(['/', '\\']) {
        return Err(format!("--name {:?} must be a plain file name (no directories)", args.name).into());
    }
    let key_path = args.dir.join(format!("{}.key", args.name));
    let pub_path = args.dir.join(format!("{}.pub", args.name));
    if !args.force {
        for path in [&key_path, &pub_path] {
            if path.exists() {
                return Err(format!(
                    "{} already exists: pass --force to replace the key pair (clients pinning the old public key will be refused)",
                    path.display()
                )
                .into());
            }
        }
    }
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("cannot create {}: {e}", args.dir.display()))?;

    let key = ServerKey::generate(&mut Rng::new(os_seed()?));
    key.write_pem_file(&key_path)?;
    key.public_key().write_pem_file(&pub_path)?;
    let fingerprint: String = key.public_key().fingerprint().iter().map(|b| format!("{b:02x}")).collect();
    println!("wrote {} (private: keep it on the server only)", key_path.display());
    println!("wrote {} (public: clients pin it)", pub_path.display());
    println!("SHA-256 fingerprint of the public key: {fingerprint}");
    Ok(())
}
