//! The server's host key: read from `--host-key`, or generated once (Ed25519) in
//! the user's data directory and reused on every later start, so clients see the
//! same key and `known_hosts` stays valid.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use russh::keys::PrivateKey;
use russh::keys::ssh_key::{HashAlg, LineEnding, private::Ed25519Keypair};

/// The default key file name, beside nothing else of rscpd's.
const DEFAULT_NAME: &str = "ssh_host_ed25519_key";

/// Loads the key at `explicit`, or the default one (creating it on first start).
pub fn load_or_generate(explicit: Option<&Path>) -> Result<(PrivateKey, PathBuf), String> {
    if let Some(path) = explicit {
        return load(path).map(|key| (key, path.to_path_buf()));
    }
    let dir = crate::options::data_dir().ok_or("no home directory for the host key; give --host-key FILE")?;
    let path = dir.join(DEFAULT_NAME);
    if path.exists() {
        return load(&path).map(|key| (key, path));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let key = generate()?;
    save(&key, &path)?;
    tracing::warn!("generated a new host key: {}", path.display());
    Ok((key, path))
}

fn load(path: &Path) -> Result<PrivateKey, String> {
    russh::keys::load_secret_key(path, None)
        .map_err(|e| format!("{}: cannot load host key: {e}", path.display()))
}

fn generate() -> Result<PrivateKey, String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no randomness for a host key: {e}"))?;
    Ok(PrivateKey::from(Ed25519Keypair::from_seed(&seed)))
}

/// Writes the key readable by its owner only; never over an existing file.
fn save(key: &PrivateKey, path: &Path) -> Result<(), String> {
    let text = key.to_openssh(LineEnding::LF).map_err(|e| e.to_string())?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

/// `ED25519 SHA256:…`, as `ssh-keygen -l` and ssh's prompts show a key.
pub fn describe(key: &PrivateKey) -> String {
    let kind = match key.algorithm() {
        russh::keys::Algorithm::Ed25519 => "ED25519".to_string(),
        russh::keys::Algorithm::Rsa { .. } => "RSA".to_string(),
        russh::keys::Algorithm::Ecdsa { .. } => "ECDSA".to_string(),
        other => other.as_str().to_uppercase(),
    };
    format!("{kind} {}", key.public_key().fingerprint(HashAlg::Sha256))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_saved_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        let key = generate().expect("generate");
        save(&key, &path).expect("save");
        assert!(save(&key, &path).is_err(), "never overwrites");
        let again = load(&path).expect("load");
        assert_eq!(again.public_key(), key.public_key());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(describe(&key).starts_with("ED25519 SHA256:"));
    }
}
