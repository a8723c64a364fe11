//! The testkit against the real OpenSSH client: every way the rscp tests
//! log in works with `ssh`, and fails when it should.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use rscp_testkit::{
    Agent, KeyType, Sshd, SshdOptions, TEST_PASSWORD, TEST_USER, askpass, ensure_test_user, keygen,
    output_timeout, require_openssh, sign_certificate, with_askpass,
};

const SSH_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_TIMEOUT: Duration = Duration::from_secs(5);

fn run(mut command: Command) -> Output {
    output_timeout(&mut command, SSH_TIMEOUT)
}

/// Asserts a successful run printing `stdout`; shows ssh's and sshd's
/// stderr otherwise.
fn assert_ok(sshd: &Sshd, out: &Output, stdout: &str) {
    assert!(
        out.status.success() && out.stdout == stdout.as_bytes(),
        "ssh: {}\nstdout: {:?}\nstderr: {}\n--- sshd ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
}

fn assert_refused(sshd: &Sshd, out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(255),
        "ssh should have failed: {}\nstdout: {:?}\nstderr: {}\n--- sshd ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
}

fn assert_logged(sshd: &Sshd, needle: &str) {
    assert!(sshd.wait_for_log(needle, LOG_TIMEOUT), "sshd did not log {needle:?}:\n{}", sshd.log());
}

#[test]
fn key_login_as_root() {
    if !require_openssh() {
        return;
    }
    let keys = tempfile::tempdir().expect("tempdir");
    let good = keygen(keys.path(), "good", KeyType::Ed25519, "");
    let other = keygen(keys.path(), "other", KeyType::Ed25519, "");
    // Public-key logins as root work with and without PAM.
    for use_pam in [false, true] {
        let sshd = Sshd::start(SshdOptions {
            authorized_keys: vec![good.public_line.clone()],
            use_pam: Some(use_pam),
            ..SshdOptions::default()
        });
        let mut ssh = sshd.ssh_command(&[]);
        ssh.arg("-i").arg(&good.private).args(["root@127.0.0.1", "echo hello; id -un"]);
        assert_ok(&sshd, &run(ssh), "hello\nroot\n");
        assert_logged(&sshd, "Accepted publickey for root from 127.0.0.1");

        let mut ssh = sshd.ssh_command(&[]);
        ssh.arg("-i").arg(&other.private).args(["root@127.0.0.1", "true"]);
        assert_refused(&sshd, &run(ssh));

        // Added at run time: accepted from then on.
        sshd.add_authorized_key(&other.public_line);
        let mut ssh = sshd.ssh_command(&[]);
        ssh.arg("-i").arg(&other.private).args(["root@127.0.0.1", "true"]);
        assert_ok(&sshd, &run(ssh), "");
    }
}

#[test]
fn host_keys_and_known_hosts() {
    if !require_openssh() {
        return;
    }
    let keys = tempfile::tempdir().expect("tempdir");
    let user = keygen(keys.path(), "user", KeyType::Ed25519, "");
    let sshd = Sshd::start(SshdOptions {
        authorized_keys: vec![user.public_line.clone()],
        host_key_types: vec![KeyType::Ed25519, KeyType::Ecdsa, KeyType::Rsa],
        ..SshdOptions::default()
    });
    let lines = sshd.known_hosts_lines();
    assert_eq!(lines.len(), 3);
    let prefix = format!("[127.0.0.1]:{} ", sshd.port);
    assert!(lines[0].starts_with(&format!("{prefix}ssh-ed25519 AAAA")), "{lines:?}");
    assert!(lines[1].starts_with(&format!("{prefix}ecdsa-sha2-nistp256 AAAA")), "{lines:?}");
    assert!(lines[2].starts_with(&format!("{prefix}ssh-rsa AAAA")), "{lines:?}");
    assert_eq!(sshd.addr().to_string(), format!("127.0.0.1:{}", sshd.port));

    for algorithm in ["ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-256"] {
        let mut ssh = sshd.ssh_command(&["-o", &format!("HostKeyAlgorithms={algorithm}")]);
        ssh.arg("-i").arg(&user.private).args(["root@127.0.0.1", "true"]);
        assert_ok(&sshd, &run(ssh), "");
    }

    // A known_hosts naming another key for this server: refused.
    let wrong = keys.path().join("wrong_known_hosts");
    let stranger = keygen(keys.path(), "stranger", KeyType::Ed25519, "");
    std::fs::write(&wrong, format!("{prefix}{}\n", stranger.public_key())).expect("write");
    let mut ssh = sshd.ssh_command(&["-o", &format!("UserKnownHostsFile={}", wrong.display())]);
    ssh.arg("-i").arg(&user.private).args(["root@127.0.0.1", "true"]);
    assert_refused(&sshd, &run(ssh));
}

#[test]
fn agent_login() {
    if !require_openssh() {
        return;
    }
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keygen(keys.path(), "agent_key", KeyType::Ecdsa, "agent pass");
    let sshd =
        Sshd::start(SshdOptions { authorized_keys: vec![key.public_line.clone()], ..SshdOptions::default() });
    let agent = Agent::start();
    let agent_opt = format!("IdentityAgent={}", agent.socket.display());
    let ssh_via_agent = || {
        let mut ssh = sshd.ssh_command(&["-o", &agent_opt, "-o", "IdentitiesOnly=no"]);
        ssh.args(["root@127.0.0.1", "echo agent"]);
        ssh
    };

    // Empty agent: no way in.
    assert_refused(&sshd, &run(ssh_via_agent()));

    agent.add(&key);
    assert_ok(&sshd, &run(ssh_via_agent()), "agent\n");
    assert_logged(&sshd, "Accepted publickey for root from 127.0.0.1");

    // SSH_AUTH_SOCK works as well as IdentityAgent.
    let mut ssh = sshd.ssh_command(&["-o", "IdentitiesOnly=no", "-o", "IdentityAgent=SSH_AUTH_SOCK"]);
    ssh.env("SSH_AUTH_SOCK", &agent.socket).args(["root@127.0.0.1", "true"]);
    assert_ok(&sshd, &run(ssh), "");
}

#[test]
fn certificate_login() {
    if !require_openssh() {
        return;
    }
    let keys = tempfile::tempdir().expect("tempdir");
    let ca = keygen(keys.path(), "user_ca", KeyType::Ed25519, "");
    let good = keygen(keys.path(), "good", KeyType::Ed25519, "");
    let wrong_principal = keygen(keys.path(), "wrong_principal", KeyType::Ed25519, "");
    let rogue_ca = keygen(keys.path(), "rogue_ca", KeyType::Ed25519, "");
    let rogue = keygen(keys.path(), "rogue", KeyType::Ed25519, "");
    sign_certificate(&ca, &good, &["root"], false);
    sign_certificate(&ca, &wrong_principal, &["nobody"], false);
    sign_certificate(&rogue_ca, &rogue, &["root"], false);

    // No authorized_keys: only certificates get in.
    let sshd =
        Sshd::start(SshdOptions { trusted_user_ca: Some(ca.public.clone()), ..SshdOptions::default() });
    let login = |key: &Path| {
        let mut ssh = sshd.ssh_command(&[]);
        ssh.arg("-i").arg(key).args(["root@127.0.0.1", "echo cert"]);
        run(ssh)
    };
    assert_ok(&sshd, &login(&good.private), "cert\n");
    assert_logged(&sshd, "Accepted publickey for root from 127.0.0.1");
    assert_logged(&sshd, "ED25519-CERT");
    assert_refused(&sshd, &login(&wrong_principal.private));
    assert_refused(&sshd, &login(&rogue.private));
}

#[test]
fn host_certificate() {
    if !require_openssh() {
        return;
    }
    let keys = tempfile::tempdir().expect("tempdir");
    let user = keygen(keys.path(), "user", KeyType::Ed25519, "");
    let sshd = Sshd::start(SshdOptions {
        authorized_keys: vec![user.public_line.clone()],
        host_certificate: true,
        ..SshdOptions::default()
    });
    let ca_line = sshd.cert_authority_line().expect("cert-authority line");
    let ca = sshd.host_ca.as_ref().expect("host CA");
    assert_eq!(ca_line, format!("@cert-authority [127.0.0.1]:{} {}", sshd.port, ca.public_key()));
    assert_eq!(sshd.host_certificates.len(), 1);

    let login = |known_hosts_line: &str| {
        let known_hosts = keys.path().join("known_hosts_ca");
        std::fs::write(&known_hosts, format!("{known_hosts_line}\n")).expect("write");
        let mut ssh = sshd.ssh_command(&["-o", &format!("UserKnownHostsFile={}", known_hosts.display())]);
        ssh.arg("-i").arg(&user.private).args(["root@127.0.0.1", "echo host-cert"]);
        run(ssh)
    };
    assert_ok(&sshd, &login(&ca_line), "host-cert\n");

    // Another CA: the server is unknown, and StrictHostKeyChecking=yes refuses.
    let other_ca = keygen(keys.path(), "other_ca", KeyType::Ed25519, "");
    let other = format!("@cert-authority [127.0.0.1]:{} {}", sshd.port, other_ca.public_key());
    assert_refused(&sshd, &login(&other));

    // Without host_certificate there is no CA line.
    let plain = Sshd::start(SshdOptions::default());
    assert!(plain.cert_authority_line().is_none());
    assert!(plain.host_ca.is_none());
}

/// `ssh` as the test user, answering the password prompt(s) with `password`.
fn password_login(sshd: &Sshd, method: &str, password: &str, dir: &Path) -> Output {
    let script = askpass(dir, password);
    let mut ssh = sshd.ssh_command(&[
        "-o",
        "BatchMode=no",
        "-o",
        &format!("PreferredAuthentications={method}"),
        "-o",
        "PubkeyAuthentication=no",
    ]);
    with_askpass(&mut ssh, &script);
    ssh.arg(format!("{TEST_USER}@127.0.0.1")).arg("id -un");
    run(ssh)
}

#[test]
fn password_login_as_test_user() {
    if !require_openssh() || !ensure_test_user() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // Password authentication works with PAM and without (/etc/shadow).
    for use_pam in [None, Some(true)] {
        let sshd = Sshd::start(SshdOptions { password_auth: true, use_pam, ..SshdOptions::default() });
        let out = password_login(&sshd, "password", TEST_PASSWORD, dir.path());
        assert_ok(&sshd, &out, &format!("{TEST_USER}\n"));
        assert_logged(&sshd, &format!("Accepted password for {TEST_USER} from 127.0.0.1"));

        let out = password_login(&sshd, "password", "not the password", dir.path());
        assert_refused(&sshd, &out);
        // Keyboard-interactive is off.
        let out = password_login(&sshd, "keyboard-interactive", TEST_PASSWORD, dir.path());
        assert_refused(&sshd, &out);
    }
}

#[test]
fn keyboard_interactive_login_as_test_user() {
    if !require_openssh() || !ensure_test_user() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sshd = Sshd::start(SshdOptions { kbd_interactive: true, ..SshdOptions::default() });
    assert!(std::fs::read_to_string(sshd.config_path()).expect("config").contains("\nUsePAM yes\n"));
    let out = password_login(&sshd, "keyboard-interactive", TEST_PASSWORD, dir.path());
    assert_ok(&sshd, &out, &format!("{TEST_USER}\n"));
    assert_logged(&sshd, &format!("Accepted keyboard-interactive/pam for {TEST_USER} from 127.0.0.1"));

    let out = password_login(&sshd, "keyboard-interactive", "not the password", dir.path());
    assert_refused(&sshd, &out);
    // Password authentication is off.
    let out = password_login(&sshd, "password", TEST_PASSWORD, dir.path());
    assert_refused(&sshd, &out);

    // Without PAM, OpenSSH on Linux has no keyboard-interactive device.
    let no_pam =
        Sshd::start(SshdOptions { kbd_interactive: true, use_pam: Some(false), ..SshdOptions::default() });
    let out = password_login(&no_pam, "keyboard-interactive", TEST_PASSWORD, dir.path());
    assert_refused(&no_pam, &out);
}

#[test]
fn concurrent_servers_get_distinct_ports() {
    if !require_openssh() {
        return;
    }
    let servers: Vec<Sshd> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4).map(|_| scope.spawn(|| Sshd::start(SshdOptions::default()))).collect();
        handles.into_iter().map(|h| h.join().expect("start")).collect()
    });
    let mut ports: Vec<u16> = servers.iter().map(|s| s.port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 4);
    for server in &servers {
        assert!(std::net::TcpStream::connect(server.addr()).is_ok());
    }
    let addr = servers[0].addr();
    drop(servers);
    // Dropped: killed, nothing listens any more.
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}
