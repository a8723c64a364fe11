//! `rscp -s`: uploads over SFTP against a real OpenSSH `sshd` (its
//! `internal-sftp`) and with rscpd's own tests (crates/server/tests), side by side with OpenSSH's own scp in
//! SFTP mode: the same trees, modes and times, the same messages and exit
//! codes; hostile and refusing servers played by `Subsystem` scripts.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::plans::{Lab, RUN_TIMEOUT, assert_ok, copy_checked, exec_with, make_tree, settled_logins, text};
use crate::*;

/// Relative path -> (type, permission bits, contents) of every entry under `root`.
fn shape(root: &Path) -> BTreeMap<PathBuf, (char, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = fs::symlink_metadata(&path).expect("lstat");
            let rel = path.strip_prefix(root).expect("under root").to_path_buf();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                stack.push(path);
                out.insert(rel, ('d', mode, Vec::new()));
            } else {
                out.insert(rel, ('f', mode, fs::read(&path).expect("read")));
            }
        }
    }
    out
}

#[test]
fn uploads_trees_and_files_as_openssh_does() {
    let Some(lab) = Lab::new() else { return };
    let sshd = lab.sshd(Vec::new());
    let src = lab.path("src");
    make_tree(&src, 11);
    let file = lab.path("src/name with spaces.txt");
    for who in ["ours", "theirs"] {
        lab.mkdir(who);
    }
    let plain = |who: &str, args: &[&str], operands: Vec<OsString>| {
        let cmd = if who == "ours" { lab.rscp(sshd.port, args) } else { lab.openssh_scp(sshd.port, args) };
        let out = exec_with(cmd, &operands);
        assert_ok(&out, &format!("{who} {args:?}"));
    };
    for who in ["ours", "theirs"] {
        // A tree to a new name, a file into a directory, and two sources to a
        // directory that does not exist yet (SFTP mode makes it).
        plain(who, &["-s", "-r"], vec![src.clone().into(), lab.remote(&format!("{who}/tree")).into()]);
        plain(who, &["-s"], vec![file.clone().into(), lab.remote(&format!("{who}/")).into()]);
        plain(
            who,
            &["-s", "-r"],
            vec![file.clone().into(), src.clone().into(), lab.remote(&format!("{who}/made")).into()],
        );
        // Again: the tree now exists, so the copy lands inside it.
        plain(who, &["-s", "-r"], vec![src.clone().into(), lab.remote(&format!("{who}/tree")).into()]);
    }
    assert_eq!(shape(&lab.path("ours")), shape(&lab.path("theirs")), "rscp -s and scp (SFTP mode) differ");
    assert_same_tree(&src, &lab.path("ours/tree/src"), None);
    assert_same_tree(&src, &lab.path("ours/made/src"), None);

    // -p: every mode and time as the source had them.
    let dest = lab.mkdir("preserved");
    copy_checked(
        "rscp -s -r -p",
        lab.rscp(sshd.port, &["-s", "-r", "-p"]),
        &[src.clone().into(), file.clone().into(), lab.remote("preserved").into()],
        &[(src.clone(), dest.join("src")), (file.clone(), dest.join("name with spaces.txt"))],
    );

    // The login directory: an empty path and `~/`.
    let home = crate::plans::home_of("root");
    for (target, name) in [("", "rscp-sftp-test-a"), ("~/rscp-sftp-test-b", "rscp-sftp-test-b")] {
        let local = lab.path(name);
        fs::write(&local, name).expect("write");
        let out =
            exec_with(lab.rscp(sshd.port, &["-s"]), &[local.into(), format!("127.0.0.1:{target}").into()]);
        assert_ok(&out, target);
        let landed = home.join(name);
        assert_eq!(fs::read(&landed).ok(), Some(name.as_bytes().to_vec()), "{}", landed.display());
        let _ = fs::remove_file(landed);
    }
}

