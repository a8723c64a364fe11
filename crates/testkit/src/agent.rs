//! A real `ssh-agent` on a socket in a temporary directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::keys::KeyPair;
use crate::process::{askpass_once, find_program, output_timeout, with_askpass};

/// `ssh-agent -D -a DIR/agent.sock`, in the foreground; killed on drop.
#[derive(Debug)]
pub struct Agent {
    /// The agent's socket: the value for `SSH_AUTH_SOCK`.
    pub socket: PathBuf,
    /// Holds the socket (and askpass scripts); removed on drop.
    pub dir: TempDir,
    child: Child,
}

impl Agent {
    /// Starts the agent and waits (at most ~10 s) for its socket to appear.
    pub fn start() -> Agent {
        let program = find_program("ssh-agent").unwrap_or_else(|| panic!("ssh-agent is not installed"));
        let dir = tempfile::Builder::new()
            .prefix("rscp-agent-")
            .tempdir()
            .unwrap_or_else(|e| panic!("tempdir: {e}"));
        let socket = dir.path().join("agent.sock");
        let mut child = Command::new(program)
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ssh-agent: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("ssh-agent exited early ({status})");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ssh-agent did not create {} within 10 s", socket.display());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Agent { socket, dir, child }
    }

    /// Adds `key` to the agent (`ssh-add KEY`, its passphrase given through
    /// `SSH_ASKPASS`). Panics with ssh-add's output on failure.
    pub fn add(&self, key: &KeyPair) {
        let mut command = self.ssh_add();
        command.arg(&key.private);
        if !key.passphrase.is_empty() {
            let script = askpass_once(self.dir.path(), &key.passphrase);
            with_askpass(&mut command, &script);
        }
        let out = output_timeout(&mut command, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "{command:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The public key lines the agent holds (`ssh-add -L`).
    pub fn list(&self) -> Vec<String> {
        let out = output_timeout(self.ssh_add().arg("-L"), Duration::from_secs(30));
        // Exit status 1 means "no identities".
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty() && out.status.success())
            .map(str::to_owned)
            .collect()
    }

    /// `ssh-add` talking to this agent only.
    fn ssh_add(&self) -> Command {
        let program = find_program("ssh-add").unwrap_or_else(|| panic!("ssh-add is not installed"));
        let mut command = Command::new(program);
        command
            .env("SSH_AUTH_SOCK", &self.socket)
            .env_remove("SSH_ASKPASS")
            .env_remove("SSH_ASKPASS_REQUIRE")
            .stdin(Stdio::null());
        command
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyType, keygen};

    #[test]
    fn add_and_list() {
        if !crate::require("ssh-agent") || !crate::require("ssh-add") || !crate::require("ssh-keygen") {
            return;
        }
        let keys = tempfile::tempdir().expect("tempdir");
        let plain = keygen(keys.path(), "plain", KeyType::Ed25519, "");
        let locked = keygen(keys.path(), "locked", KeyType::Ecdsa, "pass phrase");
        let agent = Agent::start();
        assert!(agent.list().is_empty());
        agent.add(&plain);
        agent.add(&locked);
        let listed = agent.list();
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(listed.iter().any(|l| l.starts_with(&plain.public_key())));
        assert!(listed.iter().any(|l| l.starts_with(&locked.public_key())));

        // A wrong passphrase fails.
        let mut wrong = locked.clone();
        wrong.passphrase = "nope".into();
        assert!(std::panic::catch_unwind(|| agent.add(&wrong)).is_err());
    }
}
