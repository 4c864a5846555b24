//! Key files (std only): PEM `PRIVATE KEY` and `PUBLIC KEY` files.

use super::{KeyError, PublicKey, ServerKey, Zeroizing};
use alloc::string::{String, ToString};
use std::io::Write;
use std::path::Path;

fn io_error(path: &Path, op: &str, e: &std::io::Error) -> KeyError {
    KeyError::Io { path: path.display().to_string(), message: alloc::format!("cannot {op}: {e}") }
}

fn read(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    std::fs::read_to_string(path).map(Zeroizing::new).map_err(|e| io_error(path, "read", &e))
}

impl ServerKey {
    /// Reads a PEM `PRIVATE KEY` file such as `root.key`.
    pub fn read_pem_file(path: impl AsRef<Path>) -> Result<ServerKey, KeyError> {
        ServerKey::from_pkcs8_pem(&read(path.as_ref())?)
    }

    /// Writes the key as a PEM `PRIVATE KEY` file, replacing any existing
    /// file. On Unix the file gets mode 0600 (owner read/write only).
    pub fn write_pem_file(&self, path: impl AsRef<Path>) -> Result<(), KeyError> {
        let path = path.as_ref();
        let err = |e: std::io::Error| io_error(path, "write", &e);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(err)?;
        #[cfg(unix)]
        {
            // `mode` only applies to a new file; tighten an existing one too.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        }
        file.write_all(self.to_pkcs8_pem().as_bytes()).map_err(err)?;
        file.sync_all().map_err(err)
    }
}

impl PublicKey {
    /// Reads a PEM `PUBLIC KEY` file such as `root.pub`.
    pub fn read_pem_file(path: impl AsRef<Path>) -> Result<PublicKey, KeyError> {
        PublicKey::from_public_key_pem(&read(path.as_ref())?)
    }

    /// Writes the key as a PEM `PUBLIC KEY` file, replacing any existing file.
    pub fn write_pem_file(&self, path: impl AsRef<Path>) -> Result<(), KeyError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_public_key_pem()).map_err(|e| io_error(path, "write", &e))
    }
}
