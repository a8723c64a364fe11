//! `rscp -s`: uploads and downloads over SFTP against a real OpenSSH `sshd`
//! (its `internal-sftp`; rscpd in its own tests, crates/server/tests), side by
//! side with OpenSSH's own scp in SFTP mode: the same trees, modes and times,
//! the same messages and exit codes; hostile and refusing servers played by
//! `Subsystem` scripts.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::plans::{Lab, RUN_TIMEOUT, assert_ok, copy_checked, exec_with, make_tree, settled_logins, text};
use crate::*;

/// Relative path -> (type, permission bits, length and FNV-1a hash of the
/// contents) of every entry under `root`.
fn shape(root: &Path) -> BTreeMap<PathBuf, (char, u32, (usize, u64))> {
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
                out.insert(rel, ('d', mode, (0, 0)));
            } else {
                let data = fs::read(&path).expect("read");
                let hash = data
                    .iter()
                    .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
                out.insert(rel, ('f', mode, (data.len(), hash)));
            }
        }
    }
    out
}

/// One copy that must succeed, by rscp (`who` is "ours") or by OpenSSH's scp.
#[track_caller]
fn copy_as(lab: &Lab, port: u16, who: &str, args: &[&str], operands: Vec<OsString>) {
    let cmd = if who == "ours" { lab.rscp(port, args) } else { lab.openssh_scp(port, args) };
    let out = exec_with(cmd, &operands);
    assert_ok(&out, &format!("{who} {args:?} {operands:?}"));
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
    let plain =
        |who: &str, args: &[&str], operands: Vec<OsString>| copy_as(&lab, sshd.port, who, args, operands);
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
/// `RSCP_PARALLEL=0` keeps it to one connection. The second connection opens
/// only when a large file comes, named or in a tree.
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

    // In a tree too: the second connection opens when the large file comes.
    lab.mkdir("tree/sub");
    write_file(&lab.path("tree/small"), b"small\n", 0o644);
    fs::rename(lab.path("large"), lab.path("tree/sub/large")).expect("move");
    let out =
        exec_with(lab.rscp(sshd.port, &["-s", "-r"]), &[lab.path("tree").into(), lab.remote("got").into()]);
    assert_ok(&out, "tree with a large file");
    assert_eq!(settled_logins(&sshd, 5), 5, "two logins for the tree");
    assert!(fs::read(lab.path("got/tree/sub/large")).expect("read") == data, "contents differ");
    assert_eq!(fs::read(lab.path("got/tree/small")).expect("read"), b"small\n");
    // Without a large file, no second login.
    fs::remove_file(lab.path("tree/sub/large")).expect("remove");
    let out =
        exec_with(lab.rscp(sshd.port, &["-s", "-r"]), &[lab.path("tree").into(), lab.remote("again").into()]);
    assert_ok(&out, "small tree");
    assert_eq!(settled_logins(&sshd, 6), 6, "one login for a small tree");
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

    // -s between two remote hosts is not there yet: it says so.
    let out = exec_with(lab.rscp(sshd.port, &["-s"]), &[lab.remote("dir/a").into(), lab.remote("x").into()]);
    assert_eq!(out.code, Some(1));
    assert!(
        text(&out.stderr).contains("does not copy between two remote hosts yet"),
        "{}",
        out.stderr_text()
    );
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

#[test]
fn downloads_trees_files_and_globs_as_openssh_does() {
    let Some(lab) = Lab::new() else { return };
    let sshd = lab.sshd(Vec::new());
    let src = lab.path("src");
    make_tree(&src, 21);
    for who in ["ours", "theirs"] {
        lab.mkdir(who);
    }
    let plain =
        |who: &str, args: &[&str], operands: Vec<OsString>| copy_as(&lab, sshd.port, who, args, operands);
    for who in ["ours", "theirs"] {
        let dest = |rel: &str| lab.path(&format!("{who}/{rel}")).into_os_string();
        // A tree to a new name, a file into a directory, a glob of files (and
        // with -r of directories too) into a directory, and a file to a new name.
        plain(who, &["-s", "-r"], vec![lab.remote("src").into(), dest("tree")]);
        plain(who, &["-s"], vec![lab.remote("src/big.bin").into(), dest("")]);
        lab.mkdir(&format!("{who}/glob"));
        plain(
            who,
            &["-s", "-r"],
            vec![lab.remote("src/s*").into(), lab.remote("src/*.txt").into(), dest("glob")],
        );
        plain(who, &["-s"], vec![lab.remote("src/empty").into(), dest("renamed")]);
        // Again: the tree exists now, so the copy lands inside it.
        plain(who, &["-s", "-r"], vec![lab.remote("src").into(), dest("tree")]);
    }
    assert_eq!(shape(&lab.path("ours")), shape(&lab.path("theirs")), "rscp -s and scp (SFTP mode) differ");
    assert_same_tree(&src, &lab.path("ours/tree/src"), None);

    // -p: modes and times as the source had them.
    let dest = lab.mkdir("preserved");
    copy_checked(
        "rscp -s -r -p download",
        lab.rscp(sshd.port, &["-s", "-r", "-p"]),
        &[lab.remote("src").into(), dest.clone().into()],
        &[(src.clone(), dest.join("src"))],
    );

    // What goes wrong, in OpenSSH's words and exit codes.
    for operands in [
        vec![lab.remote("src/missing").into(), lab.path("ours").into()],
        vec![lab.remote("src/nomatch*").into(), lab.path("ours").into()],
        vec![lab.remote("src/sub").into(), lab.path("ours").into()],
        vec![lab.remote("src/*").into(), lab.path("ours/big.bin").into()],
    ] {
        let ours = exec_with(lab.rscp(sshd.port, &["-s"]), &operands);
        let theirs = exec_with(lab.openssh_scp(sshd.port, &["-s"]), &operands);
        assert_eq!(ours.code, Some(1), "{operands:?}: {}", ours.stderr_text());
        assert_eq!(
            (ours.code, show(&ours.stderr).replace("rscp: ", "scp: ")),
            (theirs.code, show(&theirs.stderr)),
            "{operands:?}"
        );
    }
}

/// A server that answers each request with the next canned reply, whatever it
/// asked (request ids are predictable): names that climb out of the target or
/// hold a slash are refused, nothing is written outside, the good file arrives.
/// One SFTP reply: `kind`, request `id`, then what `body` puts.
fn reply(kind: u8, id: u32, body: &dyn Fn(&mut Vec<u8>)) -> Vec<u8> {
    use rscp_proto::sftp;
    let mut out = Vec::new();
    let start = sftp::begin(&mut out, kind, id);
    body(&mut out);
    sftp::finish(&mut out, start);
    out
}

fn status(id: u32, code: u32) -> Vec<u8> {
    use rscp_proto::sftp;
    reply(sftp::FXP_STATUS, id, &|o| {
        sftp::put_u32(o, code);
        sftp::put_str(o, b"");
        sftp::put_str(o, b"");
    })
}

/// A `Subsystem` script that plays an SFTP server: `replies[0]` (the VERSION)
/// after the INIT, then `replies[i]` after reading request `i` exactly (length,
/// then body, a byte at a time, so that no reply comes before its request;
/// each request's body is kept as `req-i`), and `later` (`(i, bytes)`) a
/// moment after `replies[i]`.
fn scripted_sftp_server(lab: &Lab, replies: &[Vec<u8>], later: &[(usize, Vec<u8>)]) -> PathBuf {
    let dir = lab.mkdir("fake");
    for (i, bytes) in replies.iter().enumerate() {
        fs::write(dir.join(format!("reply-{i}")), bytes).expect("write");
    }
    for (i, bytes) in later {
        fs::write(dir.join(format!("later-{i}")), bytes).expect("write");
    }
    let script = format!(
        "#!/bin/sh\ncd '{}' || exit 1\ncat reply-0\ndd bs=1 count=9 >/dev/null 2>&1\ni=1\nwhile [ -f reply-$i ]; do\n  \
         n=$(dd bs=1 count=4 2>/dev/null | od -An -tu1 | awk '{{print $1*16777216+$2*65536+$3*256+$4}}')\n  \
         [ -n \"$n\" ] || exit 0\n  dd bs=1 count=$n of=req-$i 2>/dev/null\n  cat reply-$i\n  \
         if [ -f later-$i ]; then sleep 0.3; cat later-$i; fi\n  i=$((i+1))\ndone\nsleep 1\n",
        dir.display()
    );
    let path = lab.path("fake-sftp.sh");
    write_file(&path, script.as_bytes(), 0o755);
    path
}

#[test]
fn the_servers_limits_size_the_reads_even_when_answered_late() {
    use rscp_proto::sftp::{self, Attrs};
    let Some(lab) = Lab::new() else { return };
    let file_attrs = Attrs { size: Some(5), permissions: Some(0o100644), ..Attrs::default() };
    let replies: Vec<Vec<u8>> = vec![
        reply(sftp::FXP_VERSION, 3, &|o| {
            sftp::put_str(o, b"limits@openssh.com");
            sftp::put_str(o, b"1");
        }),
        // 1: limits@openssh.com, asked first and answered last (below).
        Vec::new(),
        // 2: STAT of the source.
        reply(sftp::FXP_ATTRS, 2, &|o| file_attrs.put(o)),
        // 3: OPEN; the limits come a moment after its handle.
        reply(sftp::FXP_HANDLE, 3, &|o| sftp::put_str(o, b"f")),
        reply(sftp::FXP_DATA, 4, &|o| sftp::put_str(o, b"hel")),
        reply(sftp::FXP_DATA, 5, &|o| sftp::put_str(o, b"lo")),
        status(6, sftp::FX_OK),
    ];
    // Longest packet, READ and WRITE, open handles: READs of 3 bytes.
    let limits = reply(sftp::FXP_EXTENDED_REPLY, 1, &|o| {
        for value in [0u64, 3, 0, 0] {
            o.extend_from_slice(&value.to_be_bytes());
        }
    });
    let script_path = scripted_sftp_server(&lab, &replies, &[(3, limits)]);
    let sshd = lab.sshd(vec![format!("Subsystem sftp {}", script_path.display())]);
    let out = run_with(
        lab.rscp(sshd.port, &["-s"]).arg(lab.remote("f")).arg(lab.path("got")),
        b"",
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr_text());
    assert_eq!(fs::read(lab.path("got")).ok(), Some(b"hello".to_vec()));
    // The first READ (request 4) waited for the limits: it asks 3 bytes, not 32 KiB.
    let read = fs::read(lab.path("fake/req-4")).expect("the first READ");
    assert_eq!(read.first(), Some(&sftp::FXP_READ));
    assert_eq!(read.get(read.len().saturating_sub(4)..), Some(&[0u8, 0, 0, 3][..]));
}

#[test]
fn hostile_names_in_a_listing_are_refused() {
    use rscp_proto::sftp::{self, Attrs};
    let Some(lab) = Lab::new() else { return };
    let dir_attrs = Attrs { permissions: Some(0o040755), ..Attrs::default() };
    let file_attrs = Attrs { size: Some(5), permissions: Some(0o100644), ..Attrs::default() };
    let replies: Vec<Vec<u8>> = vec![
        reply(sftp::FXP_VERSION, 3, &|_| {}),
        // STAT of the source: a directory.
        reply(sftp::FXP_ATTRS, 1, &|o| dir_attrs.put(o)),
        reply(sftp::FXP_HANDLE, 2, &|o| sftp::put_str(o, b"d")),
        reply(sftp::FXP_NAME, 3, &|o| {
            sftp::put_u32(o, 4);
            for name in [&b"../evil"[..], b"a/b", b"..", b"ok"] {
                sftp::put_str(o, name);
                sftp::put_str(o, name);
                if name == b".." { dir_attrs.put(o) } else { file_attrs.put(o) }
            }
        }),
        status(4, sftp::FX_EOF),
        status(5, sftp::FX_OK),
        reply(sftp::FXP_HANDLE, 6, &|o| sftp::put_str(o, b"f")),
        // All five bytes the listing announced: the end, no READ for EOF.
        reply(sftp::FXP_DATA, 7, &|o| sftp::put_str(o, b"hello")),
        status(8, sftp::FX_OK),
    ];
    let script_path = scripted_sftp_server(&lab, &replies, &[]);
    let sshd = lab.sshd(vec![format!("Subsystem sftp {}", script_path.display())]);
    lab.mkdir("down/inner");
    let out = run_with(
        lab.rscp(sshd.port, &["-s", "-r"]).arg(lab.remote("whatever")).arg(lab.path("down/inner")),
        b"",
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr_text());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("whatever/../evil: the server sent an invalid name"), "{stderr}");
    assert!(stderr.contains("whatever/a/b: the server sent an invalid name"), "{stderr}");
    assert_eq!(stderr.lines().count(), 2, "only the two names: {stderr}");
    assert_eq!(fs::read(lab.path("down/inner/whatever/ok")).ok(), Some(b"hello".to_vec()), "{stderr}");
    assert!(!lab.path("down/evil").exists() && !lab.path("down/inner/evil").exists());
    assert!(!lab.path("down/inner/whatever/a").exists());
}
