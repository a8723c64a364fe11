//! A local user with a known password, for password and
//! keyboard-interactive authentication.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::peers_required;
use crate::process::{find_program, output_timeout};

/// The local user password and keyboard-interactive tests log in as.
pub const TEST_USER: &str = "rscptest";
/// [`TEST_USER`]'s password, set by [`ensure_test_user`].
pub const TEST_PASSWORD: &str = "rscp-Test-pw-4711";

/// Makes sure [`TEST_USER`] exists (`useradd -m -s /bin/sh rscptest`) with
/// the password [`TEST_PASSWORD`] (`chpasswd`). Done once per process; needs
/// root. When that is impossible: panics under `RSCP_REQUIRE_PEERS=1`, else
/// prints a skip note and returns false.
pub fn ensure_test_user() -> bool {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    match DONE.get_or_init(create_test_user) {
        Ok(()) => true,
        Err(why) if peers_required() => {
            panic!("RSCP_REQUIRE_PEERS=1 but the test user {TEST_USER} cannot be set up: {why}")
        }
        Err(why) => {
            eprintln!("skipping: the test user {TEST_USER} cannot be set up: {why}");
            false
        }
    }
}

fn run(command: &mut Command) -> Result<String, String> {
    command.stdin(Stdio::null());
    let out = output_timeout(command, Duration::from_secs(60));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{command:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn create_test_user() -> Result<(), String> {
    let uid = run(Command::new("id").arg("-u"))?;
    if uid.trim() != "0" {
        return Err(format!("not root (uid {})", uid.trim()));
    }
    let exists = Command::new("id")
        .arg(TEST_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !exists {
        let useradd = find_program("useradd").ok_or("useradd is not installed")?;
        if let Err(e) = run(Command::new(useradd).args(["-m", "-s", "/bin/sh", TEST_USER])) {
            // Another process may have created it meanwhile.
            let now = Command::new("id")
                .arg(TEST_USER)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !now {
                return Err(e);
            }
        }
    }
    let chpasswd = find_program("chpasswd").ok_or("chpasswd is not installed")?;
    // chpasswd locks /etc/shadow; a concurrent run elsewhere makes it fail
    // for a moment, so try a few times.
    let mut last = String::new();
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut child = Command::new(&chpasswd)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run chpasswd: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            writeln!(stdin, "{TEST_USER}:{TEST_PASSWORD}")
                .map_err(|e| format!("writing to chpasswd: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| format!("waiting for chpasswd: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        last = format!("chpasswd failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Err(last)
}
