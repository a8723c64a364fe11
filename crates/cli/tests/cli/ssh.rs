//! The native SSH transport end to end: the real `rscp` binary against a real
//! OpenSSH `sshd` on 127.0.0.1 (started by `rscp-testkit`), whose remote end is
//! OpenSSH's own `scp -t` / `scp -f` run through the login shell.
//!
//! Every run passes `-F /dev/null` (or its own `-F` file) and sets the agent
//! and askpass environment explicitly, so the machine's `~/.ssh` is never
//! read; every process is bounded in time. Where rscp must print what `ssh`
//! prints, the real `ssh` is run against the same server and the texts are
//! compared.

use std::ffi::OsStr;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rscp_testkit::{
    Agent, KeyPair, KeyType, Sshd, SshdOptions, TEST_PASSWORD, TEST_USER, askpass, ensure_test_user, keygen,
    output_timeout, require_openssh, sign_certificate, with_askpass,
};

use crate::*;

/// The bound on one rscp or ssh run.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long sshd may take to log a login's outcome.
const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// One test's client side: a directory (local files, keys, known_hosts) and a
/// key authorized as root on the server.
struct Setup {
    dir: tempfile::TempDir,
    key: KeyPair,
    sshd: Sshd,
}

impl Setup {
    /// Starts sshd with `options` plus an ed25519 client key in
    /// `authorized_keys`; `None` (skip) when OpenSSH is missing.
    fn new(options: SshdOptions) -> Option<Setup> {
        if !require_openssh() {
            return None;
        }
        let dir = client_dir();
        let key = keygen(&dir.path().join("keys"), "id_ed25519", KeyType::Ed25519, "");
        let mut options = options;
        options.authorized_keys.push(key.public_line.clone());
        let sshd = Sshd::start(options);
        Some(Setup { dir, key, sshd })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `127.0.0.1:` + the absolute path of `rel`.
    fn remote(&self, rel: &str) -> String {
        format!("127.0.0.1:{}", self.path(rel).display())
    }

    /// rscp for this server: `first` (which win: ssh options keep their first
    /// value), then `-F /dev/null -P PORT`, the server's known_hosts, strict
    /// checking, batch mode, no agent. No identity: add `-i`.
    fn rscp(&self, first: &[&str]) -> Command {
        let mut cmd = rscp(self.dir.path());
        clean_env(&mut cmd);
        cmd.args(first).args(["-F", "/dev/null", "-P", &self.sshd.port.to_string()]);
        cmd.arg("-o").arg(format!("UserKnownHostsFile={}", self.sshd.known_hosts_path().display()));
        cmd.args(DEFAULT_OPTIONS);
        cmd
    }

    /// [`Setup::rscp`] with the authorized key.
    fn rscp_key(&self, first: &[&str]) -> Command {
        let mut cmd = self.rscp(first);
        cmd.arg("-i").arg(&self.key.private);
        cmd
    }

    /// Asserts that rscp succeeded, showing its stderr and sshd's log if not.
    #[track_caller]
    fn assert_ok(&self, out: &Output) {
        assert!(
            out.code == Some(0),
            "rscp failed ({:?}):\n{}\n--- sshd ---\n{}",
            out.code,
            out.stderr_text(),
            self.sshd.log()
        );
    }

    #[track_caller]
    fn assert_logged(&self, needle: &str) {
        assert!(
            self.sshd.wait_for_log(needle, LOG_TIMEOUT),
            "sshd did not log {needle:?}:\n{}",
            self.sshd.log()
        );
    }
}

/// `-o` options every run gets after the test's own.
const DEFAULT_OPTIONS: [&str; 10] = [
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    "IdentityAgent=none",
    "-o",
    "ConnectTimeout=10",
];

/// A temporary directory sshd's users can traverse (0755), with `keys/`.
fn client_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("rscp-ssh-test-").tempdir().expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::create_dir(dir.path().join("keys")).expect("mkdir");
    dir
}

/// No agent, no askpass, no display: a test sets what it needs.
fn clean_env(cmd: &mut Command) {
    for var in ["SSH_AUTH_SOCK", "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", "DISPLAY", "WAYLAND_DISPLAY"] {
        cmd.env_remove(var);
    }
}

fn exec(cmd: &mut Command) -> Output {
    run_with(cmd, b"", RUN_TIMEOUT)
}

/// Runs rscp with `operands` appended.
fn exec_with<S: AsRef<OsStr>>(mut cmd: Command, operands: &[S]) -> Output {
    cmd.args(operands);
    exec(&mut cmd)
}

/// stderr with OpenSSH's `\r\n` line ends made `\n`, without sshd's own
/// `debug1:` lines: testkit's sshd runs with `-e` and `LogLevel DEBUG1`, so
/// a session's process logs a few lines to the channel's stderr before it
/// runs the command, and the client shows them (rscp escapes their `\r`).
fn text(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .replace("\r\n", "\n")
        .lines()
        .filter(|line| !line.starts_with("debug1: "))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// Asserts a failed run: exit status 1, `want` in stderr.
#[track_caller]
fn assert_fails_with(out: &Output, want: &str) {
    let stderr = text(&out.stderr);
    assert!(
        out.code == Some(1) && stderr.contains(want),
        "want exit 1 and {want:?}, got {:?}:\n{stderr}",
        out.code
    );
}

/// The real `ssh` for `sshd` (see `Sshd::ssh_command`), `first` winning,
/// running `true` as `user`; returns its exit code and stderr (`\r\n` → `\n`).
fn ssh_stderr(sshd: &Sshd, first: &[&str], user: &str, key: Option<&Path>) -> (Option<i32>, String) {
    let mut cmd = sshd.ssh_command(first);
    if let Some(key) = key {
        cmd.arg("-i").arg(key);
    }
    cmd.arg(format!("{user}@127.0.0.1")).arg("true");
    let out = output_timeout(&mut cmd, RUN_TIMEOUT);
    (out.status.code(), text(&out.stderr))
}

/// A small tree with varied sizes, modes and times.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
    fs::create_dir(root.join("empty dir")).expect("mkdir");
    let files: [(&str, Vec<u8>, u32); 5] = [
        ("a.bin", pseudo_random(300_000, 7), 0o640),
        ("empty", Vec::new(), 0o600),
        ("name with spaces.txt", b"spaces\n".to_vec(), 0o644),
        ("sub/b.txt", b"bee\n".to_vec(), 0o444),
        ("sub/deeper/c.sh", pseudo_random(5000, 8), 0o755),
    ];
    for (name, contents, mode) in &files {
        write_file(&root.join(name), contents, *mode);
    }
    fs::set_permissions(root.join("sub/deeper"), fs::Permissions::from_mode(0o700)).expect("chmod");
    let dirs = ["sub/deeper", "sub", "empty dir"];
    for (i, name) in files.iter().map(|f| f.0).chain(dirs).enumerate() {
        let i = i as i64;
        set_times(&root.join(name), 1_500_000_000 + i * 7, 1_600_000_000 + i * 11);
    }
    set_times(root, 1_400_000_000, 1_450_000_000);
}

