//! Errors that end a transfer early, split by who is at fault, and the summary of
//! one that ran to the end.

use std::fmt;
use std::io;

use rscp_proto::sink::SinkError;
use rscp_proto::source::SourceError;

/// How a transfer that ran to its end went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Errors counted on either side (each makes the exit status 1, as OpenSSH).
    pub errors: u32,
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.errors == 0
    }
}

/// Why a transfer stopped before its end.
#[derive(Debug)]
#[non_exhaustive]
pub enum EngineError {
    /// The peer broke the protocol or sent a fatal error (as a sink).
    Sink(SinkError),
    /// The peer broke the protocol or sent a fatal error (as a source).
    Source(SourceError),
    /// The byte stream to the peer failed or ended early.
    Stream(io::Error),
    /// An SFTP server broke the protocol (`rscp -s`).
    Sftp(String),
    /// Refused before any transfer began (e.g. `-d` with a target that is not a
    /// directory); the peer was told.
    Refused(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Sink(e) => e.fmt(f),
            EngineError::Source(e) => e.fmt(f),
            EngineError::Stream(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                f.write_str("lost connection")
            }
            EngineError::Stream(e) => write!(f, "lost connection: {}", crate::fs::errno_text(e)),
            EngineError::Refused(text) => f.write_str(text),
            EngineError::Sftp(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<SinkError> for EngineError {
    fn from(e: SinkError) -> Self {
        EngineError::Sink(e)
    }
}

impl From<SourceError> for EngineError {
    fn from(e: SourceError) -> Self {
        EngineError::Source(e)
    }
}

impl From<io::Error> for EngineError {
    fn from(e: io::Error) -> Self {
        EngineError::Stream(e)
    }
}
