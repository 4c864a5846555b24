//! Key files.

use mpgameserver::{KeyError, PublicKey, ServerKey};

use crate::server_key;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mpgameserver-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn key_files_round_trip_and_a_swapped_file_says_what_to_do() {
    let dir = TempDir::new("keys");
    let (key_path, pub_path) = (dir.0.join("root.key"), dir.0.join("root.pub"));
    let key = server_key(42);
    key.write_pem_file(&key_path).unwrap();
    key.public_key().write_pem_file(&pub_path).unwrap();

    let text = std::fs::read_to_string(&key_path).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
    let text = std::fs::read_to_string(&pub_path).unwrap();
    assert!(text.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the private key file must be private");
    }

    let loaded = ServerKey::read_pem_file(&key_path).unwrap();
    assert_eq!(*loaded.to_pkcs8_der(), *key.to_pkcs8_der());
    assert_eq!(PublicKey::read_pem_file(&pub_path).unwrap(), key.public_key());

    // The public key where the private key is expected: the message says which file goes where.
    let err = ServerKey::read_pem_file(&pub_path).map(|_| ()).unwrap_err();
    assert!(matches!(err, KeyError::WrongPemLabel { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("public key") && msg.contains("pass the .key file to the server"), "{msg}");
    // And the other way round.
    let msg = PublicKey::read_pem_file(&key_path).unwrap_err().to_string();
    assert!(msg.contains("pass the .pub file to the client"), "{msg}");
    // A missing file names the path.
    let missing = dir.0.join("missing.key");
    let err = ServerKey::read_pem_file(&missing).map(|_| ()).unwrap_err();
    assert!(matches!(err, KeyError::Io { .. }) && err.to_string().contains("missing.key"), "{err}");
}
