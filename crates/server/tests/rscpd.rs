//! rscpd against real clients: OpenSSH scp (both protocols), sftp and ssh, PuTTY
//! pscp (SCP and SFTP), and rscp. Every server runs on 127.0.0.1, port 0, with a
//! throwaway host key that the clients verify (StrictHostKeyChecking yes).

#[path = "rscpd/faults.rs"]
mod faults;
#[path = "rscpd/load.rs"]
mod load;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub(crate) use rscp_testkit::pseudo_random;
use rscp_testkit::{KeyPair, KeyType, Rscpd, RscpdOptions, keygen, output_timeout, require};

const RSCPD: &str = env!("CARGO_BIN_EXE_rscpd");
const RUN: Duration = Duration::from_secs(120);
const USER: &str = "tester";

/// The rscp client, built beside rscpd by `cargo test --workspace`.
fn rscp_binary() -> PathBuf {
    let path = Path::new(RSCPD).with_file_name("rscp");
    assert!(path.exists(), "{} is missing: build it first (cargo build --bin rscp)", path.display());
    path
}

/// A served root, a client-side directory, a key the server trusts, and the
/// ssh_config every OpenSSH client (and rscp) uses to reach the server.
struct Fixture {
    dir: tempfile::TempDir,
    key: KeyPair,
    server: Rscpd,
    config: PathBuf,
}

impl Fixture {
    fn new() -> Option<Fixture> {
        Fixture::with(|_, _| {})
    }

    /// `setup` may adjust the options and write files in the test directory first.
    fn with(setup: impl FnOnce(&mut RscpdOptions, &Path)) -> Option<Fixture> {
        if !["ssh", "scp", "sftp", "ssh-keygen"].iter().all(|p| require(p)) {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["root", "local", "outside", "state"] {
            fs::create_dir(dir.path().join(sub)).expect("mkdir");
        }
        fs::write(dir.path().join("outside/secret"), "secret outside the root\n").expect("write");
        let key = keygen(dir.path(), "client", KeyType::Ed25519, "");
        let keys = dir.path().join("authorized_keys");
        fs::write(&keys, format!("{}\n", key.public_line)).expect("write");
        let mut options = RscpdOptions { authorized_keys: Some(keys), ..RscpdOptions::default() };
        setup(&mut options, dir.path());
        let server =
            Rscpd::start(Path::new(RSCPD), &dir.path().join("root"), &dir.path().join("state"), &options);
        let host_public =
            output_timeout(Command::new("ssh-keygen").arg("-y").arg("-f").arg(&server.host_key), RUN);
        assert!(
            host_public.status.success(),
            "ssh-keygen -y: {}",
            String::from_utf8_lossy(&host_public.stderr)
        );
        let known_hosts = dir.path().join("known_hosts");
        fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{} {}", server.port, String::from_utf8_lossy(&host_public.stdout)),
        )
        .expect("write");
        let config = dir.path().join("ssh_config");
        fs::write(
            &config,
            format!(
                "Host rscpd\n  HostName 127.0.0.1\n  Port {port}\n  User {USER}\n  IdentityFile {key}\n  \
                 IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n  \
                 StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 20\n  LogLevel ERROR\n",
                port = server.port,
                key = key.private.display(),
                kh = known_hosts.display(),
            ),
        )
        .expect("write");
        Some(Fixture { dir, key, server, config })
    }