/// Uploads `tree` to `up` and downloads it back to `down` with `-r -p`
/// (through `client`, called once per copy), comparing both copies with the
/// source, metadata included.
#[track_caller]
fn round_trip(setup: &Setup, client: &dyn Fn() -> Command, tag: &str) {
    round_trip_via(setup, client, tag, &|rel| setup.remote(rel), &|rel| setup.path(rel));
}

/// [`round_trip`] where the uploaded tree is `remote(name)` on the wire and
/// `local(name)` on this machine (another user's directory, a config alias).
#[track_caller]
fn round_trip_via(
    setup: &Setup,
    client: &dyn Fn() -> Command,
    tag: &str,
    remote: &dyn Fn(&str) -> String,
    local: &dyn Fn(&str) -> PathBuf,
) {
    let src = setup.path(&format!("{tag}-src"));
    make_tree(&src);
    let expected = settled_snapshot(&src);
    let up = format!("{tag}-up");
    let out =
        exec_with(client(), &["-r".into(), "-p".into(), src.clone().into_os_string(), remote(&up).into()]);
    setup.assert_ok(&out);
    assert_same_tree(&src, &local(&up), Some(&expected));

    let expected = settled_snapshot(&local(&up));
    let down = setup.path(&format!("{tag}-down"));
    let out =
        exec_with(client(), &["-r".into(), "-p".into(), remote(&up).into(), down.clone().into_os_string()]);
    setup.assert_ok(&out);
    assert_same_tree(&local(&up), &down, Some(&expected));
}

/// One small file `name` with `contents` in the client directory.
fn small_file(setup: &Setup, name: &str, contents: &[u8]) -> PathBuf {
    let path = setup.path(name);
    write_file(&path, contents, 0o644);
    path
}

/// `SHA256:…`, the fingerprint sshd logs for `key`.
fn fingerprint(key: &KeyPair) -> String {
    let out = output_timeout(Command::new("ssh-keygen").arg("-lf").arg(&key.public), RUN_TIMEOUT);
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    listing.split_whitespace().nth(1).expect("ssh-keygen -l output").to_string()
}

/// A port nothing listens on (bound a moment ago, then closed).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// An askpass script that prints `secret` and appends each prompt it gets
/// to `log`.
fn logging_askpass(dir: &Path, name: &str, secret: &str, log: &Path) -> PathBuf {
    let path = dir.join(name);
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$1\" >> {}\nprintf '%s\\n' {}\n",
        quote(&log.display().to_string()),
        quote(secret)
    );
    write_file(&path, script.as_bytes(), 0o700);
    path
}

// ---------------------------------------------------------------------------
// Public-key authentication.

#[test]
fn key_auth_ed25519_ecdsa_rsa_round_trip() {
    if !require_openssh() {
        return;
    }
    let keys = tempdir();
    let ecdsa = keygen(keys.path(), "id_ecdsa", KeyType::Ecdsa, "");
    let rsa = keygen(keys.path(), "id_rsa", KeyType::Rsa, "");
    let options = SshdOptions {
        authorized_keys: vec![ecdsa.public_line.clone(), rsa.public_line.clone()],
        ..SshdOptions::default()
    };
    let Some(setup) = Setup::new(options) else { return };
    for (key, tag, logged) in
        [(&setup.key, "ed25519", "ED25519"), (&ecdsa, "ecdsa", "ECDSA"), (&rsa, "rsa", "RSA")]
    {
        let client = || {
            let mut cmd = setup.rscp(&[]);
            cmd.arg("-i").arg(&key.private);
            cmd
        };
        round_trip(&setup, &client, tag);
        // sshd accepted this very key.
        setup.assert_logged(&format!("ssh2: {logged} {}", fingerprint(key)));
    }
    // A key goes first, without the "none" request ssh starts with (its
    // refusal would only list the methods): a round trip fewer per connection.
    let log = setup.sshd.log();
    assert!(log.contains("method publickey") && !log.contains("method none"), "{log}");
    // A key the server does not know is refused, as ssh words it.
    let stranger = keygen(keys.path(), "stranger", KeyType::Ed25519, "");
    let file = small_file(&setup, "f.txt", b"data\n");
    let mut cmd = setup.rscp(&[]);
    cmd.arg("-i").arg(&stranger.private);
    let out = exec_with(cmd, &[file.into_os_string(), setup.remote("refused.txt").into()]);
    let (_, ssh) = ssh_stderr(&setup.sshd, &[], "root", Some(&stranger.private));
    assert_fails_with(&out, "root@127.0.0.1: Permission denied (publickey).");
    assert!(text(&out.stderr).contains(ssh.trim_end()), "ssh says {ssh:?}, rscp {:?}", out.stderr_text());
    assert!(!setup.path("refused.txt").exists());
}

#[test]
fn encrypted_key_passphrase_through_askpass() {
    let Some(setup) = Setup::new(SshdOptions::default()) else { return };
    let locked = keygen(&setup.path("keys"), "locked", KeyType::Ed25519, "open sesame");
    setup.sshd.add_authorized_key(&locked.public_line);
    let file = small_file(&setup, "f.txt", b"locked\n");

    let prompts = setup.path("prompts.log");
    let script = logging_askpass(setup.dir.path(), "askpass-good", "open sesame", &prompts);
    let mut cmd = setup.rscp(&["-o", "BatchMode=no"]);
    cmd.arg("-i").arg(&locked.private);
    with_askpass(&mut cmd, &script);
    let out = exec_with(cmd, &[file.as_os_str(), OsStr::new(&setup.remote("copy.txt"))]);
    setup.assert_ok(&out);
    assert_eq!(fs::read(setup.path("copy.txt")).expect("copy"), b"locked\n");
    let asked = fs::read_to_string(&prompts).expect("askpass ran");
    assert_eq!(asked, format!("Enter passphrase for key '{}': \n", locked.private.display()));
    let encrypted_client = || {
        let mut cmd = setup.rscp(&["-o", "BatchMode=no"]);
        cmd.arg("-i").arg(&locked.private);
        with_askpass(&mut cmd, &script);
        cmd
    };
    round_trip(&setup, &encrypted_client, "encrypted");

    // A wrong passphrase: asked NumberOfPasswordPrompts (3) times, then refused.
    let prompts = setup.path("prompts-wrong.log");
    let script = logging_askpass(setup.dir.path(), "askpass-bad", "wrong", &prompts);
    let mut cmd = setup.rscp(&["-o", "BatchMode=no"]);
    cmd.arg("-i").arg(&locked.private);
    with_askpass(&mut cmd, &script);
    let out = exec_with(cmd, &[file.as_os_str(), OsStr::new(&setup.remote("wrong.txt"))]);
    assert_fails_with(&out, "root@127.0.0.1: Permission denied (publickey).");
    assert!(!setup.path("wrong.txt").exists());
    assert_eq!(fs::read_to_string(&prompts).expect("askpass ran").lines().count(), 3);

    // Batch mode never asks: the key is skipped.
    let mut cmd = setup.rscp(&[]);
    cmd.arg("-i").arg(&locked.private);
    with_askpass(&mut cmd, &script);
    let before = fs::read_to_string(&prompts).expect("log");
    let out = exec_with(cmd, &[file.as_os_str(), OsStr::new(&setup.remote("batch.txt"))]);
    assert_fails_with(&out, "root@127.0.0.1: Permission denied (publickey).");
    assert_eq!(fs::read_to_string(&prompts).expect("log"), before, "askpass ran in batch mode");
}

