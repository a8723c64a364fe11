//! Faults injected between the rscp client and a real OpenSSH `sshd` (issue 7),
//! whose remote end is OpenSSH's own `scp -t` / `scp -f`: the TCP connection cut
//! by a proxy in the middle of a file, and one bad file among a thousand. What is
//! checked is rscp's side: a clear message and exit status 1, a destination that
//! keeps its old content, no `.rscp-PID-N.part` left behind, and the other files
//! intact. (rscpd as the server: crates/server/tests/rscpd/faults.rs, whose proxy
//! this file shares.)

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use rscp_testkit::{KeyPair, KeyType, Sshd, SshdOptions, keygen, require_openssh};

use crate::*;

#[path = "../../../server/tests/rscpd/proxy.rs"]
mod proxy;

use proxy::{Plan, Proxy};

/// A real sshd trusting one key, and a client directory readable by it.
struct Peer {
    dir: tempfile::TempDir,
    key: KeyPair,
    sshd: Sshd,
}

impl Peer {
    fn new() -> Option<Peer> {
        if !require_openssh() {
            return None;
        }
        let dir = tempfile::Builder::new().prefix("rscp-faults-").tempdir().expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let key = keygen(dir.path(), "id_ed25519", KeyType::Ed25519, "");
        let sshd = Sshd::start(SshdOptions {
            authorized_keys: vec![key.public_line.clone()],
            ..SshdOptions::default()
        });
        Some(Peer { dir, key, sshd })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// rscp reaching sshd on `port` (sshd's own, or a proxy's in front of it).
    fn rscp(&self, port: u16) -> Command {
        let known_hosts = self.path(&format!("known_hosts-{port}"));
        let lines: Vec<String> = self
            .sshd
            .known_hosts_lines()
            .iter()
            .map(|l| l.replace(&format!("[127.0.0.1]:{}", self.sshd.port), &format!("[127.0.0.1]:{port}")))
            .collect();
        fs::write(&known_hosts, lines.join("\n") + "\n").expect("write");
        let mut cmd = rscp(self.dir.path());
        for var in ["SSH_AUTH_SOCK", "SSH_ASKPASS", "DISPLAY"] {
            cmd.env_remove(var);
        }
        cmd.args(["-F", "/dev/null", "-P", &port.to_string(), "-i"]).arg(&self.key.private);
        cmd.arg("-o").arg(format!("UserKnownHostsFile={}", known_hosts.display()));
        cmd.args(["-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes"]);
        cmd.args(["-o", "BatchMode=yes", "-o", "IdentityAgent=none", "-o", "ConnectTimeout=10"]);
        cmd
    }

    /// `127.0.0.1:` + the absolute path of `rel`.
    fn remote(&self, rel: &str) -> String {
        format!("127.0.0.1:{}", self.path(rel).display())
    }
}

/// The `.rscp-*.part` files in `dir`.
fn parts(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".rscp-") && n.ends_with(".part"))
        .collect()
}

/// A proxy cuts the connection to sshd after 8 MiB of a 16 MiB download: rscp
/// fails with "lost connection", keeps the old destination and leaves no
/// temporary file. The server is unharmed.
#[test]
fn connection_cut_mid_file_against_openssh() {
    let Some(peer) = Peer::new() else { return };
    let new = pseudo_random(16 << 20, 31);
    let old = b"old\n".repeat(4000);
    fs::write(peer.path("big"), &new).expect("write");
    fs::create_dir(peer.path("local")).expect("mkdir");
    fs::write(peer.path("local/dest"), &old).expect("write");
    let cut = 8 << 20;
    let down = Proxy::start(peer.sshd.addr(), Plan { cut_down_after: Some(cut), ..Plan::default() });
    let mut cmd = peer.rscp(down.port);
    cmd.arg(peer.remote("big")).arg(peer.path("local/dest"));
    let out = run_with(&mut cmd, b"", Duration::from_secs(60));
    assert_eq!(out.code, Some(1), "download through a cut: {}", out.stderr_text());
    assert!(out.stderr_text().contains("lost connection"), "{:?}", out.stderr_text());
    assert!(fs::read(peer.path("local/dest")).expect("read") == old, "the destination changed");
    assert!(parts(&peer.path("local")).is_empty(), "temporary files left: {:?}", parts(&peer.path("local")));
    assert_eq!((down.cuts(), down.connections()), (1, 1), "the download was cut");

    // The same server, without a proxy, still works.
    let mut cmd = peer.rscp(peer.sshd.port);
    cmd.arg(peer.remote("big")).arg(peer.path("local/dest"));
    let out = run_with(&mut cmd, b"", Duration::from_secs(60));
    assert_eq!(out.code, Some(0), "{}", out.stderr_text());
    assert!(fs::read(peer.path("local/dest")).expect("read") == new);
}

