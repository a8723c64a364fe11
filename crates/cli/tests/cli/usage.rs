//! Usage text, flag errors and exit codes: golden text, and byte-for-byte
//! equality with OpenSSH's `scp` when started through a link named `scp`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::*;

const USAGE: &str = "\
usage: scp [-346ABCOpqRrsTv] [-c cipher] [-D sftp_server_path] [-F ssh_config]
           [-i identity_file] [-J destination] [-l limit] [-o ssh_option]
           [-P port] [-S program] [-X sftp_option] source ... target
";

/// A directory holding a symlink named `scp` to the binary under test.
fn scp_link(dir: &Path) -> PathBuf {
    let link = dir.join("scp");
    std::os::unix::fs::symlink(BIN, &link).expect("symlink");
    link
}

fn run_args(program: &Path, args: &[&str]) -> Output {
    let dir = tempdir();
    run(Command::new(program).current_dir(dir.path()).args(args), b"")
}

#[track_caller]
fn check(args: &[&str], code: i32, stderr: &str) {
    let out = run_args(Path::new(BIN), args);
    assert_eq!(out.stderr_text(), stderr, "stderr of rscp {args:?}");
    assert_bytes(&out.stdout, b"", "stdout");
    assert_eq!(out.code, Some(code), "exit status of rscp {args:?}");
}

#[test]
fn no_operands_prints_usage() {
    check(&[], 1, USAGE);
    check(&["only-one"], 1, USAGE);
    check(&["-r", "-p"], 1, USAGE);
}

#[test]
fn protocol_v1_is_fatal() {
    check(&["-1", "a", "b"], 255, "rscp: SSH protocol v.1 is no longer supported\r\n");
}

#[test]
fn unknown_option() {
    check(&["-Z", "a", "b"], 1, &format!("rscp: unknown option -- Z\r\n{USAGE}"));
    check(&["-P"], 1, &format!("rscp: option requires an argument -- P\r\n{USAGE}"));
}

#[test]
fn bad_port_is_fatal() {
    check(&["-P", "abc", "a", "b"], 255, "rscp: bad port \"abc\"\n\r\n");
    check(&["-P", "0", "a", "b"], 255, "rscp: bad port \"0\"\n\r\n");
}

/// Through a link named `scp`, stderr and the exit status are OpenSSH's own.
#[test]
fn same_text_as_openssh_through_a_link_named_scp() {
    let Some(scp) = openssh_scp() else { return };
    let dir = tempdir();
    let link = scp_link(dir.path());
    let cases: &[&[&str]] = &[
        &[],
        &["a"],
        &["-1", "a", "b"],
        &["-Z", "a", "b"],
        &["-rZ"],
        &["-P"],
        &["-P", "abc", "a", "b"],
        &["-P", "70000", "a", "b"],
        &["-l", "0", "a", "b"],
        &["-X", "foo", "a", "b"],
        &["-M", "x", "a", "b"],
    ];
    for args in cases {
        let ours = run_args(&link, args);
        // OpenSSH's fatal() prefixes argv[0] as given: run it as plain `scp`.
        let theirs = {
            let dir = tempdir();
            let mut cmd = Command::new(scp);
            cmd.arg0("scp").current_dir(dir.path()).args(*args);
            run(&mut cmd, b"")
        };
        assert_eq!(ours.stderr_text(), theirs.stderr_text(), "stderr of scp {args:?}");
        assert_eq!(ours.code, theirs.code, "exit status of scp {args:?}");
        assert_bytes(&ours.stdout, &theirs.stdout, "stdout");
    }
}

#[test]
fn link_named_scp_uses_scp_as_prefix() {
    let dir = tempdir();
    let link = scp_link(dir.path());
    let out = run_args(&link, &["-Z"]);
    assert_eq!(out.stderr_text(), format!("scp: unknown option -- Z\r\n{USAGE}"));
    assert_eq!(out.code, Some(1));
}

#[test]
fn remote_end_through_a_link_named_scp() {
    let dir = tempdir();
    let link = scp_link(dir.path());
    let out = run(
        Command::new(&link).current_dir(dir.path()).args(["-p", "-t", "x"]),
        b"T1700000000 0 1800000000 0\nC0600 2 a\nhi\0",
    );
    assert_bytes(&out.stdout, b"\0\0\0\0", "sink replies");
    assert_eq!(out.code, Some(0));
    assert_eq!(std::fs::read(dir.path().join("x")).expect("x"), b"hi");
}

/// CVE-2023-51385 through `-o User=`: the user reaches `ProxyCommand … %r`, which a
/// shell runs. Refused before anything is started, as OpenSSH's ssh refuses it.
#[test]
fn a_user_from_dash_o_with_shell_syntax_is_refused() {
    let dir = tempdir();
    let marker = dir.path().join("pwned");
    let config = dir.path().join("config");
    let proxy =
        format!("Host victim\n  ProxyCommand echo %r > {} ; exit 1\n", dir.path().join("ran").display());
    write_file(&config, proxy.as_bytes(), 0o644);
    write_file(&dir.path().join("f"), b"x", 0o644);
    for user in [format!("User=a$(id>{})b", marker.display()), format!("User=a`id>{}`b", marker.display())] {
        let out = run(rscp(dir.path()).arg("-F").arg(&config).args(["-o", &user, "f", "victim:x"]), b"");
        assert_eq!(out.code, Some(1), "{}", out.stderr_text());
        assert!(
            out.stderr_text().contains("remote username contains invalid characters"),
            "{}",
            out.stderr_text()
        );
        assert!(!marker.exists(), "the user name ran a command");
        assert!(!dir.path().join("ran").exists(), "the ProxyCommand was started");
    }
}