#[test]
fn agent_keys_and_identities_only() {
    let Some(setup) = Setup::new(SshdOptions::default()) else { return };
    let locked = keygen(&setup.path("keys"), "locked", KeyType::Ecdsa, "agent pass");
    setup.sshd.add_authorized_key(&locked.public_line);
    let other = keygen(&setup.path("keys"), "other", KeyType::Ed25519, "");
    let agent = Agent::start();
    agent.add(&setup.key);
    agent.add(&locked);
    let file = small_file(&setup, "f.txt", b"agent\n");
    let with_agent = |first: &[&str]| {
        let mut cmd = setup.rscp(first);
        cmd.env("SSH_AUTH_SOCK", &agent.socket);
        cmd
    };

    // No -i: the agent's key. (IdentityAgent=SSH_AUTH_SOCK undoes the default
    // IdentityAgent=none; the default identity files do not exist for the
    // server anyway.)
    let out = exec_with(
        with_agent(&["-o", "IdentityAgent=SSH_AUTH_SOCK"]),
        &[file.as_os_str(), OsStr::new(&setup.remote("a.txt"))],
    );
    setup.assert_ok(&out);
    assert_eq!(fs::read(setup.path("a.txt")).expect("copy"), b"agent\n");
    round_trip(&setup, &|| with_agent(&["-o", "IdentityAgent=SSH_AUTH_SOCK"]), "agent");

    // Without IdentityAgent on the command line, SSH_AUTH_SOCK is used too:
    // here the option says none, so the agent must not be asked.
    let mut cmd = with_agent(&[]);
    cmd.arg("-i").arg(&other.private);
    let out = exec_with(cmd, &[file.as_os_str(), OsStr::new(&setup.remote("none.txt"))]);
    assert_fails_with(&out, "root@127.0.0.1: Permission denied (publickey).");

    // IdentitiesOnly=yes with another key: the agent's keys are not offered.
    let mut cmd = with_agent(&["-o", "IdentityAgent=SSH_AUTH_SOCK", "-o", "IdentitiesOnly=yes"]);
    cmd.arg("-i").arg(&other.private);
    let out = exec_with(cmd, &[file.as_os_str(), OsStr::new(&setup.remote("only.txt"))]);
    assert_fails_with(&out, "root@127.0.0.1: Permission denied (publickey).");
    assert!(!setup.path("only.txt").exists());
    // ... but without IdentitiesOnly they are.
    let mut cmd = with_agent(&["-o", "IdentityAgent=SSH_AUTH_SOCK"]);
    cmd.arg("-i").arg(&other.private);
    let out = exec_with(cmd, &[file.as_os_str(), OsStr::new(&setup.remote("both.txt"))]);
    setup.assert_ok(&out);

    // IdentitiesOnly=yes with the encrypted key's file, in batch mode: the
    // agent signs with it (the file itself could not be opened).
    let mut cmd = with_agent(&["-o", "IdentityAgent=SSH_AUTH_SOCK", "-o", "IdentitiesOnly=yes"]);
    cmd.arg("-i").arg(&locked.private);
    let out = exec_with(cmd, &[file.as_os_str(), OsStr::new(&setup.remote("locked.txt"))]);
    setup.assert_ok(&out);
    assert_eq!(fs::read(setup.path("locked.txt")).expect("copy"), b"agent\n");
    setup.assert_logged(&format!("ssh2: ECDSA {}", fingerprint(&locked)));
}

#[test]
fn user_certificate_without_authorized_keys() {
    if !require_openssh() {
        return;
    }
    let keys = tempdir();
    let ca = keygen(keys.path(), "user_ca", KeyType::Ed25519, "");
    let setup_dir = client_dir();
    let user = keygen(&setup_dir.path().join("keys"), "id_cert", KeyType::Ecdsa, "");
    let cert = sign_certificate(&ca, &user, &["root"], false);
    let sshd =
        Sshd::start(SshdOptions { trusted_user_ca: Some(ca.public.clone()), ..SshdOptions::default() });
    let setup = Setup { dir: setup_dir, key: user.clone(), sshd };
    assert_eq!(fs::read_to_string(setup.sshd.authorized_keys_path()).expect("authorized_keys").trim(), "");

    let file = small_file(&setup, "f.txt", b"certified\n");
    let out = exec_with(setup.rscp_key(&[]), &[file.as_os_str(), OsStr::new(&setup.remote("c.txt"))]);
    setup.assert_ok(&out);
    assert_eq!(fs::read(setup.path("c.txt")).expect("copy"), b"certified\n");
    setup.assert_logged("Accepted publickey for root from 127.0.0.1");
    setup.assert_logged("ECDSA-CERT SHA256:");
    round_trip(&setup, &|| setup.rscp_key(&[]), "certificate");

    // The same key without its certificate is refused.
    fs::rename(&cert, setup.path("moved-cert.pub")).expect("mv");
    let out = exec_with(setup.rscp_key(&[]), &[file.as_os_str(), OsStr::new(&setup.remote("nocert.txt"))]);
    assert_fails_with(&out, "root@127.0.0.1: Permission denied (publickey).");
    // CertificateFile names it explicitly.
    let cert_option = format!("CertificateFile={}", setup.path("moved-cert.pub").display());
    let out = exec_with(
        setup.rscp_key(&["-o", &cert_option]),
        &[file.as_os_str(), OsStr::new(&setup.remote("cf.txt"))],
    );
    setup.assert_ok(&out);
    assert!(setup.path("cf.txt").exists());
}

// ---------------------------------------------------------------------------
// Password and keyboard-interactive.

/// The uid and gid of `user`, from `id`.
fn ids_of(user: &str) -> (u32, u32) {
    let id = |flag: &str| {
        let out = output_timeout(Command::new("id").args([flag, user]), RUN_TIMEOUT);
        String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().expect("numeric id")
    };
    (id("-u"), id("-g"))
}