/// `rscp -s` (SFTP uploads) under faults: 1,000 files into a tree where f0500 is
/// a directory on the server, whose OPEN fails: the other 999 arrive (the SFTP
/// protocol has no stream to fall out of step), exit 1, OpenSSH's words. Then a
/// 16 MiB upload through a proxy that cuts the connection after 8 MiB: exit 1
/// with a message, no hang. (The server writes in place, so the target holds
/// what arrived before the cut, as with OpenSSH's SFTP mode.)
#[test]
fn sftp_uploads_one_refused_file_and_a_cut() {
    let Some(peer) = Peer::new() else { return };
    let content = |i: usize| format!("file {i}\n").repeat(i % 7 + 1);
    fs::create_dir(peer.path("src")).expect("mkdir");
    for i in 0..1000 {
        fs::write(peer.path(&format!("src/f{i:04}")), content(i)).expect("write");
    }
    fs::create_dir_all(peer.path("up/src/f0500")).expect("mkdir");
    let mut cmd = peer.rscp(peer.sshd.port);
    cmd.args(["-s", "-r"]).arg(peer.path("src")).arg(peer.remote("up"));
    let out = run_with(&mut cmd, b"", Duration::from_secs(120));
    assert_eq!(out.code, Some(1), "{}", out.stderr_text());
    let stderr = out.stderr_text();
    assert!(
        stderr.contains(&format!(
            "dest open \"{}/up/src/f0500\": Failure",
            peer.path("").display().to_string().trim_end_matches('/')
        )),
        "{stderr:?}"
    );
    assert!(stderr.contains("failed to upload directory"), "{stderr:?}");
    for i in (0..1000).filter(|&i| i != 500) {
        let got = fs::read_to_string(peer.path(&format!("up/src/f{i:04}"))).expect("a file arrived");
        assert_eq!(got, content(i), "f{i:04}");
    }
    assert!(peer.path("up/src/f0500").is_dir());

    let big = pseudo_random(16 << 20, 32);
    fs::write(peer.path("big"), &big).expect("write");
    let up = Proxy::start(peer.sshd.addr(), Plan { cut_up_after: Some(8 << 20), ..Plan::default() });
    let mut cmd = peer.rscp(up.port);
    cmd.arg("-s").arg(peer.path("big")).arg(peer.remote("cut"));
    let out = run_with(&mut cmd, b"", Duration::from_secs(60));
    assert_eq!(out.code, Some(1), "upload through a cut: {}", out.stderr_text());
    assert!(out.stderr_text().contains("lost connection"), "{:?}", out.stderr_text());
    assert_eq!(up.cuts(), 1, "the upload was cut");
}

/// 1,000 files downloaded with `-r` from OpenSSH's `scp -f`, where one name is a
/// directory on the client: that file fails ("Is a directory"), the other 999
/// arrive intact, no temporary file is left, exit status 1. Pipelined (replies
/// sent ahead: the refused file's data comes anyway and is dropped) and in
/// OpenSSH's lockstep (`RSCP_PIPELINE=0`).
#[test]
fn one_bad_file_among_a_thousand_downloaded() {
    let Some(peer) = Peer::new() else { return };
    let content = |i: usize| format!("file {i}\n").repeat(i % 7 + 1);
    fs::create_dir(peer.path("src")).expect("mkdir");
    for i in 0..1000 {
        fs::write(peer.path(&format!("src/f{i:04}")), content(i)).expect("write");
    }
    for (down, pipeline) in [("down", "1"), ("lockstep", "0")] {
        fs::create_dir_all(peer.path(&format!("{down}/src/f0500"))).expect("mkdir");
        let mut cmd = peer.rscp(peer.sshd.port);
        cmd.env("RSCP_PIPELINE", pipeline).arg("-r").arg(peer.remote("src")).arg(peer.path(down));
        let started = Instant::now();
        let out = run_with(&mut cmd, b"", Duration::from_secs(120));
        let took = started.elapsed();
        assert_eq!(out.code, Some(1), "{}", out.stderr_text());
        assert!(out.stderr_text().contains("f0500: Is a directory"), "{:?}", out.stderr_text());
        let dest = peer.path(&format!("{down}/src"));
        for i in (0..1000).filter(|&i| i != 500) {
            let got = fs::read_to_string(dest.join(format!("f{i:04}"))).expect("a file arrived");
            assert_eq!(got, content(i), "f{i:04}");
        }
        assert!(dest.join("f0500").is_dir());
        assert_eq!(fs::read_dir(&dest).expect("read_dir").count(), 1000);
        assert!(parts(&dest).is_empty(), "temporary files left: {:?}", parts(&dest));
        eprintln!(
            "figures: 1000 files from OpenSSH's scp -f, one refused, RSCP_PIPELINE={pipeline}, in {took:?}"
        );
    }
}

