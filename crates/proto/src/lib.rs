//! `rscp-proto`: the SCP ("rcp over ssh") protocol as OpenSSH speaks it, without I/O.
//!
//! This crate owns the wire format ([`wire`]), the values it carries ([`message`]),
//! the rules for names a peer sends ([`name`], [`filter`]), the two state machines
//! ([`sink`], [`source`]), the remote command line ([`command`]) and the client's
//! command-line operands (`[user@]host:path`, `scp://...`: [`operand`]), and the
//! SFTP v3 framing that rscpd serves and `rscp -s` speaks ([`sftp`]). It must never
//! touch a socket, a file or a clock, and depends on `std` only: drivers (the
//! `rscp-engine` crate) feed it bytes and act on what it asks for.

pub mod command;
pub mod display;
pub mod filter;
pub mod message;
pub mod name;
pub mod operand;
pub mod sftp;
pub mod sink;
pub mod source;
pub mod wire;

pub use message::{FileHeader, Message, Mode, Times};
pub use name::FileName;