#[test]
fn password_and_keyboard_interactive() {
    if !require_openssh() || !ensure_test_user() {
        return;
    }
    let options = SshdOptions {
        password_auth: true,
        kbd_interactive: true,
        use_pam: Some(true),
        ..SshdOptions::default()
    };
    let Some(setup) = Setup::new(options) else { return };
    // A directory the test user owns, for its remote paths.
    let home = setup.path("user");
    fs::create_dir(&home).expect("mkdir");
    let (uid, gid) = ids_of(TEST_USER);
    std::os::unix::fs::chown(&home, Some(uid), Some(gid)).expect("chown");
    let remote = |rel: &str| format!("{TEST_USER}@127.0.0.1:{}/{rel}", home.display());
    let file = small_file(&setup, "f.txt", b"by password\n");

    for (method, logged, prompt) in [
        ("password", "Accepted password for rscptest", format!("{TEST_USER}@127.0.0.1's password: ")),
        ("keyboard-interactive", "Accepted keyboard-interactive/pam for rscptest", "Password: ".to_string()),
    ] {
        let prompts = setup.path(&format!("{method}.log"));
        let script = logging_askpass(setup.dir.path(), &format!("askpass-{method}"), TEST_PASSWORD, &prompts);
        let preferred = format!("PreferredAuthentications={method}");
        let mut cmd = setup.rscp(&["-o", "BatchMode=no", "-o", &preferred]);
        with_askpass(&mut cmd, &script);
        let target = format!("{method}.txt");
        let out = exec_with(cmd, &[file.as_os_str(), OsStr::new(&remote(&target))]);
        setup.assert_ok(&out);
        let copy = home.join(&target);
        assert_eq!(fs::read(&copy).expect("copy"), b"by password\n");
        assert_eq!(fs::metadata(&copy).expect("stat").uid(), uid, "written by the test user");
        setup.assert_logged(logged);
        assert_eq!(fs::read_to_string(&prompts).expect("askpass ran"), format!("{prompt}\n"));
        let by_method = || {
            let mut cmd = setup.rscp(&["-o", "BatchMode=no", "-o", &preferred]);
            with_askpass(&mut cmd, &script);
            cmd
        };
        round_trip_via(&setup, &by_method, method, &|rel| remote(rel), &|rel| home.join(rel));

        // And back.
        let mut cmd = setup.rscp(&["-o", "BatchMode=no", "-o", &preferred]);
        with_askpass(&mut cmd, &script);
        let back = setup.path(&format!("{method}-back.txt"));
        let out = exec_with(cmd, &[OsStr::new(&remote(&target)), back.as_os_str()]);
        setup.assert_ok(&out);
        assert_eq!(fs::read(&back).expect("download"), b"by password\n");

        // A wrong password: ssh's refusal, exit 1, nothing written.
        let script = askpass(setup.dir.path(), "not the password");
        let mut cmd =
            setup.rscp(&["-o", "BatchMode=no", "-o", &preferred, "-o", "NumberOfPasswordPrompts=1"]);
        with_askpass(&mut cmd, &script);
        let out = exec_with(cmd, &[file.as_os_str(), OsStr::new(&remote(&format!("{method}-wrong.txt")))]);
        let mut ssh = setup.sshd.ssh_command(&["-o", "BatchMode=no", "-o", &preferred]);
        with_askpass(&mut ssh, &script);
        ssh.args([&format!("{TEST_USER}@127.0.0.1"), "true"]);
        let ssh = text(&output_timeout(&mut ssh, RUN_TIMEOUT).stderr);
        assert_fails_with(&out, &format!("{TEST_USER}@127.0.0.1: Permission denied ("));
        assert!(text(&out.stderr).contains(ssh.trim_end()), "ssh says {ssh:?}, rscp {:?}", out.stderr_text());
        assert!(!home.join(format!("{method}-wrong.txt")).exists());
    }
}

// ---------------------------------------------------------------------------
// known_hosts.

#[test]
fn known_hosts_unknown_host() {
    let Some(setup) = Setup::new(SshdOptions::default()) else { return };
    let port = setup.sshd.port;
    let file = small_file(&setup, "f.txt", b"known\n");
    let kh = setup.path("known_hosts");
    let kh_option = format!("UserKnownHostsFile={}", kh.display());

    // StrictHostKeyChecking=yes: refused, with ssh's words.
    let out = exec_with(
        setup.rscp_key(&["-o", &kh_option]),
        &[file.as_os_str(), OsStr::new(&setup.remote("yes.txt"))],
    );
    assert_fails_with(
        &out,
        &format!(
            "No ED25519 host key is known for [127.0.0.1]:{port} and you have requested strict checking.\nHost key verification failed."
        ),
    );
    assert!(!setup.path("yes.txt").exists() && !kh.exists());
    let (_, ssh) = ssh_stderr(&setup.sshd, &["-o", &kh_option], "root", Some(&setup.key.private));
    assert_eq!(
        text(&out.stderr),
        format!("{ssh}lost connection\n"),
        "rscp vs scp -O: ssh's text, then scp's"
    );

    // -B with the default policy (ask): refused without asking.
    let mut cmd = rscp(setup.dir.path());
    clean_env(&mut cmd);
    cmd.args(["-B", "-F", "/dev/null", "-P", &port.to_string(), "-o", &kh_option]);
    cmd.args(["-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentityAgent=none", "-i"])
        .arg(&setup.key.private);
    let out = exec_with(cmd, &[file.as_os_str(), OsStr::new(&setup.remote("batch.txt"))]);
    assert_fails_with(&out, "Host key verification failed.");
    assert_eq!(
        text(&out.stderr),
        format!("{ssh}lost connection\n"),
        "rscp -B vs ssh, then scp's lost connection"
    );
    assert!(!setup.path("batch.txt").exists() && !kh.exists());

    // accept-new: the copy works and the key is learnt.
    let out = exec_with(
        setup.rscp_key(&["-o", &kh_option, "-o", "StrictHostKeyChecking=accept-new"]),
        &[file.as_os_str(), OsStr::new(&setup.remote("new.txt"))],
    );
    setup.assert_ok(&out);
    assert_eq!(
        text(&out.stderr),
        format!("Warning: Permanently added '[127.0.0.1]:{port}' (ED25519) to the list of known hosts.\n")
    );
    assert_eq!(fs::read(setup.path("new.txt")).expect("copy"), b"known\n");
    let learnt = fs::read_to_string(&kh).expect("known_hosts written");
    assert_eq!(learnt.lines().collect::<Vec<_>>(), setup.sshd.known_hosts_lines());
    // ... and from then on it is known: no warning, strict checking passes.
    let out = exec_with(
        setup.rscp_key(&["-o", &kh_option]),
        &[file.as_os_str(), OsStr::new(&setup.remote("again.txt"))],
    );
    setup.assert_ok(&out);
    assert_eq!(text(&out.stderr), "");
    assert_eq!(fs::read_to_string(&kh).expect("known_hosts"), learnt, "nothing more added");

    // HashKnownHosts=yes writes a hashed line that ssh itself accepts.
    let hashed = setup.path("known_hosts_hashed");
    let hashed_option = format!("UserKnownHostsFile={}", hashed.display());
    let out = exec_with(
        setup.rscp_key(&[
            "-o",
            &hashed_option,
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "HashKnownHosts=yes",
        ]),
        &[file.as_os_str(), OsStr::new(&setup.remote("hashed.txt"))],
    );
    setup.assert_ok(&out);
    let line = fs::read_to_string(&hashed).expect("known_hosts written");
    assert!(line.starts_with("|1|") && !line.contains("127.0.0.1"), "{line}");
    let (code, ssh) = ssh_stderr(&setup.sshd, &["-o", &hashed_option], "root", Some(&setup.key.private));
    assert_eq!(code, Some(0), "ssh refused rscp's hashed line: {ssh}");
}

