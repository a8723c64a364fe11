//! Local-to-local copies: `rscp [-r] [-p] SRC... DEST`.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::*;

/// A small tree with varied modes and times.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
    fs::create_dir_all(root.join("empty dir/empty too")).expect("mkdir");
    write_file(&root.join("empty"), b"", 0o640);
    write_file(&root.join("one"), b"1", 0o600);
    write_file(&root.join("sub/script.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    write_file(&root.join("sub/deeper/café ☕.txt"), "café\n".as_bytes(), 0o644);
    write_file(&root.join("sub/-dash"), &pseudo_random(300_000, 7), 0o604);
    let entries = [
        "empty",
        "one",
        "sub/script.sh",
        "sub/deeper/café ☕.txt",
        "sub/-dash",
        "sub/deeper",
        "empty dir/empty too",
        "empty dir",
        "sub",
    ];
    for (i, p) in entries.iter().enumerate() {
        let i = i as i64;
        set_times(&root.join(p), 1_500_000_000 + i * 1000, 1_600_000_000 + i * 1000);
    }
    fs::set_permissions(root.join("empty dir"), std::os::unix::fs::PermissionsExt::from_mode(0o750))
        .expect("chmod");
}

#[test]
fn recursive_copy_with_p_keeps_everything() {
    let dir = tempdir();
    let src = dir.path().join("src");
    make_tree(&src);
    set_times(&src, 1_400_000_000, 1_450_000_000);
    let before = settled_snapshot(&src);
    let top = times_of(&src);
    assert_eq!(top.0, 1_400_000_000);
    let out = run(rscp(dir.path()).args(["-r", "-p", "src", "dst"]), b"");
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr_text());
    assert_bytes(&out.stdout, b"", "stdout");
    assert_same_tree(&src, &dir.path().join("dst"), Some(&before));
    assert_eq!(times_of(&dir.path().join("dst")), top, "top directory times");

    // Into an existing directory: lands in dst/src.
    let before = settled_snapshot(&src);
    let out = run(rscp(dir.path()).args(["-rp", "src", "dst"]), b"");
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr_text());
    assert_same_tree(&src, &dir.path().join("dst/src"), Some(&before));
}

#[test]
fn several_sources_into_a_directory() {
    let dir = tempdir();
    let d = dir.path();
    write_file(&d.join("a"), b"aaa", 0o644);
    write_file(&d.join("b"), b"", 0o600);
    write_file(&d.join("c c"), b"c", 0o755);
    fs::create_dir(d.join("dir")).expect("mkdir");
    let out = run(rscp(d).args(["a", "b", "c c", "dir/"]), b"");
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr_text());
    for (name, contents) in [("a", &b"aaa"[..]), ("b", b""), ("c c", b"c")] {
        assert_eq!(fs::read(d.join("dir").join(name)).expect("copy"), contents, "{name}");
    }
    assert_eq!(mode_of(&d.join("dir/c c")), 0o755 & !umask(), "mode of a new file");
}

#[test]
fn several_sources_into_a_non_directory_fail() {
    let dir = tempdir();
    let d = dir.path();
    write_file(&d.join("a"), b"aaa", 0o644);
    write_file(&d.join("b"), b"bbb", 0o644);
    write_file(&d.join("notadir"), b"keep", 0o644);
    let out = run(rscp(d).args(["a", "b", "notadir"]), b"");
    assert_eq!(out.code, Some(1), "stderr: {}", out.stderr_text());
    assert!(out.stderr_text().contains("notadir: Not a directory"), "stderr: {}", out.stderr_text());
    assert_eq!(fs::read(d.join("notadir")).expect("notadir"), b"keep");

    let out = run(rscp(d).args(["a", "b", "missing"]), b"");
    assert_eq!(out.code, Some(1), "stderr: {}", out.stderr_text());
    assert!(!d.join("missing").exists());
}

#[test]
fn missing_source_is_reported_and_the_rest_copied() {
    let dir = tempdir();
    let d = dir.path();
    write_file(&d.join("a"), b"aaa", 0o644);
    write_file(&d.join("c"), b"ccc", 0o644);
    fs::create_dir(d.join("dir")).expect("mkdir");
    let out = run(rscp(d).args(["a", "nope", "c", "dir"]), b"");
    assert_eq!(out.code, Some(1));
    assert_eq!(out.stderr_text(), "nope: No such file or directory\n");
    assert_eq!(fs::read(d.join("dir/a")).expect("a"), b"aaa");
    assert_eq!(fs::read(d.join("dir/c")).expect("c"), b"ccc");
    assert!(!d.join("dir/nope").exists());
}

#[test]
fn directory_without_r_is_refused() {
    let dir = tempdir();
    let d = dir.path();
    fs::create_dir(d.join("srcdir")).expect("mkdir");
    let out = run(rscp(d).args(["srcdir", "dst"]), b"");
    assert_eq!(out.code, Some(1));
    assert_eq!(out.stderr_text(), "srcdir: not a regular file\n");
    assert!(!d.join("dst").exists());
}

