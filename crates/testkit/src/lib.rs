//! Test-only helpers for rscp's integration tests: a real OpenSSH `sshd` on
//! 127.0.0.1 with throwaway keys and config, a real `ssh-agent`, keys and
//! certificates made by `ssh-keygen`, and a local user with a known password.
//!
//! Dev-only (`publish = false`): other crates use it as a dev-dependency,
//! `rscp-testkit.workspace = true`.
//!
//! # Peers
//!
//! - [`require`]`(program) -> bool`: the program is installed (on `PATH`, or
//!   in an `sbin` directory). If not: with `RSCP_REQUIRE_PEERS=1` (CI) it
//!   panics with `RSCP_REQUIRE_PEERS=1 but <program> is not installed`, else
//!   it prints a skip note and returns false. Use as
//!   `if !rscp_testkit::require_openssh() { return; }`. [`peers_required`]
//!   tells whether `RSCP_REQUIRE_PEERS=1`.
//! - [`require_openssh`]: `require` for `sshd`, `ssh`, `ssh-keygen`,
//!   `ssh-agent`, `ssh-add`. [`find_program`] resolves a program to a path.
//!
//! # Keys and certificates
//!
//! - [`keygen`]`(dir, name, KeyType, passphrase) -> KeyPair` runs
//!   `ssh-keygen -q -t TYPE -N PASSPHRASE -C rscp-test-NAME -f DIR/NAME`
//!   (RSA keys are 2048 bits, to keep tests fast). [`KeyPair`] has
//!   `private`, `public`, `public_line` (the `.pub` line, trimmed),
//!   `passphrase`, `kind`, and [`KeyPair::public_key`] (the line without its
//!   comment).
//! - [`sign_certificate`]`(ca, key, principals, host) -> PathBuf` runs
//!   `ssh-keygen -s CA -I id -n principals [-h] -V -5m:+1h key.pub` and
//!   returns `key-cert.pub` (which `ssh -i key` picks up by itself).
//!
//! # sshd
//!
//! [`Sshd::start`]`(SshdOptions) -> Sshd` starts `/usr/sbin/sshd -D -e -f
//! CONFIG` on a free port of 127.0.0.1 (retrying on a bind race), waits at
//! most ~10 s for it to listen, and panics with sshd's stderr on failure.
//! Dropping the [`Sshd`] kills sshd and waits for it; its temporary directory
//! (keys, config, `authorized_keys`, `known_hosts`) goes with it.
//!
//! [`SshdOptions`] (all `Default`): `authorized_keys` (lines),
//! `host_key_types` (default `[Ed25519]`), `password_auth`,
//! `kbd_interactive`, `use_pam` (`None`: `UsePAM yes` iff `kbd_interactive`),
//! `trusted_user_ca` (`TrustedUserCAKeys`), `host_certificate` (sign every
//! host key with a throwaway CA, see [`Sshd::cert_authority_line`]),
//! `log_level` (default `DEBUG1`), `extra_config` (raw lines; see below).
//!
//! The config it writes: `ListenAddress 127.0.0.1`, `Port N`, `HostKey` (and
//! `HostCertificate`) per host key, then `PidFile none`, `StrictModes no`,
//! `UsePAM`, `PermitRootLogin yes`, `AuthorizedKeysFile DIR/authorized_keys`,
//! `PubkeyAuthentication yes`, `PasswordAuthentication`,
//! `KbdInteractiveAuthentication`, `LogLevel`, `Subsystem sftp
//! internal-sftp`, `MaxStartups 100`, `ClientAliveInterval 0`, `PrintMotd
//! no`, `PrintLastLog no`, `UseDNS no`, and `TrustedUserCAKeys`. sshd keeps the
//! *first* value of a keyword, so an `extra_config` line whose keyword is one
//! of those defaults replaces the default (except `ListenAddress`, `Port`,
//! `HostKey`, `HostCertificate`); `extra_config` lines from the first
//! `Match` on go at the end of the file.
//!
//! Accessors: `port`, `dir`, `host_keys`, `host_ca`, `host_certificates`
//! (fields);
//! [`Sshd::addr`], [`Sshd::known_hosts_lines`] (`[127.0.0.1]:PORT ssh-ed25519
//! AAAA…`), [`Sshd::known_hosts_path`] (a file holding those lines),
//! [`Sshd::cert_authority_line`] (`@cert-authority [127.0.0.1]:PORT <CA key>`),
//! [`Sshd::config_path`], [`Sshd::authorized_keys_path`],
//! [`Sshd::add_authorized_key`], [`Sshd::log`] (sshd's stderr so far; sshd's
//! per-connection processes log there too, e.g. `Accepted publickey for
//! root`), [`Sshd::wait_for_log`].
//!
//! [`Sshd::ssh_command`]`(first_args) -> Command`: the OpenSSH client set up
//! for this server: `ssh FIRST_ARGS -F /dev/null -p PORT -o
//! UserKnownHostsFile=<known_hosts_path> -o StrictHostKeyChecking=yes -o
//! BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none …`, stdin null,
//! without `SSH_AUTH_SOCK`/`SSH_ASKPASS`/`DISPLAY` in its environment. `ssh`
//! also keeps the first value of an option, so `first_args` (e.g. `["-o",
//! "BatchMode=no"]`) override those defaults. Append `-i KEY` (identities
//! add up), then the destination and the remote command:
//! `.arg("-i").arg(&key.private).args(["root@127.0.0.1", "true"])`. For an
//! agent pass `["-o", "IdentityAgent=SOCK", "-o", "IdentitiesOnly=no"]`. [`Sshd::ssh_config`]
//! writes the same as an `ssh_config` `Host` block for tools given `-F`.
//!
//! # Agent
//!
//! [`Agent::start`] runs `ssh-agent -D -a DIR/agent.sock` (killed on drop);
//! `agent.socket` is the `SSH_AUTH_SOCK` value; [`Agent::add`]`(&KeyPair)`
//! runs `ssh-add` (with the key's passphrase given through `SSH_ASKPASS`);
//! [`Agent::list`] is `ssh-add -L`.
//!
//! # Password and keyboard-interactive
//!
//! [`ensure_test_user`] creates [`TEST_USER`] (`useradd -m -s /bin/sh`) if
//! missing and sets its password to [`TEST_PASSWORD`] (`chpasswd`), once per
//! process; it needs root. It returns false (or panics under
//! `RSCP_REQUIRE_PEERS=1`) when it cannot. On Debian 12 / OpenSSH 9.2:
//! password authentication works with `UsePAM no` (sshd checks
//! `/etc/shadow`) and with `UsePAM yes`; keyboard-interactive needs `UsePAM
//! yes` (the PAM `Password:` prompt), which does not disturb public-key
//! logins as root. [`askpass`]`(dir, secret)` writes an `SSH_ASKPASS` script
//! printing `secret`; [`with_askpass`] sets `SSH_ASKPASS` and
//! `SSH_ASKPASS_REQUIRE=force` on a command (pass `-o BatchMode=no` too).
//!
//! # Bounded runs
//!
//! [`output_timeout`]`(&mut Command, Duration) -> Output` runs a command to
//! completion, killing it (and panicking) past the deadline.

mod agent;
mod keys;
mod process;
mod rscpd;
mod sshd;
mod user;

pub use agent::Agent;
pub use keys::{KeyPair, KeyType, keygen, sign_certificate};
pub use process::{askpass, find_program, output_timeout, require, require_openssh, with_askpass};
pub use rscpd::{Rscpd, RscpdOptions};
pub use sshd::{Sshd, SshdOptions};
pub use user::{TEST_PASSWORD, TEST_USER, ensure_test_user};

/// True when `RSCP_REQUIRE_PEERS=1`: missing peers are failures, not skips.
pub fn peers_required() -> bool {
    std::env::var("RSCP_REQUIRE_PEERS").as_deref() == Ok("1")
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}