#[test]
fn known_hosts_entries() {
    let options = SshdOptions { host_key_types: vec![KeyType::Ed25519], ..SshdOptions::default() };
    let Some(setup) = Setup::new(options) else { return };
    let port = setup.sshd.port;
    let file = small_file(&setup, "f.txt", b"entries\n");
    let host_line = setup.sshd.known_hosts_lines().remove(0);
    let copy_with = |name: &str, contents: &str| {
        let kh = setup.path(name);
        fs::write(&kh, contents).expect("write known_hosts");
        let option = format!("UserKnownHostsFile={}", kh.display());
        let out = exec_with(
            setup.rscp_key(&["-o", &option]),
            &[file.as_os_str(), OsStr::new(&setup.remote(&format!("{name}.txt")))],
        );
        let (code, ssh) = ssh_stderr(&setup.sshd, &["-o", &option], "root", Some(&setup.key.private));
        (out, code, ssh, setup.path(&format!("{name}.txt")))
    };

    // A plain [127.0.0.1]:PORT line, among others.
    let other = keygen(&setup.path("keys"), "other_host", KeyType::Ed25519, "");
    let contents = format!("# comment\n\nexample.com {}\n{host_line}\n", other.public_key());
    let (out, _, _, copied) = copy_with("kh_plain", &contents);
    setup.assert_ok(&out);
    assert!(copied.exists());

    // The same, hashed by ssh-keygen -H.
    let kh = setup.path("kh_hashed");
    fs::write(&kh, format!("{host_line}\n")).expect("write");
    let keygen_out = output_timeout(Command::new("ssh-keygen").arg("-H").arg("-f").arg(&kh), RUN_TIMEOUT);
    assert!(keygen_out.status.success(), "{}", text(&keygen_out.stderr));
    let hashed = fs::read_to_string(&kh).expect("read");
    assert!(hashed.starts_with("|1|") && !hashed.contains("127.0.0.1"), "{hashed}");
    let (out, _, _, copied) = copy_with("kh_hashed", &hashed);
    setup.assert_ok(&out);
    assert!(copied.exists());

    // A pattern: [127.0.0.?]:PORT.
    let pattern = host_line.replace("[127.0.0.1]", "[127.0.0.?]");
    let (out, _, _, copied) = copy_with("kh_pattern", &format!("{pattern}\n"));
    setup.assert_ok(&out);
    assert!(copied.exists());

    // The plain name without the port: for a port other than 22, ssh looks
    // the host up as `[127.0.0.1]:PORT` and then as `127.0.0.1`.
    let no_port = host_line.replace(&format!("[127.0.0.1]:{port}"), "127.0.0.1");
    let (out, code, _, copied) = copy_with("kh_noport", &format!("{no_port}\n"));
    assert_eq!(code, Some(0), "ssh accepts it");
    setup.assert_ok(&out);
    assert!(copied.exists());
    // ... but there only a matching key counts: another one is not a changed
    // key, the host is unknown.
    let no_port_other = format!("127.0.0.1 {}\n", other.public_key());
    let (out, code, ssh, copied) = copy_with("kh_noport_other", &no_port_other);
    assert_eq!(code, Some(255));
    assert_fails_with(&out, "No ED25519 host key is known for");
    assert_eq!(
        text(&out.stderr),
        format!("{ssh}lost connection\n"),
        "rscp vs scp -O: ssh's text, then scp's"
    );
    assert!(!copied.exists());

    // A changed key: OpenSSH's warning box, word for word, and nothing copied.
    let changed = format!("[127.0.0.1]:{port} {}\n", other.public_key());
    let (out, code, ssh, copied) = copy_with("kh_changed", &changed);
    assert_eq!(code, Some(255));
    assert_fails_with(&out, "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @");
    assert!(text(&out.stderr).contains("Host key verification failed."));
    assert!(
        text(&out.stderr)
            .contains(&format!("Offending ED25519 key in {}:1", setup.path("kh_changed").display()))
    );
    assert_eq!(
        text(&out.stderr),
        format!("{ssh}lost connection\n"),
        "rscp vs ssh, then scp's lost connection"
    );
    assert!(!copied.exists());

    // A revoked key, even when also listed as good.
    let revoked =
        format!("@revoked [127.0.0.1]:{port} {}\n{host_line}\n", setup.sshd.host_keys[0].public_key());
    let (out, code, ssh, copied) = copy_with("kh_revoked", &revoked);
    assert_eq!(code, Some(255));
    assert_fails_with(&out, "REVOKED HOST KEY DETECTED");
    assert_eq!(
        text(&out.stderr),
        format!("{ssh}lost connection\n"),
        "rscp vs ssh, then scp's lost connection"
    );
    assert!(!copied.exists());
}

#[test]
fn known_hosts_host_certificate() {
    let options = SshdOptions { host_certificate: true, ..SshdOptions::default() };
    let Some(setup) = Setup::new(options) else { return };
    let file = small_file(&setup, "f.txt", b"cert host\n");
    let ca_line = setup.sshd.cert_authority_line().expect("host CA");
    let kh = setup.path("kh_ca");
    fs::write(&kh, format!("{ca_line}\n")).expect("write");
    let option = format!("UserKnownHostsFile={}", kh.display());
    let out =
        exec_with(setup.rscp_key(&["-o", &option]), &[file.as_os_str(), OsStr::new(&setup.remote("ca.txt"))]);
    setup.assert_ok(&out);
    assert_eq!(text(&out.stderr), "");
    assert!(setup.path("ca.txt").exists());

    // A CA trusted for another host only: not accepted.
    let elsewhere = ca_line.replace(&format!("[127.0.0.1]:{}", setup.sshd.port), "other.example");
    let kh = setup.path("kh_ca_other");
    fs::write(&kh, format!("{elsewhere}\n")).expect("write");
    let option = format!("UserKnownHostsFile={}", kh.display());
    let out = exec_with(
        setup.rscp_key(&["-o", &option]),
        &[file.as_os_str(), OsStr::new(&setup.remote("other.txt"))],
    );
    assert_fails_with(&out, "Host key verification failed.");
    assert!(!setup.path("other.txt").exists());

    // A revoked CA.
    let kh = setup.path("kh_ca_revoked");
    let ca_key = setup.sshd.host_ca.as_ref().expect("CA").public_key();
    fs::write(&kh, format!("@revoked * {ca_key}\n{ca_line}\n")).expect("write");
    let option = format!("UserKnownHostsFile={}", kh.display());
    let out = exec_with(
        setup.rscp_key(&["-o", &option]),
        &[file.as_os_str(), OsStr::new(&setup.remote("revoked.txt"))],
    );
    assert_fails_with(&out, "Host key verification failed.");
    assert!(!setup.path("revoked.txt").exists());
}

// ---------------------------------------------------------------------------
// ssh_config, proxies, options.

