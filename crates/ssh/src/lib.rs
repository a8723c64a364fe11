//! `rscp-ssh`: SSH transports for rscp. The native client (russh) with host-key
//! verification, authentication and ssh_config; later the `-S program` transport
//! and `rscpd`'s server. russh types never leave this crate: callers see
//! `Remote` (a byte stream, the remote stderr and the exit status).

pub mod client;
pub mod config;
pub mod known_hosts;
pub mod program;
pub mod remote;

pub use client::{AddressFamily, AuthMethod, Client, ConnectOptions, HostKeyChecking, Prompter, SshError};
pub use remote::{ExitStatus, Remote};
