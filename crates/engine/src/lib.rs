//! `rscp-engine`: drives the `rscp-proto` state machines over any
//! `AsyncRead`/`AsyncWrite` pair, with the local filesystem on the other side.
//!
//! [`source::send`] serves uploads and `rscp -f`; [`sink::receive`] serves
//! downloads and `rscp -t`; [`sftp::upload`] and [`sftp::download`] serve `rscp -s`. The engine never prints: everything a user may need to
//! see goes to an [`Observer`]. It knows nothing of SSH.

pub mod conn;
pub mod error;
pub mod fs;
pub mod heap;
pub mod limit;
pub mod observer;
pub mod root;
pub mod sftp;
pub mod sink;
pub mod source;

pub use conn::Conn;
pub use error::{EngineError, Summary};
pub use observer::{Observer, Silent};
pub use root::Root;