/// The same tree uploaded to OpenSSH's `scp -r -t`, with a directory in the
/// place of f0500 on the server. Pipelined, f0500 went ahead (its data looks
/// like no record): `scp -t` refuses it and stops at its data, so rscp stops
/// too, saying why (exit 1). What arrived is intact, nothing was made of the
/// data, and nothing after f0500 was written. In lockstep (`RSCP_PIPELINE=0`)
/// the copy goes on past it: the other 999 arrive, as with OpenSSH's scp.
#[test]
fn one_bad_file_among_a_thousand_uploaded() {
    let Some(peer) = Peer::new() else { return };
    let content = |i: usize| format!("file {i}\n").repeat(i % 7 + 1);
    fs::create_dir(peer.path("src")).expect("mkdir");
    for i in 0..1000 {
        fs::write(peer.path(&format!("src/f{i:04}")), content(i)).expect("write");
    }
    for (up, pipeline) in [("ahead", "1"), ("lockstep", "0")] {
        fs::create_dir_all(peer.path(&format!("{up}/src/f0500"))).expect("mkdir");
        let mut cmd = peer.rscp(peer.sshd.port);
        cmd.env("RSCP_PIPELINE", pipeline).arg("-r").arg(peer.path("src")).arg(peer.remote(up));
        let out = run_with(&mut cmd, b"", Duration::from_secs(120));
        let stderr = out.stderr_text();
        assert_eq!(out.code, Some(1), "{stderr}");
        assert!(stderr.contains("f0500: Is a directory"), "{stderr:?}");
        let dest = peer.path(&format!("{up}/src"));
        let mut arrived = 0;
        for entry in fs::read_dir(&dest).expect("read_dir") {
            let name = entry.expect("entry").file_name().into_string().expect("utf-8");
            let i: usize = name.strip_prefix('f').and_then(|n| n.parse().ok()).expect("one of ours");
            if i != 500 {
                let got = fs::read_to_string(dest.join(&name)).expect("a file");
                assert_eq!(got, content(i), "{name}");
                arrived += 1;
            }
        }
        assert_eq!(fs::read_dir(dest.join("f0500")).expect("still a directory").count(), 0);
        if pipeline == "1" {
            assert!(stderr.contains("its data had been sent ahead, so the copy stops here"), "{stderr:?}");
            // rscp walks the directory in readdir order, as this does.
            let order: Vec<_> = fs::read_dir(peer.path("src"))
                .expect("read_dir")
                .map(|e| e.expect("entry").file_name())
                .collect();
            let before = order.iter().position(|n| n == "f0500").expect("f0500");
            assert_eq!(arrived, before, "the files before f0500 arrived, none after");
        } else {
            assert_eq!(arrived, 999, "{stderr}");
        }
        eprintln!(
            "figures: 1000 files to OpenSSH's scp -t, one refused, RSCP_PIPELINE={pipeline}: {arrived} arrived"
        );
    }
}

/// A proxy cuts the connection to sshd after 8 MiB of a 16 MiB upload: rscp must
/// fail with "lost connection". (OpenSSH's `scp -t` writes in place, so what the
/// server keeps is its business.) Today rscp hangs for ever whenever the cut finds
/// it waiting for window space (OpenSSH's window is 2 MiB, so nearly always): the
/// session ends and closes the socket, but the upload's write never returns.
/// (Against rscpd, whose window is 16 MiB and which reads fast, the same cut
/// usually finds window space left and rscp exits as it should.)
#[test]
fn upload_through_a_cut_connection_ends() {
    let Some(peer) = Peer::new() else { return };
    fs::write(peer.path("big"), pseudo_random(16 << 20, 32)).expect("write");
    let cut = 8 << 20;
    let up = Proxy::start(peer.sshd.addr(), Plan { cut_up_after: Some(cut), ..Plan::default() });
    let mut cmd = peer.rscp(up.port);
    cmd.arg(peer.path("big")).arg(peer.remote("uploaded"));
    let out = run_with(&mut cmd, b"", Duration::from_secs(30));
    assert_eq!(out.code, Some(1), "upload through a cut: {}", out.stderr_text());
    assert!(out.stderr_text().contains("lost connection"), "{:?}", out.stderr_text());
    assert_eq!(up.cuts(), 1, "the upload was cut");
}
