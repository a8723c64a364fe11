//! What the engine tells the outside world while it works. The engine never
//! prints; the CLI decides what a user sees (and escapes it), a server logs.

use rscp_proto::FileName;

/// Receives progress and messages from a transfer. Every method has a no-op default.
pub trait Observer {
    /// An error this side found and reported (`path: reason`), e.g. a file it could
    /// not read or write. Already escaped for display.
    fn local_error(&mut self, _text: &str) {}
    /// A `\1` message text the peer sent (raw bytes: escape before printing).
    fn remote_message(&mut self, _text: &[u8]) {}
    /// A file's payload starts.
    fn file_started(&mut self, _name: &FileName, _size: u64) {}
    /// Payload bytes moved since the last call.
    fn transferred(&mut self, _bytes: u64) {}
    /// The file's payload ended (`ok` false if it failed on either side).
    fn file_finished(&mut self, _ok: bool) {}
    /// A `-v` debug line (OpenSSH's remote `Sink: …`-style traces).
    fn debug(&mut self, _line: &str) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Observer for Silent {}