#[test]
fn a_big_file_arrives_whole() {
    let Some(lab) = Lab::new() else { return };
    let sshd = lab.sshd(Vec::new());
    // Several writes of the largest size the server allows, and an odd tail.
    let data = pseudo_random(3 * 1024 * 1024 + 12_345, 5);
    write_file(&lab.path("big"), &data, 0o600);
    lab.mkdir("got");
    let out =
        exec_with(lab.rscp(sshd.port, &["-s"]), &[lab.path("big").into(), lab.remote("got/big").into()]);
    assert_ok(&out, "big upload");
    assert!(fs::read(lab.path("got/big")).expect("read") == data, "contents differ");
    assert_eq!(mode_of(&lab.path("got/big")) & 0o777, 0o600);

    // -l: paced like the SCP protocol (16 KiB writes), still whole.
    let small = pseudo_random(64 * 1024, 6);
    write_file(&lab.path("small"), &small, 0o644);
    let out = exec_with(
        lab.rscp(sshd.port, &["-s", "-l", "8000"]),
        &[lab.path("small").into(), lab.remote("got/small").into()],
    );
    assert_ok(&out, "limited upload");
    assert!(fs::read(lab.path("got/small")).expect("read") == small);
}

/// A file of 64 MiB or more goes over two connections, half each, when a
/// second one logs in without asking; `-p` and the content come out whole.
/// `RSCP_PARALLEL=0` keeps it to one connection.
#[test]
fn a_large_file_goes_over_two_connections() {
    let Some(lab) = Lab::new() else { return };
    let sshd = lab.sshd(Vec::new());
    let size = 64 * 1024 * 1024 + 77_777;
    let data = pseudo_random(size, 9);
    write_file(&lab.path("large"), &data, 0o640);
    set_times(&lab.path("large"), 1_500_000_000, 1_600_000_000);
    lab.mkdir("got");
    // An old, longer file in the way: truncated first, then written in halves.
    write_file(&lab.path("got/large"), &vec![7u8; size + 4096], 0o600);
    let out = exec_with(
        lab.rscp(sshd.port, &["-s", "-p", "-v"]),
        &[lab.path("large").into(), lab.remote("got/large").into()],
    );
    assert_ok(&out, "split upload");
    assert!(
        text(&out.stderr).contains("Opened a second connection for large files"),
        "{}",
        out.stderr_text()
    );
    assert_eq!(settled_logins(&sshd, 2), 2, "two logins");
    // Metadata first: reading the copy moves its atime.
    assert_eq!(mode_of(&lab.path("got/large")) & 0o7777, 0o640);
    assert_eq!(times_of(&lab.path("got/large")), (1_500_000_000, 1_600_000_000));
    assert!(fs::read(lab.path("got/large")).expect("read") == data, "contents differ");

    let mut cmd = lab.rscp(sshd.port, &["-s"]);
    cmd.env("RSCP_PARALLEL", "0");
    let out = exec_with(cmd, &[lab.path("large").into(), lab.remote("got/again").into()]);
    assert_ok(&out, "single upload");
    assert_eq!(settled_logins(&sshd, 3), 3, "one more login");
    assert!(fs::read(lab.path("got/again")).expect("read") == data, "contents differ");
}