#[test]
fn ssh_config_file() {
    let Some(setup) = Setup::new(SshdOptions::default()) else { return };
    let file = small_file(&setup, "f.txt", b"configured\n");
    let config = setup.path("config");
    let dead = closed_port();
    let text_of_config = format!(
        "Host myalias\n  HostName 127.0.0.1\n  Port {}\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n  IdentityAgent none\n\nHost deadport\n  HostName 127.0.0.1\n  Port {dead}\n  User root\n  IdentityFile {}\n  UserKnownHostsFile {}\n  BatchMode yes\n  IdentityAgent none\n",
        setup.sshd.port,
        setup.key.private.display(),
        setup.sshd.known_hosts_path().display(),
        setup.key.private.display(),
        setup.sshd.known_hosts_path().display(),
    );
    fs::write(&config, text_of_config).expect("write config");
    let with_config = |first: &[&str]| {
        let mut cmd = rscp(setup.dir.path());
        clean_env(&mut cmd);
        cmd.args(first).arg("-F").arg(&config);
        cmd
    };

    let target = format!("myalias:{}", setup.path("alias.txt").display());
    let out = exec_with(with_config(&[]), &[file.as_os_str(), OsStr::new(&target)]);
    setup.assert_ok(&out);
    assert_eq!(fs::read(setup.path("alias.txt")).expect("copy"), b"configured\n");
    let back = setup.path("alias-back.txt");
    let out = exec_with(with_config(&[]), &[OsStr::new(&target), back.as_os_str()]);
    setup.assert_ok(&out);
    assert_eq!(fs::read(&back).expect("download"), b"configured\n");
    let alias = |rel: &str| format!("myalias:{}", setup.path(rel).display());
    round_trip_via(&setup, &|| with_config(&[]), "alias", &alias, &|rel| setup.path(rel));

    // The file's port is closed; -o Port= on the command line wins, -P does not.
    let target = format!("deadport:{}", setup.path("port.txt").display());
    let port_option = format!("Port={}", setup.sshd.port);
    let out = exec_with(with_config(&["-o", &port_option]), &[file.as_os_str(), OsStr::new(&target)]);
    setup.assert_ok(&out);
    assert!(setup.path("port.txt").exists());
    let out = exec_with(with_config(&[]), &[file.as_os_str(), OsStr::new(&target)]);
    assert_fails_with(&out, &format!("ssh: connect to host 127.0.0.1 port {dead}: Connection refused"));

    // A bad option in the file: ssh's error, exit 1, no connection.
    let bad = setup.path("bad_config");
    fs::write(
        &bad,
        format!("Host myalias\n  HostName 127.0.0.1\n  Frobnicate yes\n  Port {}\n", setup.sshd.port),
    )
    .expect("write");
    let mut cmd = rscp(setup.dir.path());
    clean_env(&mut cmd);
    cmd.arg("-F").arg(&bad);
    let target = format!("myalias:{}", setup.path("bad.txt").display());
    let out = exec_with(cmd, &[file.as_os_str(), OsStr::new(&target)]);
    let ssh = output_timeout(Command::new("ssh").arg("-G").arg("-F").arg(&bad).arg("myalias"), RUN_TIMEOUT);
    let ssh_err = text(&ssh.stderr);
    assert!(ssh_err.contains("line 3: Bad configuration option: frobnicate"), "{ssh_err}");
    assert_fails_with(&out, &format!("{}: line 3: Bad configuration option: frobnicate", bad.display()));
    assert_eq!(
        text(&out.stderr),
        format!("{ssh_err}lost connection\n"),
        "rscp vs scp -O: ssh's text, then scp's"
    );
    assert!(!setup.path("bad.txt").exists());
}

#[test]
fn proxy_jump_and_proxy_command() {
    let Some(setup) = Setup::new(SshdOptions::default()) else { return };
    let target = Sshd::start(SshdOptions {
        authorized_keys: vec![setup.key.public_line.clone()],
        ..SshdOptions::default()
    });
    // Both servers' keys in one known_hosts; hops get no -o options (as with
    // ssh), so everything comes from a config file.
    let kh = setup.path("known_hosts");
    let lines = [setup.sshd.known_hosts_lines(), target.known_hosts_lines()].concat();
    fs::write(&kh, lines.join("\n") + "\n").expect("write");
    let config = setup.path("config");
    fs::write(
        &config,
        format!(
            "Host *\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n  IdentityAgent none\n",
            setup.key.private.display(),
            kh.display()
        ),
    )
    .expect("write");
    let file = small_file(&setup, "f.txt", b"jumped\n");
    let client = |first: &[&str]| {
        let mut cmd = rscp(setup.dir.path());
        clean_env(&mut cmd);
        cmd.args(first).arg("-F").arg(&config).args(["-P", &target.port.to_string()]);
        cmd
    };

    let jump = format!("root@127.0.0.1:{}", setup.sshd.port);
    let out = exec_with(client(&["-J", &jump]), &[file.as_os_str(), OsStr::new(&setup.remote("jump.txt"))]);
    setup.assert_ok(&out);
    assert_eq!(fs::read(setup.path("jump.txt")).expect("copy"), b"jumped\n");
    setup.assert_logged(&format!("target 127.0.0.1 port {}", target.port));
    assert!(target.wait_for_log("Accepted publickey for root", LOG_TIMEOUT), "{}", target.log());
    round_trip(&setup, &|| client(&["-J", &jump]), "jump");
    // Downloads too, through two hops.
    let two = format!("{jump},{jump}");
    let back = setup.path("jump-back.txt");
    let out = exec_with(client(&["-J", &two]), &[OsStr::new(&setup.remote("jump.txt")), back.as_os_str()]);
    setup.assert_ok(&out);
    assert_eq!(fs::read(&back).expect("download"), b"jumped\n");

    // A jump host that refuses: its error, exit 1.
    let refused = format!("root@127.0.0.1:{}", closed_port());
    let out =
        exec_with(client(&["-J", &refused]), &[file.as_os_str(), OsStr::new(&setup.remote("never.txt"))]);
    assert_fails_with(
        &out,
        &format!("ssh: connect to host 127.0.0.1 port {}: Connection refused", &refused[15..]),
    );
    assert!(!setup.path("never.txt").exists());

    // ProxyCommand: the real ssh -W through the first server.
    let proxy = format!("ProxyCommand=ssh -F {} -p {} -W %h:%p 127.0.0.1", config.display(), setup.sshd.port);
    let out = exec_with(client(&["-o", &proxy]), &[file.as_os_str(), OsStr::new(&setup.remote("proxy.txt"))]);
    setup.assert_ok(&out);
    assert_eq!(fs::read(setup.path("proxy.txt")).expect("copy"), b"jumped\n");
    assert!(target.wait_for_log("Accepted publickey for root", LOG_TIMEOUT));
    round_trip(&setup, &|| client(&["-o", &proxy]), "proxy-command");
    // A ProxyCommand that exits at once: a failure, not a hang.
    let out = exec_with(
        client(&["-o", "ProxyCommand=exit 3"]),
        &[file.as_os_str(), OsStr::new(&setup.remote("dead.txt"))],
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr_text());
    assert!(
        out.stderr_text()
            .contains("kex_exchange_identification: Connection closed by remote host\nlost connection\n"),
        "ssh's words, then scp's: {}",
        out.stderr_text()
    );
    assert!(!setup.path("dead.txt").exists());
}