    /// An ssh_config like the fixture's, but logging in with `key` only.
    fn config_with_key(&self, key: &Path) -> String {
        let text = fs::read_to_string(&self.config).expect("read config");
        let ours = format!("IdentityFile {}", self.key.private.display());
        let text = text.replace(&ours, &format!("IdentityFile {}", key.display()));
        let name = key.file_name().expect("name").to_string_lossy().into_owned();
        let path = self.dir.path().join(format!("ssh_config-{name}"));
        fs::write(&path, text).expect("write");
        path.to_str().expect("utf-8").to_string()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn root(&self) -> PathBuf {
        self.path("root")
    }

    fn local(&self) -> PathBuf {
        self.path("local")
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut command = Command::new(program);
        command.current_dir(self.local()).args(args).env_remove("SSH_AUTH_SOCK");
        output_timeout(&mut command, RUN)
    }

    fn scp(&self, args: &[&str]) -> Output {
        let mut all = vec!["-F", self.config.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        self.run("scp", &all)
    }

    fn rscp(&self, args: &[&str]) -> Output {
        let mut all = vec!["-F", self.config.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        self.run(rscp_binary().to_str().expect("utf-8"), &all)
    }

    fn ssh(&self, args: &[&str]) -> Output {
        let mut all = vec!["-F", self.config.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        self.run("ssh", &all)
    }

    /// `sftp -b BATCH rscpd`: stops at the first failing command (unless `-`-prefixed).
    fn sftp(&self, batch: &str) -> Output {
        let file = self.path("batch");
        fs::write(&file, batch).expect("write");
        self.run(
            "sftp",
            &["-F", self.config.to_str().expect("utf-8"), "-b", file.to_str().expect("utf-8"), "rscpd"],
        )
    }

    /// Asserts that nothing outside the root changed.
    #[track_caller]
    fn assert_outside_untouched(&self) {
        let names: Vec<_> = fs::read_dir(self.path("outside"))
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["secret"], "something appeared outside the root");
        assert_eq!(
            fs::read_to_string(self.path("outside/secret")).expect("read"),
            "secret outside the root\n"
        );
        assert!(!self.local().join("secret").exists(), "the secret was copied out");
    }
}

#[track_caller]
fn assert_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[track_caller]
fn assert_fails(output: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{what} succeeded\nstderr:\n{stderr}");
    stderr
}

const MTIME: i64 = 1_600_000_000;

/// A tree with the cases that break copiers: empty and one-byte files, a large
/// file, spaces and UTF-8 in names, a leading dash, nested and empty directories,
/// and distinct modes and times for `-p`.
fn make_tree(at: &Path, large: usize) {
    fs::create_dir_all(at.join("sub dir/deeper")).expect("mkdir");
    fs::create_dir_all(at.join("empty dir")).expect("mkdir");
    let files: &[(&str, Vec<u8>, u32)] = &[
        ("empty", Vec::new(), 0o644),
        ("one", b"1".to_vec(), 0o600),
        ("large.bin", pseudo_random(large, 7), 0o640),
        ("sub dir/na\u{ef}ve \u{1f600}.txt", b"utf-8 name\n".to_vec(), 0o644),
        ("sub dir/-dash", b"leading dash\n".to_vec(), 0o755),
        ("sub dir/deeper/x", pseudo_random(70_000, 3), 0o644),
    ];
    for (name, data, mode) in files {
        let path = at.join(name);
        fs::write(&path, data).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).expect("chmod");
    }
    for entry in ["empty", "one", "large.bin", "sub dir/deeper/x", "sub dir/deeper", "sub dir", "empty dir"] {
        let time = filetime::FileTime::from_unix_time(MTIME, 0);
        filetime::set_file_times(at.join(entry), time, time).expect("utimes");
    }
}

/// Relative path -> (kind, mode, mtime, contents) of everything under `root`.
fn tree(root: &Path) -> BTreeMap<PathBuf, (char, u32, i64, Vec<u8>)> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, (char, u32, i64, Vec<u8>)>) {
        for entry in fs::read_dir(root.join(rel)).expect("read_dir") {
            let rel = rel.join(entry.expect("entry").file_name());
            let meta = fs::symlink_metadata(root.join(&rel)).expect("lstat");
            let mode = meta.mode() & 0o7777;
            if meta.is_dir() {
                out.insert(rel.clone(), ('d', mode, meta.mtime(), Vec::new()));
                walk(root, &rel, out);
            } else {
                out.insert(rel.clone(), ('f', mode, meta.mtime(), fs::read(root.join(&rel)).expect("read")));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

/// Same entries and contents; with `preserved`, same modes and mtimes too.
#[track_caller]
fn assert_same_tree(a: &Path, b: &Path, preserved: bool) {
    assert_same_tree_with(a, b, preserved, preserved);
}

/// [`assert_same_tree`], with directory times checked only if `dir_times` (PuTTY's
/// pscp sends none).
#[track_caller]
fn assert_same_tree_with(a: &Path, b: &Path, preserved: bool, dir_times: bool) {
    let (left, right) = (tree(a), tree(b));
    assert_eq!(left.keys().collect::<Vec<_>>(), right.keys().collect::<Vec<_>>(), "entries differ");
    for (path, (kind, mode, mtime, data)) in &left {
        let (kind2, mode2, mtime2, data2) = &right[path];
        assert_eq!(kind, kind2, "kind of {}", path.display());
        assert!(data == data2, "contents of {} differ", path.display());
        if preserved {
            assert_eq!(mode, mode2, "mode of {}", path.display());
            if *kind == 'f' || dir_times {
                assert_eq!(mtime, mtime2, "mtime of {}", path.display());
            }
        }
    }
}

// ------------------------------------------------------------- real clients

#[test]
fn openssh_scp_legacy_protocol_up_and_down() {
    let Some(f) = Fixture::new() else { return };
    make_tree(&f.local().join("tree"), 5 << 20);
    assert_ok(&f.scp(&["-O", "-r", "-p", "tree", "rscpd:"]), "scp -O -rp upload");
    assert_same_tree(&f.local().join("tree"), &f.root().join("tree"), true);
    assert_ok(&f.scp(&["-O", "-r", "-p", "rscpd:tree", "down"]), "scp -O -rp download");
    assert_same_tree(&f.local().join("tree"), &f.local().join("down"), true);
    // Single files, to a named target and into a directory; absolute paths mean the root.
    // AES-GCM, the benchmark's cipher, is on offer (russh's server default lacks aes128-gcm).
    let upload = f.scp(&["-O", "-c", "aes128-gcm@openssh.com", "tree/one", "rscpd:/renamed"]);
    assert_ok(&upload, "scp -O -c aes128-gcm file upload");
    assert_eq!(fs::read(f.root().join("renamed")).expect("read"), b"1");
    assert_ok(&f.scp(&["-O", "rscpd:tree/empty", "rscpd:~/renamed", "."]), "scp -O two files down");
    assert_eq!(fs::read(f.local().join("empty")).expect("read").len(), 0);
    let log = f.server.wait_for_log("received large.bin (5242880 bytes)", Duration::from_secs(5));
    assert!(log.contains("received large.bin (5242880 bytes)"), "{log}");
    assert!(log.contains("sent renamed (1 bytes)"), "{log}");
    assert!(log.contains("accepted publickey ssh-ed25519 SHA256:"), "{log}");
    f.assert_outside_untouched();
}

#[test]
fn openssh_scp_sftp_protocol_up_and_down() {
    let Some(f) = Fixture::new() else { return };
    make_tree(&f.local().join("tree"), 5 << 20);
    assert_ok(&f.scp(&["-r", "-p", "tree", "rscpd:"]), "scp (sftp) -rp upload");
    assert_same_tree(&f.local().join("tree"), &f.root().join("tree"), true);
    assert_ok(&f.scp(&["-r", "-p", "rscpd:/tree", "down"]), "scp (sftp) -rp download");
    assert_same_tree(&f.local().join("tree"), &f.local().join("down"), true);
    assert_ok(&f.scp(&["tree/large.bin", "rscpd:big"]), "scp (sftp) file upload");
    assert_eq!(fs::read(f.root().join("big")).expect("read"), pseudo_random(5 << 20, 7));
    f.assert_outside_untouched();
}

#[test]
fn openssh_sftp_batch_session() {
    let Some(f) = Fixture::new() else { return };
    fs::write(f.local().join("a.txt"), "alpha\n").expect("write");
    fs::write(f.local().join("empty"), "").expect("write");
    let output = f.sftp(
        "mkdir incoming\ncd incoming\nput a.txt\nput empty\nrename a.txt b.txt\nls -l\nchmod 600 b.txt\n\
         get b.txt got.txt\nget empty got-empty\nrm empty\nlcd ..\npwd\n",
    );
    assert_ok(&output, "sftp batch");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("b.txt"), "ls shows the file:\n{stdout}");
    assert!(stdout.contains("Remote working directory: /incoming"), "{stdout}");
    assert_eq!(fs::read_to_string(f.local().join("got.txt")).expect("read"), "alpha\n");
    assert_eq!(fs::read(f.local().join("got-empty")).expect("read").len(), 0);
    assert_eq!(fs::read_to_string(f.root().join("incoming/b.txt")).expect("read"), "alpha\n");
    assert_eq!(fs::metadata(f.root().join("incoming/b.txt")).expect("stat").mode() & 0o777, 0o600);
    assert!(!f.root().join("incoming/empty").exists());
    f.assert_outside_untouched();
}

#[test]
fn rscp_client_up_and_down() {
    let Some(f) = Fixture::new() else { return };
    make_tree(&f.local().join("tree"), 3 << 20);
    assert_ok(&f.rscp(&["-r", "-p", "tree", "rscpd:up"]), "rscp -rp upload");
    assert_same_tree(&f.local().join("tree"), &f.root().join("up"), true);
    assert_ok(&f.rscp(&["-r", "-p", "rscpd:up", "down"]), "rscp -rp download");
    assert_same_tree(&f.local().join("tree"), &f.local().join("down"), true);
    assert_ok(&f.rscp(&["rscpd:up/*.bin", "."]), "rscp glob download");
    assert_eq!(fs::read(f.local().join("large.bin")).expect("read"), pseudo_random(3 << 20, 7));
    // SFTP mode: the same tree through rscpd's sftp subsystem, and a file to `~`.
    assert_ok(&f.rscp(&["-s", "-r", "-p", "tree", "rscpd:sftp-up"]), "rscp -s -rp upload");
    assert_same_tree(&f.local().join("tree"), &f.root().join("sftp-up"), true);
    assert_ok(&f.rscp(&["-s", "tree/large.bin", "rscpd:~/"]), "rscp -s file upload");
    assert_eq!(fs::read(f.root().join("large.bin")).expect("read"), pseudo_random(3 << 20, 7));
    assert_ok(&f.rscp(&["-s", "-r", "-p", "rscpd:sftp-up", "sftp-down"]), "rscp -s -rp download");
    assert_same_tree(&f.local().join("tree"), &f.local().join("sftp-down"), true);
    f.assert_outside_untouched();
}

/// PuTTY's pscp over both protocols, with a converted key and the host key pinned.
#[test]
fn putty_pscp_scp_and_sftp() {
    if !require("pscp") || !require("puttygen") {
        return;
    }
    let Some(f) = Fixture::new() else { return };
    let ppk = f.path("client.ppk");
    let converted = output_timeout(
        Command::new("puttygen").arg(&f.key.private).args(["-O", "private", "-o"]).arg(&ppk),
        RUN,
    );
    assert_ok(&converted, "puttygen");
    let fingerprint = f.server.host_key_line.split_whitespace().nth(3).expect("fingerprint").to_string();
    make_tree(&f.local().join("tree"), 2 << 20);
    let port = f.server.port.to_string();
    let pscp = |protocol: &str, args: &[&str]| {
        let mut all = vec![
            "-batch",
            "-q",
            protocol,
            "-P",
            &port,
            "-i",
            ppk.to_str().expect("utf-8"),
            "-hostkey",
            &fingerprint,
        ];
        all.extend_from_slice(args);
        f.run("pscp", &all)
    };
    for protocol in ["-scp", "-sftp"] {
        // Into an existing directory: pscp -sftp -r cannot create a missing target,
        // whatever the server (OpenSSH's sftp-server too).
        let dir = &protocol[1..];
        fs::create_dir(f.root().join(dir)).expect("mkdir");
        let remote = format!("{USER}@127.0.0.1:{dir}");
        assert_ok(&pscp(protocol, &["-r", "-p", "tree", &remote]), &format!("pscp {protocol} upload"));
        assert_same_tree_with(&f.local().join("tree"), &f.root().join(dir).join("tree"), true, false);
        let down = format!("down{protocol}");
        fs::create_dir(f.local().join(&down)).expect("mkdir");
        let tree = format!("{remote}/tree");
        assert_ok(&pscp(protocol, &["-r", "-p", &tree, &down]), &format!("pscp {protocol} download"));
        assert_same_tree_with(&f.local().join("tree"), &f.local().join(&down).join("tree"), true, false);
    }
    f.assert_outside_untouched();
}

#[test]
fn twenty_clients_at_once() {
    let Some(f) = Fixture::new() else { return };
    for i in 0..20 {
        fs::write(f.local().join(format!("file{i}")), pseudo_random(1 << 20, i)).expect("write");
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..20u64)
            .map(|i| {
                let f = &f;
                scope.spawn(move || {
                    let name = format!("file{i}");
                    let back = format!("back{i}");
                    let remote = format!("rscpd:{name}");
                    // Mix the protocols: legacy SCP, SFTP, and rscp.
                    let (up, down) = match i % 3 {
                        0 => (f.scp(&["-O", &name, &remote]), f.scp(&["-O", &remote, &back])),
                        1 => (f.scp(&[&name, &remote]), f.scp(&[&remote, &back])),
                        _ => (f.rscp(&[&name, &remote]), f.rscp(&[&remote, &back])),
                    };
                    assert_ok(&up, &format!("upload {i}"));
                    assert_ok(&down, &format!("download {i}"));
                    assert_eq!(
                        fs::read(f.local().join(&back)).expect("read"),
                        pseudo_random(1 << 20, i),
                        "client {i}"
                    );
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("client thread");
        }
    });
}

// ----------------------------------------------------------------- refusals

#[test]
fn a_key_not_authorized_is_refused() {
    let Some(f) = Fixture::new() else { return };
    let stranger = keygen(f.dir.path(), "stranger", KeyType::Ed25519, "");
    fs::write(f.local().join("x"), "x").expect("write");
    let output = f.run("scp", &["-F", &f.config_with_key(&stranger.private), "-O", "x", "rscpd:x"]);
    let stderr = assert_fails(&output, "upload with a stranger's key");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(!f.root().join("x").exists());
    let log = f.server.wait_for_log("refused", Duration::from_secs(5));
    assert!(!log.contains("accepted"), "{log}");
}

#[test]
fn no_shell_no_command_no_pty_no_forwarding() {
    let Some(f) = Fixture::new() else { return };
    let shell = f.ssh(&["-T", "rscpd"]);
    let stderr = assert_fails(&shell, "a shell");
    assert!(stderr.contains("there is no shell"), "{stderr}");

    let command = f.ssh(&["rscpd", "ls", "-la", "/"]);
    let stderr = assert_fails(&command, "ssh host ls");
    assert!(stderr.contains("only copies files"), "{stderr}");
    assert_eq!(command.stdout, b"", "a command printed something");

    let injection = f.ssh(&["rscpd", "scp -t /x; touch /tmp/rscpd-pwned"]);
    assert_fails(&injection, "an scp command with a shell tail");

    let pty = f.ssh(&["-tt", "rscpd", "true"]);
    let stderr = assert_fails(&pty, "a pty");
    assert!(stderr.contains("PTY allocation request failed"), "{stderr}");

    let forward = f.ssh(&["-W", "127.0.0.1:9", "rscpd"]);
    let stderr = assert_fails(&forward, "a port forward (-W)");
    assert!(stderr.contains("stdio forwarding failed") || stderr.contains("open failed"), "{stderr}");

    let remote_forward = f.ssh(&["-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9", "rscpd", "true"]);
    let stderr = assert_fails(&remote_forward, "a remote forward");
    assert!(stderr.contains("forwarding failed"), "{stderr}");

    let log = f.server.log();
    assert!(log.contains("refused a shell") && log.contains("refused command"), "{log}");
    assert!(log.contains("refused a pty") && log.contains("refused port forwarding"), "{log}");
}

#[test]
fn passwords_from_a_hashed_file() {
    if !require("ssh") {
        return;
    }
    // The hash comes from the real helper, fed on stdin.
    let mut helper = Command::new(RSCPD);
    helper.args(["hash-password", USER]).stdin(std::process::Stdio::piped());
    helper.stdout(std::process::Stdio::piped());
    let mut child = helper.spawn().expect("rscpd hash-password");
    {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(b"correct horse\n").expect("write");
    }
    let hashed = child.wait_with_output().expect("wait");
    assert!(hashed.status.success());
    let line = String::from_utf8(hashed.stdout).expect("utf-8");
    assert!(line.starts_with(&format!("{USER}:$argon2id$")), "{line}");
    assert!(!line.contains("correct horse"));

    let Some(f) = Fixture::with(|options, dir| {
        let file = dir.join("passwords");
        fs::write(&file, &line).expect("write");
        options.password_file = Some(file);
        options.authorized_keys = Some(dir.join("no-keys"));
        fs::write(dir.join("no-keys"), "").expect("write");
    }) else {
        return;
    };
    fs::write(f.local().join("x"), "by password\n").expect("write");
    let with_password = |password: &str| {
        let askpass = rscp_testkit::askpass(f.dir.path(), password);
        let mut command = Command::new("scp");
        command
            .current_dir(f.local())
            .args([
                "-F",
                f.config.to_str().expect("utf-8"),
                "-O",
                "-o",
                "BatchMode=no",
                "-o",
                "NumberOfPasswordPrompts=1",
            ])
            .args(["-o", "PreferredAuthentications=password", "x", "rscpd:x"])
            .env("SSH_ASKPASS", askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(std::process::Stdio::null());
        output_timeout(&mut command, RUN)
    };
    let stderr = assert_fails(&with_password("wrong horse"), "a wrong password");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(!f.root().join("x").exists());
    assert_ok(&with_password("correct horse"), "the right password");
    assert_eq!(fs::read_to_string(f.root().join("x")).expect("read"), "by password\n");
    let log = f.server.log();
    assert!(log.contains("refused password") && log.contains("accepted password"), "{log}");
}

#[test]
fn authorized_keys_options_are_honoured() {
    let mut lines = Vec::new();
    let Some(f) = Fixture::with(|options, dir| {
        // Each key gets its own option; the fixture's own key stays plain.
        for (name, option) in [
            ("restricted", "restrict"),
            ("elsewhere", "from=\"10.0.0.0/8,!127.0.0.1\""),
            ("expired", "expiry-time=\"20200101Z\""),
            ("forced", "command=\"/bin/true\""),
            ("local", "from=\"127.0.0.0/8\",no-pty"),
        ] {
            let key = keygen(dir, &format!("key-{name}"), KeyType::Ed25519, "");
            lines.push(format!("{option} {}", key.public_line));
        }
        let path = options.authorized_keys.clone().expect("keys file");
        let mut text = fs::read_to_string(&path).expect("read");
        text.push_str(&lines.join("\n"));
        fs::write(&path, text).expect("write");
    }) else {
        return;
    };
    fs::write(f.local().join("x"), "x").expect("write");
    for (name, allowed) in
        [("restricted", true), ("elsewhere", false), ("expired", false), ("forced", false), ("local", true)]
    {
        let config = f.config_with_key(&f.path(&format!("key-{name}")));
        let output = f.run("scp", &["-F", &config, "-O", "x", &format!("rscpd:{name}")]);
        assert_eq!(output.status.success(), allowed, "{name}: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(f.root().join(name).exists(), allowed, "{name}");
    }
    let log = f.server.log();
    assert!(log.contains("command="), "the refused line is named in the log:\n{log}");
}

#[test]
fn read_only_refuses_every_write() {
    let Some(f) = Fixture::with(|options, dir| {
        options.read_only = true;
        fs::write(dir.join("root/served.txt"), "served\n").expect("write");
    }) else {
        return;
    };
    fs::write(f.local().join("x"), "x").expect("write");
    let stderr = assert_fails(&f.scp(&["-O", "x", "rscpd:x"]), "scp -O upload");
    assert!(stderr.contains("read-only"), "{stderr}");
    assert_fails(&f.scp(&["x", "rscpd:x"]), "scp (sftp) upload");
    assert_fails(&f.sftp("mkdir d\n"), "sftp mkdir");
    assert_fails(&f.sftp("rm served.txt\n"), "sftp rm");
    assert_fails(&f.sftp("rename served.txt moved.txt\n"), "sftp rename");
    assert_eq!(tree(&f.root()).keys().collect::<Vec<_>>(), [Path::new("served.txt")]);
    assert_ok(&f.scp(&["-O", "rscpd:served.txt", "a"]), "scp -O download");
    assert_ok(&f.scp(&["rscpd:served.txt", "b"]), "scp (sftp) download");
    assert_eq!(fs::read_to_string(f.local().join("b")).expect("read"), "served\n");
}

// ------------------------------------------------------------------ escapes

#[test]
fn scp_cannot_leave_the_root() {
    let Some(f) = Fixture::with(|_, dir| {
        std::os::unix::fs::symlink("/etc", dir.join("root/etc-link")).expect("symlink");
        std::os::unix::fs::symlink("../outside", dir.join("root/out-link")).expect("symlink");
    }) else {
        return;
    };
    fs::write(f.local().join("x"), "x").expect("write");
    for target in
        ["rscpd:../x", "rscpd:/../outside/x", "rscpd:out-link/x", "rscpd:out-link/", "rscpd:etc-link/rscpd-x"]
    {
        assert_fails(&f.scp(&["-O", "x", target]), &format!("upload to {target}"));
    }
    assert!(!Path::new("/etc/rscpd-x").exists());
    for source in [
        "rscpd:../outside/secret",
        "rscpd:/../outside/secret",
        "rscpd:out-link/secret",
        "rscpd:etc-link/hostname",
        "rscpd:/etc/hostname",
    ] {
        assert_fails(&f.scp(&["-O", source, "."]), &format!("download of {source}"));
    }
    assert_fails(&f.scp(&["-O", "-r", "rscpd:out-link", "."]), "recursive download through a link");
    assert_fails(&f.rscp(&["rscpd:../outside/*", "."]), "a glob outside");
    assert!(!f.local().join("hostname").exists());
    f.assert_outside_untouched();
}

#[test]
fn sftp_cannot_leave_the_root() {
    let Some(f) = Fixture::with(|_, dir| {
        std::os::unix::fs::symlink("/etc", dir.join("root/etc-link")).expect("symlink");
        std::os::unix::fs::symlink("../outside", dir.join("root/out-link")).expect("symlink");
        fs::write(dir.join("root/inside.txt"), "inside\n").expect("write");
    }) else {
        return;
    };
    fs::write(f.local().join("x"), "x").expect("write");
    // Every line on its own: sftp -b stops at the first failure.
    for line in [
        "get ../outside/secret",
        "get /../outside/secret",
        "get out-link/secret",
        "get etc-link/hostname",
        "get /etc/hostname",
        "put x out-link/x",
        "put x etc-link/rscpd-x",
        "symlink /etc new-link",
        "symlink ../outside/secret new-link2",
        "rename inside.txt ../outside/stolen",
        "rename inside.txt out-link/stolen",
        "rm out-link/secret",
        "chmod 777 out-link/secret",
    ] {
        let output = f.sftp(&format!("{line}\n"));
        assert_fails(&output, line);
    }
    // Listing a link shows the link, never what it points to.
    for line in ["ls out-link", "ls -l out-link/", "ls etc-link/"] {
        let output = f.sftp(&format!("{line}\n"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!stdout.contains("secret") && !stdout.contains("passwd"), "{line}: {stdout}");
    }
    // `..` above the root is the root, as after a chroot: these land inside.
    assert_ok(&f.sftp("put x ../../x\nmkdir ../made\n"), "put and mkdir above the root");
    assert!(f.root().join("x").exists() && f.root().join("made").is_dir());
    // `cd ..` at the root stays at the root, as after a chroot.
    let output = f.sftp("cd ..\ncd ..\npwd\nget inside.txt\n");
    assert_ok(&output, "cd .. at the root");
    assert!(String::from_utf8_lossy(&output.stdout).contains("Remote working directory: /\n"));
    assert!(!Path::new("/etc/rscpd-x").exists());
    assert!(!f.root().join("new-link").exists() && !f.root().join("new-link2").exists());
    assert_eq!(fs::read_to_string(f.root().join("inside.txt")).expect("read"), "inside\n");
    assert!(!f.path("made").exists() && !f.path("x").exists());
    f.assert_outside_untouched();
}

// ------------------------------------------------------------ the server itself

#[test]
fn idle_connections_are_dropped_and_do_not_lock_others_out() {
    let Some(f) = Fixture::with(|options, _| {
        options.extra = ["--login-grace-time", "3", "--max-unauthenticated", "4"].map(String::from).to_vec();
    }) else {
        return;
    };
    use std::io::Read;
    let address = format!("127.0.0.1:{}", f.server.port);
    let mut idle: Vec<_> =
        (0..10).map(|_| std::net::TcpStream::connect(&address).expect("connect")).collect();
    // A real client still gets in past ten silent connections.
    fs::write(f.local().join("x"), "x").expect("write");
    assert_ok(&f.scp(&["-O", "x", "rscpd:x"]), "upload past idle connections");
    // Every idle connection is closed: evicted at once, or after the grace time.
    for stream in &mut idle {
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut buf = [0u8; 4096];
        let mut closed = false;
        for _ in 0..100 {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => {
                    closed = true;
                    break;
                }
                Ok(_) => {}
            }
        }
        assert!(closed, "an idle connection stayed open");
    }
    let log = f.server.log();
    assert!(log.contains("too many connections not logged in"), "{log}");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let Some(mut f) = Fixture::new() else { return };
    fs::write(f.local().join("x"), "x").expect("write");
    assert_ok(&f.scp(&["-O", "x", "rscpd:x"]), "upload");
    let status = f.server.terminate(Duration::from_secs(20)).expect("rscpd exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(f.server.log().contains("stopped"));
    let leftovers: Vec<_> =
        fs::read_dir(f.root()).expect("read_dir").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(leftovers, ["x"]);
}

#[test]
fn the_contract_line_and_the_default_host_key() {
    let Some(f) = Fixture::new() else { return };
    assert!(f.server.host_key_line.starts_with("host key ED25519 SHA256:"), "{}", f.server.host_key_line);
    let mode = fs::metadata(&f.server.host_key).expect("generated host key").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The same key on the next start.
    let before = fs::read(&f.server.host_key).expect("read");
    let again = Rscpd::start(
        Path::new(RSCPD),
        &f.root(),
        &f.path("state"),
        &RscpdOptions { authorized_keys: Some(f.path("authorized_keys")), ..RscpdOptions::default() },
    );
    assert_eq!(again.host_key_line, f.server.host_key_line);
    assert_eq!(fs::read(&f.server.host_key).expect("read"), before);
    // Bad flags: usage and exit 2; no way to log in: an error.
    let usage = output_timeout(Command::new(RSCPD).arg("--bogus"), RUN);
    assert_eq!(usage.status.code(), Some(2));
    let none = output_timeout(
        Command::new(RSCPD)
            .args(["--listen", "127.0.0.1:0", "--root"])
            .arg(f.root())
            .env("HOME", f.path("state")),
        RUN,
    );
    assert!(String::from_utf8_lossy(&none.stderr).contains("no way to log in"), "{none:?}");
}