#[test]
fn overwrite_is_atomic_and_keeps_the_mode_without_p() {
    let dir = tempdir();
    let d = dir.path();
    write_file(&d.join("new"), b"new contents\n", 0o644);
    set_times(&d.join("new"), MTIME, ATIME);
    write_file(&d.join("old"), b"the old contents, longer than the new ones\n", 0o600);
    let inode = fs::metadata(d.join("old")).expect("stat").ino();
    // An open handle on the old file keeps seeing the old bytes: the new file
    // was renamed over it, not written into it.
    let mut held = fs::File::open(d.join("old")).expect("open old");

    let out = run(rscp(d).args(["new", "old"]), b"");
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr_text());
    assert_eq!(fs::read(d.join("old")).expect("old"), b"new contents\n");
    assert_eq!(mode_of(&d.join("old")), 0o600, "existing file's mode kept without -p");
    assert_ne!(fs::metadata(d.join("old")).expect("stat").ino(), inode, "replaced by rename");
    let mut seen = String::new();
    held.read_to_string(&mut seen).expect("read held");
    assert_eq!(seen, "the old contents, longer than the new ones\n");
    let mut names: Vec<_> =
        fs::read_dir(d).expect("read_dir").map(|e| e.expect("entry").file_name()).collect();
    names.sort();
    assert_eq!(names, ["new", "old"], "no temporary file left behind");

    // With -p the source's mode and times win.
    write_file(&d.join("old2"), b"x", 0o600);
    let out = run(rscp(d).args(["-p", "new", "old2"]), b"");
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr_text());
    assert_eq!(mode_of(&d.join("old2")), 0o644);
    assert_eq!(times_of(&d.join("old2")), (MTIME, ATIME));
}

#[test]
fn copy_without_p_does_not_keep_times() {
    let dir = tempdir();
    let d = dir.path();
    write_file(&d.join("a"), b"a", 0o644);
    set_times(&d.join("a"), MTIME, ATIME);
    let out = run(rscp(d).args(["a", "b"]), b"");
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr_text());
    assert_ne!(times_of(&d.join("b")).0, MTIME);
}

/// A writable file in a directory the user may not write to: there is no room
/// for a temporary file, so it is overwritten in place (as OpenSSH does); a new
/// file there is refused with the system's reason. Run as the unprivileged test
/// user, since root passes every permission check.
#[test]
fn writable_file_in_a_read_only_directory() {
    if !rscp_testkit::ensure_test_user() {
        return;
    }
    let dir = tempdir();
    fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let locked = dir.path().join("locked");
    fs::create_dir(&locked).expect("mkdir");
    write_file(&locked.join("cfg"), b"old\n", 0o666);
    write_file(&dir.path().join("new.txt"), b"new contents\n", 0o644);
    let as_user = |target: &Path| {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", rscp_testkit::TEST_USER, "--", BIN]).arg(dir.path().join("new.txt")).arg(target);
        run(&mut cmd, b"")
    };
    let out = as_user(&locked.join("cfg"));
    assert_eq!(out.code, Some(0), "{}", show(&out.stderr));
    assert_eq!(fs::read(locked.join("cfg")).expect("read"), b"new contents\n");
    assert_eq!(mode_of(&locked.join("cfg")), 0o666, "the file keeps its mode");
    let out = as_user(&locked.join("other"));
    assert_eq!(out.code, Some(1));
    assert_eq!(show(&out.stderr), format!("{}: Permission denied\\n", locked.join("other").display()));
    assert_eq!(fs::read_dir(&locked).expect("list").count(), 1, "no temporary file left");
}

/// CVE-2006-0225: OpenSSH's scp ran local copies through `system()`, so a name was
/// expanded by a shell a second time. rscp copies in-process: names spelled in
/// shell syntax are just names, copied literally, and nothing they spell runs.
#[test]
fn shell_special_names_are_copied_literally() {
    let dir = tempdir();
    let names = [
        "$(touch pwned1)",
        "`touch pwned2`",
        "a;touch pwned3",
        "b|touch pwned4",
        "c&&touch pwned5",
        "*",
        "$HOME",
        "'q' \"d\"",
    ];
    for (i, name) in names.iter().enumerate() {
        write_file(&dir.path().join(name), i.to_string().as_bytes(), 0o644);
    }
    fs::create_dir(dir.path().join("dst")).expect("mkdir");
    let out = run(rscp(dir.path()).args(names).arg("dst"), b"");
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr_text());
    for (i, name) in names.iter().enumerate() {
        let copied = fs::read(dir.path().join("dst").join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(copied, i.to_string().as_bytes(), "{name}");
    }
    assert_eq!(
        fs::read_dir(dir.path().join("dst")).expect("dst").count(),
        names.len(),
        "nothing else in dst"
    );
    for marker in ["pwned1", "pwned2", "pwned3", "pwned4", "pwned5"] {
        assert!(!dir.path().join(marker).exists(), "{marker} was created: a shell ran");
    }
}