#[test]
fn connection_and_option_errors() {
    let Some(setup) = Setup::new(SshdOptions::default()) else { return };
    let file = small_file(&setup, "f.txt", b"errors\n");

    // Connection refused.
    let dead = closed_port();
    let mut cmd = rscp(setup.dir.path());
    clean_env(&mut cmd);
    cmd.args(["-F", "/dev/null", "-P", &dead.to_string(), "-o", "BatchMode=yes"]);
    let out = exec_with(cmd, &[file.as_os_str(), OsStr::new("127.0.0.1:/tmp/never")]);
    assert_fails_with(&out, &format!("ssh: connect to host 127.0.0.1 port {dead}: Connection refused"));

    // An unknown -o option.
    let out = exec_with(
        setup.rscp_key(&["-o", "Frobnicate=yes"]),
        &[file.as_os_str(), OsStr::new(&setup.remote("x.txt"))],
    );
    let ssh = output_timeout(
        Command::new("ssh").args(["-G", "-F", "/dev/null", "-o", "Frobnicate=yes", "h"]),
        RUN_TIMEOUT,
    );
    assert_fails_with(&out, "command-line: line 0: Bad configuration option: frobnicate");
    assert_eq!(
        text(&out.stderr),
        format!("{}lost connection\n", text(&ssh.stderr)),
        "rscp vs scp -O: ssh's text, then scp's"
    );
    assert!(!setup.path("x.txt").exists());

    // A cipher that does not exist.
    let out = exec_with(
        setup.rscp_key(&["-c", "rot13"]),
        &[file.as_os_str(), OsStr::new(&setup.remote("rot.txt"))],
    );
    assert_fails_with(&out, "rot13");
    assert!(!setup.path("rot.txt").exists());

    // A real one: the server logs it.
    let out = exec_with(
        setup.rscp_key(&["-c", "aes128-ctr"]),
        &[file.as_os_str(), OsStr::new(&setup.remote("ctr.txt"))],
    );
    setup.assert_ok(&out);
    assert_eq!(fs::read(setup.path("ctr.txt")).expect("copy"), b"errors\n");
    setup.assert_logged("kex: client->server cipher: aes128-ctr");
    setup.assert_logged("kex: server->client cipher: aes128-ctr");

    // A remote path that does not exist: the remote scp's message, exit 1.
    let out = exec_with(
        setup.rscp_key(&[]),
        &[OsStr::new(&setup.remote("missing.txt")), setup.path("got.txt").as_os_str()],
    );
    assert_fails_with(
        &out,
        &format!("scp: {}: No such file or directory", setup.path("missing.txt").display()),
    );
    assert!(!setup.path("got.txt").exists());
}

// ---------------------------------------------------------------------------
// Names, globs, hostile servers.

#[test]
fn hostile_names_are_not_interpreted_by_the_remote_shell() {
    if !require_openssh() {
        return;
    }
    // The remote shell has $RSCP_MARK: a marker path any injected command
    // would create (sshd's SetEnv).
    let markers = tempdir();
    let mark = markers.path().join("m");
    let options = SshdOptions {
        extra_config: vec![format!("SetEnv RSCP_MARK={}", mark.display())],
        ..SshdOptions::default()
    };
    let Some(setup) = Setup::new(options) else { return };
    let nasty = "sp ace 'sq' \"dq\" $HOME $(touch \"$RSCP_MARK\"1) `touch \"$RSCP_MARK\"2` ;touch \"$RSCP_MARK\"3; |touch \"$RSCP_MARK\"4 & \\x *?[a] {b,c}.txt";
    let nl = "new\nline;touch \"$RSCP_MARK\"5\n.txt";
    let remote_dir = setup.path("dir $(touch \"$RSCP_MARK\"6) ;`x`");
    fs::create_dir(&remote_dir).expect("mkdir");
    let local = setup.path("local");
    fs::create_dir(&local).expect("mkdir");
    write_file(&local.join(nasty), b"nasty\n", 0o644);
    let remote = |name: &str| format!("127.0.0.1:{}/{name}", remote_dir.display());

    // Upload: into the directory (the name travels in the protocol) and to an
    // explicit name (it is in the remote command line).
    let out = exec_with(
        setup.rscp_key(&[]),
        &[local.join(nasty).into_os_string(), format!("127.0.0.1:{}", remote_dir.display()).into()],
    );
    setup.assert_ok(&out);
    assert_eq!(fs::read(remote_dir.join(nasty)).expect("uploaded"), b"nasty\n");
    let out = exec_with(setup.rscp_key(&[]), &[local.join(nasty).into_os_string(), remote(nl).into()]);
    setup.assert_ok(&out);
    assert_eq!(fs::read(remote_dir.join(nl)).expect("uploaded"), b"nasty\n");

    // Download the same names. (Glob characters in the request are globs, so
    // the nasty name is asked for with them escaped.)
    let escaped: String =
        nasty.chars().flat_map(|c| if "*?[]\\{}".contains(c) { vec!['\\', c] } else { vec![c] }).collect();
    let got = setup.path("got");
    fs::create_dir(&got).expect("mkdir");
    let out = exec_with(setup.rscp_key(&[]), &[remote(&escaped).into(), got.clone().into_os_string()]);
    setup.assert_ok(&out);
    assert_eq!(fs::read(got.join(nasty)).expect("downloaded"), b"nasty\n");
    // OpenSSH's scp -f sends a name with a newline encoded (strnvis: `\^J`),
    // so it no longer matches the request: refused (as OpenSSH's scp would),
    // taken with -T.
    let out = exec_with(setup.rscp_key(&[]), &[remote(nl).into(), got.join("nl.txt").into_os_string()]);
    assert_fails_with(&out, "protocol error: filename does not match request");
    assert!(!got.join("nl.txt").exists());
    let out = exec_with(setup.rscp_key(&["-T"]), &[remote(nl).into(), got.join("nl.txt").into_os_string()]);
    setup.assert_ok(&out);
    assert_eq!(fs::read(got.join("nl.txt")).expect("downloaded"), b"nasty\n");

    let left: Vec<_> =
        fs::read_dir(markers.path()).expect("ls").map(|e| e.expect("entry").file_name()).collect();
    assert!(left.is_empty(), "the remote shell ran injected commands: {left:?}");

    // The check can fail: OpenSSH's scp -O pastes the path into the remote
    // command line (CVE-2020-15778), and a $(touch …) in it runs.
    let mut scp = Command::new("scp");
    clean_env(&mut scp);
    scp.args(["-O", "-F", "/dev/null", "-P", &setup.sshd.port.to_string()])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", setup.sshd.known_hosts_path().display()))
        .args(DEFAULT_OPTIONS)
        .arg("-i")
        .arg(&setup.key.private)
        .arg(format!("127.0.0.1:{}/x$(touch \"$RSCP_MARK\"7)", setup.dir.path().display()))
        .arg(setup.path("got/openssh.txt"));
    output_timeout(&mut scp, RUN_TIMEOUT);
    assert!(markers.path().join("m7").exists(), "the marker check cannot see an injection");
}

#[test]
fn glob_download_fetches_exactly_the_matches() {
    let Some(setup) = Setup::new(SshdOptions::default()) else { return };
    let remote_dir = setup.path("remote");
    fs::create_dir_all(remote_dir.join("sub.txt")).expect("mkdir");
    for (name, contents) in
        [("a.txt", "a"), ("b c.txt", "bc"), ("c.log", "c"), ("d.txt.bak", "d"), ("sub.txt/e.txt", "e")]
    {
        write_file(&remote_dir.join(name), contents.as_bytes(), 0o644);
    }
    let got = setup.path("got");
    fs::create_dir(&got).expect("mkdir");
    let out = exec_with(
        setup.rscp_key(&[]),
        &[OsStr::new(&format!("{}/*.txt", setup.remote("remote"))), got.as_os_str()],
    );
    // The directory sub.txt matches too: without -r, scp -f reports it and goes on.
    assert_eq!(out.code, Some(1), "{}", out.stderr_text());
    assert!(text(&out.stderr).contains("sub.txt: not a regular file"), "{}", out.stderr_text());
    let mut names: Vec<String> = fs::read_dir(&got)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["a.txt", "b c.txt"]);
    assert_eq!(fs::read(got.join("b c.txt")).expect("read"), b"bc");

    // With a brace expression, expanded locally, and -r.
    let got = setup.path("got2");
    fs::create_dir(&got).expect("mkdir");
    let out = exec_with(
        setup.rscp_key(&["-r"]),
        &[OsStr::new(&format!("{}/{{a,sub}}.txt", setup.remote("remote"))), got.as_os_str()],
    );
    setup.assert_ok(&out);
    let mut names: Vec<String> = fs::read_dir(&got)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["a.txt", "sub.txt"]);
    assert!(got.join("sub.txt/e.txt").exists());
}

