//! Questions to the user, the way OpenSSH's `ssh` asks them: on the controlling
//! terminal (`/dev/tty`), never on stdin/stdout, or through `SSH_ASKPASS`.
//!
//! `SSH_ASKPASS` is used when `SSH_ASKPASS_REQUIRE=force`, or when there is no
//! terminal and a display is set (and `SSH_ASKPASS_REQUIRE` is not `never`).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use rustix::termios::{self, LocalModes, OptionalActions};

/// Prompts on `/dev/tty` or through `SSH_ASKPASS`; warnings go to stderr.
#[derive(Debug, Default)]
pub struct TerminalPrompter {
    pub quiet: bool,
}

impl TerminalPrompter {
    fn ask(&mut self, prompt: &str, echo: bool) -> Option<String> {
        if use_askpass() {
            return askpass(prompt);
        }
        let tty = OpenOptions::new().read(true).write(true).open("/dev/tty").ok()?;
        read_from_tty(tty, prompt, echo)
    }
}

impl rscp_ssh::Prompter for TerminalPrompter {
    fn secret(&mut self, prompt: &str) -> Option<String> {
        self.ask(prompt, false)
    }

    fn line(&mut self, prompt: &str) -> Option<String> {
        self.ask(prompt, true)
    }

    fn notice(&mut self, text: &str) {
        if !self.quiet {
            eprintln!("{}", text.trim_end_matches('\n'));
        }
    }
}

fn use_askpass() -> bool {
    let Some(_) = std::env::var_os("SSH_ASKPASS") else { return false };
    match std::env::var("SSH_ASKPASS_REQUIRE").as_deref() {
        Ok("force") => true,
        Ok("never") => false,
        _ => {
            let display =
                std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
            display && File::open("/dev/tty").is_err()
        }
    }
}

fn askpass(prompt: &str) -> Option<String> {
    let program = std::env::var_os("SSH_ASKPASS")?;
    let output =
        Command::new(program).arg(prompt).stdin(Stdio::null()).stderr(Stdio::inherit()).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Some(text.trim_end_matches(['\n', '\r']).to_string())
}

fn read_from_tty(mut tty: File, prompt: &str, echo: bool) -> Option<String> {
    tty.write_all(prompt.as_bytes()).ok()?;
    tty.flush().ok()?;
    let saved = termios::tcgetattr(&tty).ok();
    if let (false, Some(saved)) = (echo, &saved) {
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        let _ = termios::tcsetattr(&tty, OptionalActions::Flush, &quiet);
    }
    let mut line = String::new();
    let read = BufReader::new(&tty).read_line(&mut line);
    if let (false, Some(saved)) = (echo, &saved) {
        let _ = termios::tcsetattr(&tty, OptionalActions::Flush, saved);
        let _ = tty.write_all(b"\n");
    }
    match read {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\n', '\r']).to_string()),
    }
}
