//! rscpd: a copy-only SSH server. Serves SCP (`scp -t`/`scp -f`, in-process) and
//! the SFTP subsystem out of one root directory; never a shell.
#![allow(dead_code)] // Temporary, while the modules land one by one.

mod authorized_keys;
mod exec;
mod host_key;
mod options;
mod password;
mod sftp;

fn main() {}
