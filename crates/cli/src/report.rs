//! What the user sees of a transfer: the engine's messages, escaped, on stderr.
//!
//! Peer text is always passed through `rscp_proto::display` before it is printed
//! (CVE-2019-6109/6110). The remote ends print nothing but `-v` traces: their
//! stdout is the protocol and their errors travel to the peer.

use rscp_engine::Observer;
use rscp_proto::display;

/// Prints errors for a local user: ours as `path: reason`, the peer's as sent.
#[derive(Debug, Default)]
pub struct ClientReport {
    /// Whether the peer's `\1` texts are shown. Off for local copies, where both
    /// ends are this process and each error would be printed twice.
    pub show_remote: bool,
}

impl Observer for ClientReport {
    fn local_error(&mut self, text: &str) {
        eprintln!("{text}");
    }

    fn remote_message(&mut self, text: &[u8]) {
        if self.show_remote {
            eprintln!("{}", display::escape(text));
        }
    }
}

/// SFTP mode's errors as OpenSSH's log module prints them: `progname: text`
/// and a `\r\n` line end. Everything else goes to `inner` as it is.
pub struct Logged {
    pub inner: Box<dyn Observer>,
    pub progname: String,
}

impl Observer for Logged {
    fn local_error(&mut self, text: &str) {
        // The inner report ends the line with `\n`.
        self.inner.local_error(&format!("{}: {text}\r", self.progname));
    }

    fn remote_message(&mut self, text: &[u8]) {
        self.inner.remote_message(text);
    }

    fn file_started(&mut self, name: &rscp_proto::FileName, size: u64) {
        self.inner.file_started(name, size);
    }

    fn transferred(&mut self, bytes: u64) {
        self.inner.transferred(bytes);
    }

    fn file_finished(&mut self, ok: bool) {
        self.inner.file_finished(ok);
    }

    fn debug(&mut self, line: &str) {
        self.inner.debug(line);
    }
}

/// The remote end's observer: silent unless `-v`.
#[derive(Debug, Default)]
pub struct RemoteReport {
    pub verbose: bool,
}

impl Observer for RemoteReport {
    fn debug(&mut self, line: &str) {
        if self.verbose {
            eprintln!("{line}");
        }
    }
}