#[test]
fn server_sending_another_name_is_refused() {
    if !require_openssh() {
        return;
    }
    let scripts = client_dir();
    let fake = scripts.path().join("fake-scp.sh");
    // Ignores the request; waits for the sink's first \0, sends evil.txt,
    // then reads the two acknowledgements (or the refusal).
    write_file(
        &fake,
        b"#!/bin/sh\nhead -c1 >/dev/null\nprintf 'C0644 3 evil.txt\\nabc\\000'\nhead -c2 >/dev/null\n",
        0o755,
    );
    let options = SshdOptions {
        extra_config: vec![format!("ForceCommand {}", fake.display())],
        ..SshdOptions::default()
    };
    let Some(setup) = Setup::new(options) else { return };
    let got = setup.path("got");
    fs::create_dir(&got).expect("mkdir");

    let out = exec_with(setup.rscp_key(&[]), &[OsStr::new(&setup.remote("good.txt")), got.as_os_str()]);
    assert_fails_with(&out, "protocol error: filename does not match request");
    assert!(!got.join("evil.txt").exists());
    assert_eq!(fs::read_dir(&got).expect("ls").count(), 0, "something was written");

    // -T: the name check is off, the file is taken.
    let out = exec_with(setup.rscp_key(&["-T"]), &[OsStr::new(&setup.remote("good.txt")), got.as_os_str()]);
    setup.assert_ok(&out);
    assert_eq!(fs::read(got.join("evil.txt")).expect("evil.txt"), b"abc");
}

/// The default policy, `ask`: OpenSSH's question with the fingerprint (through
/// `SSH_ASKPASS`, as with ssh when there is no terminal); `yes` adds the key,
/// `no` refuses, and the next run does not ask again.
#[test]
fn known_hosts_ask_policy() {
    let Some(setup) = Setup::new(SshdOptions::default()) else { return };
    let port = setup.sshd.port;
    let file = small_file(&setup, "f.txt", b"asked\n");
    let kh = setup.path("known_hosts_ask");
    let kh_option = format!("UserKnownHostsFile={}", kh.display());
    let ask = |answer: &str, log: &str| {
        let script =
            logging_askpass(setup.dir.path(), &format!("askpass-{answer}"), answer, &setup.path(log));
        let mut cmd =
            setup.rscp_key(&["-o", &kh_option, "-o", "StrictHostKeyChecking=ask", "-o", "BatchMode=no"]);
        with_askpass(&mut cmd, &script);
        cmd
    };

    let out = exec_with(ask("no", "no.log"), &[file.as_os_str(), OsStr::new(&setup.remote("no.txt"))]);
    assert_fails_with(&out, "Host key verification failed.");
    assert!(!setup.path("no.txt").exists() && !kh.exists());
    let question = fs::read_to_string(setup.path("no.log")).expect("askpass ran");
    let fp = setup.sshd.host_keys[0].public_line.clone();
    assert!(
        question.starts_with(&format!(
            "The authenticity of host '[127.0.0.1]:{port} ([127.0.0.1]:{port})' can't be established.\nED25519 key fingerprint is SHA256:"
        )),
        "{question:?} ({fp})"
    );
    assert!(question.contains("Are you sure you want to continue connecting (yes/no/[fingerprint])? "));

    let out = exec_with(ask("yes", "yes.log"), &[file.as_os_str(), OsStr::new(&setup.remote("yes.txt"))]);
    setup.assert_ok(&out);
    assert!(text(&out.stderr).contains(&format!(
        "Warning: Permanently added '[127.0.0.1]:{port}' (ED25519) to the list of known hosts."
    )));
    assert_eq!(fs::read(setup.path("yes.txt")).expect("copy"), b"asked\n");
    assert_eq!(fs::read_to_string(&kh).expect("learned").lines().count(), 1);

    // Known now: no question (askpass would answer "no").
    let out = exec_with(ask("no", "again.log"), &[file.as_os_str(), OsStr::new(&setup.remote("again.txt"))]);
    setup.assert_ok(&out);
    assert!(!setup.path("again.log").exists(), "asked again");
}

/// `-A`: the remote command sees our agent (the server's agent channel is
/// relayed to it); without `-A` it does not.
#[test]
fn agent_forwarding_with_dash_a() {
    if !require_openssh() {
        return;
    }
    let dir = client_dir();
    let key = keygen(&dir.path().join("keys"), "id_fwd", KeyType::Ed25519, "");
    // The forced command records what `ssh-add -l` sees, then runs the copy.
    let seen = dir.path().join("agent-seen");
    let force = dir.path().join("force.sh");
    fs::write(
        &force,
        format!("#!/bin/sh\nssh-add -l > '{}' 2>&1\nexec sh -c \"$SSH_ORIGINAL_COMMAND\"\n", seen.display()),
    )
    .expect("write");
    fs::set_permissions(&force, fs::Permissions::from_mode(0o755)).expect("chmod");
    let sshd = Sshd::start(SshdOptions {
        authorized_keys: vec![key.public_line.clone()],
        extra_config: vec![format!("ForceCommand {}", force.display()), "AllowAgentForwarding yes".into()],
        ..SshdOptions::default()
    });
    let setup = Setup { dir, key, sshd };
    let agent = Agent::start();
    agent.add(&setup.key);
    let file = small_file(&setup, "f.txt", b"forwarded\n");
    let with_agent = |first: &[&str]| {
        let mut cmd = setup.rscp(first);
        cmd.env("SSH_AUTH_SOCK", &agent.socket);
        cmd
    };

    let out = exec_with(
        with_agent(&["-A", "-o", "IdentityAgent=SSH_AUTH_SOCK"]),
        &[file.as_os_str(), OsStr::new(&setup.remote("a.txt"))],
    );
    setup.assert_ok(&out);
    let listed = fs::read_to_string(&seen).expect("forced command ran");
    assert!(listed.contains(&fingerprint(&setup.key)), "the remote side saw: {listed:?}");

    let out = exec_with(
        with_agent(&["-o", "IdentityAgent=SSH_AUTH_SOCK"]),
        &[file.as_os_str(), OsStr::new(&setup.remote("b.txt"))],
    );
    setup.assert_ok(&out);
    let listed = fs::read_to_string(&seen).expect("forced command ran");
    assert!(listed.contains("Could not open a connection to your authentication agent"), "{listed:?}");
}
