//! Keys and certificates made by the real `ssh-keygen`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::{find_program, output_timeout};

/// Key algorithms the tests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `ssh-ed25519`
    Ed25519,
    /// `ecdsa-sha2-nistp256`
    Ecdsa,
    /// `ssh-rsa` key (2048 bits), signing with `rsa-sha2-256/512`
    Rsa,
}

impl KeyType {
    /// The `ssh-keygen -t` name.
    pub fn keygen_name(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::Ecdsa => "ecdsa",
            KeyType::Rsa => "rsa",
        }
    }
}

/// A key pair on disk, made by [`keygen`].
#[derive(Debug, Clone)]
pub struct KeyPair {
    /// The private key file (mode 0600).
    pub private: PathBuf,
    /// The public key file (`PRIVATE.pub`).
    pub public: PathBuf,
    /// The public key line, e.g. `ssh-ed25519 AAAA… rscp-test-NAME`, trimmed:
    /// ready for `authorized_keys`.
    pub public_line: String,
    /// The passphrase the private key is encrypted with (empty: none).
    pub passphrase: String,
    /// The algorithm.
    pub kind: KeyType,
}

impl KeyPair {
    /// The public key without its comment: `ssh-ed25519 AAAA…`.
    pub fn public_key(&self) -> String {
        self.public_line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    }
}

pub(crate) fn ssh_keygen() -> PathBuf {
    find_program("ssh-keygen").unwrap_or_else(|| panic!("ssh-keygen is not installed"))
}

/// `ssh-keygen -q -t TYPE -N PASSPHRASE -C rscp-test-NAME -f DIR/NAME`
/// (`-b 2048` for RSA). Panics with ssh-keygen's output on failure, or if
/// `DIR/NAME` already exists.
pub fn keygen(dir: &Path, name: &str, kind: KeyType, passphrase: &str) -> KeyPair {
    let private = dir.join(name);
    assert!(!private.exists(), "keygen: {} already exists", private.display());
    let mut command = Command::new(ssh_keygen());
    command
        .args(["-q", "-t", kind.keygen_name()])
        .args(["-N", passphrase])
        .args(["-C", &format!("rscp-test-{name}")])
        .arg("-f")
        .arg(&private)
        .stdin(Stdio::null());
    if kind == KeyType::Rsa {
        command.args(["-b", "2048"]);
    }
    let out = output_timeout(&mut command, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{command:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let public = dir.join(format!("{name}.pub"));
    let public_line = std::fs::read_to_string(&public)
        .unwrap_or_else(|e| panic!("reading {}: {e}", public.display()))
        .trim()
        .to_owned();
    KeyPair { private, public, public_line, passphrase: passphrase.to_owned(), kind }
}

/// Signs `key`'s public key with the CA key `ca`:
/// `ssh-keygen -s CA -I rscp-test-cert -n PRINCIPALS [-h] -V -5m:+1h KEY.pub`,
/// and returns the certificate, `KEY-cert.pub` (beside the private key, where
/// `ssh -i KEY` and `sshd`'s `HostKey KEY` look for it). `host` makes a host
/// certificate (principals: host names, e.g. `127.0.0.1`), else a user
/// certificate (principals: user names). The CA key must not have a
/// passphrase.
pub fn sign_certificate(ca: &KeyPair, key: &KeyPair, principals: &[&str], host: bool) -> PathBuf {
    assert!(ca.passphrase.is_empty(), "sign_certificate: the CA key has a passphrase");
    let mut command = Command::new(ssh_keygen());
    command
        .arg("-q")
        .arg("-s")
        .arg(&ca.private)
        .args(["-I", "rscp-test-cert", "-n", &principals.join(",")])
        .args(["-V", "-5m:+1h"]);
    if host {
        command.arg("-h");
    }
    command.arg(&key.public).stdin(Stdio::null());
    let out = output_timeout(&mut command, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{command:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cert = key.private.clone().into_os_string();
    cert.push("-cert.pub");
    let cert = PathBuf::from(cert);
    assert!(cert.is_file(), "ssh-keygen did not write {}", cert.display());
    cert
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_and_sign() {
        if !crate::require("ssh-keygen") {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, kind, prefix) in [
            ("ed", KeyType::Ed25519, "ssh-ed25519 "),
            ("ec", KeyType::Ecdsa, "ecdsa-sha2-nistp256 "),
            ("rsa", KeyType::Rsa, "ssh-rsa "),
        ] {
            let key = keygen(dir.path(), name, kind, "");
            assert!(key.public_line.starts_with(prefix), "{}", key.public_line);
            assert!(key.public_line.ends_with(&format!("rscp-test-{name}")));
            assert_eq!(key.public_key().split(' ').count(), 2);
            assert!(key.private.is_file());
        }
        let ca = keygen(dir.path(), "ca", KeyType::Ed25519, "");
        let user = keygen(dir.path(), "user", KeyType::Ed25519, "secret");
        let cert = sign_certificate(&ca, &user, &["root", "rscptest"], false);
        assert_eq!(cert, dir.path().join("user-cert.pub"));
        let text = std::fs::read_to_string(&cert).expect("cert");
        assert!(text.starts_with("ssh-ed25519-cert-v01@openssh.com "), "{text}");

        let out = output_timeout(
            Command::new(ssh_keygen()).arg("-L").arg("-f").arg(&cert),
            Duration::from_secs(10),
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(listing.contains("user certificate"), "{listing}");
        assert!(listing.contains("rscptest"), "{listing}");

        // Encrypted with the passphrase: an empty one does not open it.
        let out = output_timeout(
            Command::new(ssh_keygen()).args(["-y", "-P", ""]).arg("-f").arg(&user.private),
            Duration::from_secs(10),
        );
        assert!(!out.status.success());
        let out = output_timeout(
            Command::new(ssh_keygen()).args(["-y", "-P", "secret"]).arg("-f").arg(&user.private),
            Duration::from_secs(10),
        );
        assert!(out.status.success());
    }
}