#[test]
fn messages_and_exit_codes_match_openssh() {
    let Some(lab) = Lab::new() else { return };
    let sshd = lab.sshd(Vec::new());
    let dir = lab.mkdir("dir");
    fs::write(lab.path("dir/a"), b"a").expect("write");
    lab.mkdir("dest");
    fs::write(lab.path("dest/plain"), b"x").expect("write");
    lab.mkdir("dest/blocked/dir/a");
    let cases: Vec<(Vec<&str>, Vec<OsString>)> = vec![
        // A directory without -r.
        (vec!["-s"], vec![dir.clone().into(), lab.remote("dest/").into()]),
        // A file into a directory that does not exist.
        (vec!["-s"], vec![lab.path("dir/a").into(), lab.remote("dest/none/a").into()]),
        // A tree onto a file.
        (vec!["-s", "-r"], vec![dir.clone().into(), lab.remote("dest/plain").into()]),
        // A file inside a tree blocked by a directory of its name.
        (vec!["-s", "-r"], vec![dir.clone().into(), lab.remote("dest/blocked/").into()]),
        // Several sources, and no way to make the directory they need.
        (
            vec!["-s"],
            vec![lab.path("dir/a").into(), lab.path("dir/a").into(), lab.remote("dest/none/x/").into()],
        ),
    ];
    for (args, operands) in &cases {
        let ours = exec_with(lab.rscp(sshd.port, args), operands);
        let theirs = exec_with(lab.openssh_scp(sshd.port, args), operands);
        assert_eq!(ours.code, Some(1), "{operands:?}: {}", ours.stderr_text());
        assert_eq!(show(&ours.stderr).replace("rscp: ", "scp: "), show(&theirs.stderr), "{operands:?}");
        // OpenSSH's scp ends with 255 where it stops at once (no target directory).
        assert!(matches!(theirs.code, Some(1 | 255)), "{operands:?}: {:?}", theirs.code);
    }
    // A missing source: OpenSSH's words, but the other sources still arrive
    // (OpenSSH's scp exits at once, 255).
    let out = exec_with(
        lab.rscp(sshd.port, &["-s"]),
        &[lab.path("missing").into(), lab.path("dir/a").into(), lab.remote("dest/").into()],
    );
    assert_eq!(out.code, Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("rscp: stat local \"{}\": No such file or directory\n", lab.path("missing").display())
    );
    assert_eq!(fs::read(lab.path("dest/a")).ok(), Some(b"a".to_vec()));

    // -s serves uploads only so far: the other plans say so.
    let out = exec_with(lab.rscp(sshd.port, &["-s"]), &[lab.remote("dir/a").into(), lab.path("x").into()]);
    assert_eq!(out.code, Some(1));
    assert!(text(&out.stderr).contains("SFTP mode (-s) serves uploads only"), "{}", out.stderr_text());
}

#[test]
fn hostile_and_refusing_sftp_servers() {
    let Some(lab) = Lab::new() else { return };
    fs::write(lab.path("a"), b"a").expect("write");
    // Each server: what its subsystem prints after reading the INIT (9 bytes).
    let version = r"\000\000\000\005\002\000\000\000\003";
    let servers = [
        // A reply to a request never made.
        (
            "unknown",
            format!(r"{version}\000\000\000\011\145\000\000\004\000\000\000\000\000"),
            "reply to an unknown request",
        ),
        // A length beyond any packet.
        ("huge", format!(r"{version}\177\377\377\377\145"), "malformed reply"),
        // Not an SFTP server at all.
        ("banner", r"hello, this is not sftp\n".to_owned(), "did not answer as an SFTP server"),
        // Gone after its VERSION.
        ("gone", version.to_owned(), "lost connection"),
    ];
    for (name, reply, expected) in servers {
        let script = lab.path(&format!("{name}.sh"));
        let body = format!("#!/bin/sh\nhead -c 9 >/dev/null\nprintf '{reply}'\nsleep 1\n");
        write_file(&script, body.as_bytes(), 0o755);
        let sshd = lab.sshd(vec![format!("Subsystem sftp {}", script.display())]);
        let out = run_with(
            lab.rscp(sshd.port, &["-s"]).arg(lab.path("a")).arg(lab.remote("b")),
            b"",
            Duration::from_secs(20),
        );
        assert_eq!(out.code, Some(1), "{name}: {}", out.stderr_text());
        assert!(text(&out.stderr).contains(expected), "{name}: {}", out.stderr_text());
    }
    // No sftp subsystem at all: ssh's words, no hang.
    let sshd = lab.sshd(vec!["Subsystem sftp /nonexistent/sftp-server".into()]);
    let out =
        run_with(lab.rscp(sshd.port, &["-s"]).arg(lab.path("a")).arg(lab.remote("b")), b"", RUN_TIMEOUT);
    assert_eq!(out.code, Some(1), "{}", out.stderr_text());
}
